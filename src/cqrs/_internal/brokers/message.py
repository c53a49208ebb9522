"""Events as broker messages, both ways, in the 4.x wire format.

Outgoing (:func:`message_for`, as the emitter and the outbox relay build it): the body is the
serializer's bytes, by default the JSON of ``event.to_dict()``; ``content_type`` and the
``event_name``/``message_id`` headers are set only for a non-JSON serializer (protobuf), as
4.x does; the message id is the **event id** (4.x sent a random one), so a consumer can
deduplicate on it.

Incoming (:func:`received_message`): the transport's body, id, name, content type and headers
become a :class:`Message` whose ``payload_bytes`` (and ``payload``) is the exact body, so a
dead-lettered copy is byte-for-byte what was published.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from typing import Any

from cqrs._internal.brokers.protocol import Message
from cqrs._internal.serialization.json import EventSerializer, default_serializer

__all__ = [
    "EVENT_NAME_HEADER",
    "MESSAGE_ID_HEADER",
    "message_for",
    "received_message",
    "wire_body",
    "wire_id",
]

EVENT_NAME_HEADER = "event_name"
"""4.x header of non-JSON messages: the event's ``event_name``."""

MESSAGE_ID_HEADER = "message_id"
"""4.x header of non-JSON messages: the event id."""

_BODY_IDS = uuid.UUID("6f0b0d55-6c0e-4a51-9d0c-63c2a6f8f1e4")


def message_for(event: Any, serializer: EventSerializer | None = None) -> Message:
    """The :class:`Message` of a notification event, exactly as 4.x's emitter builds it.

    ``message_name`` is the event's class name, ``topic`` its ``topic``, ``message_id`` its
    ``event_id``, ``payload`` its ``to_dict()`` and ``payload_bytes`` the serializer's bytes
    (JSON of ``to_dict()`` by default). Raises ``TypeError`` when the serializer cannot encode
    the event and ``AttributeError`` when ``event`` is not a notification event.
    """
    if serializer is None:
        payload_bytes = default_serializer(event)
        content_type = None
    else:
        payload_bytes = serializer.serialize(event)
        content_type = serializer.content_type_for(event)
    headers = (
        None
        if content_type is None
        else {EVENT_NAME_HEADER: event.event_name, MESSAGE_ID_HEADER: str(event.event_id)}
    )
    return Message(
        message_name=type(event).__name__,
        topic=event.topic,
        payload=event.to_dict(),
        message_id=event.event_id,
        payload_bytes=payload_bytes,
        content_type=content_type,
        headers=headers,
    )


def wire_body(message: Message) -> bytes:
    """The bytes a broker sends: ``payload_bytes`` when set, raw ``bytes`` payloads as they
    are, else the JSON of ``payload``. Raises ``TypeError`` (from pydantic-core's encoder)
    for a payload that is not JSON-encodable."""
    if message.payload_bytes is not None:
        return message.payload_bytes
    payload = message.payload
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, bytearray):
        return bytes(payload)
    return default_serializer(payload)


def wire_id(message: Message) -> str:
    """The message id on the wire: the canonical text of ``message.message_id``."""
    return str(message.message_id)


def received_message(
    body: bytes,
    *,
    topic: str,
    message_id: str | None = None,
    name: str | None = None,
    content_type: str | None = None,
    headers: Mapping[str, object] | None = None,
) -> Message:
    """The :class:`Message` of a received body.

    ``message_id`` is the transport's id; when it is missing or not a UUID (a message
    published by other code), the 4.x ``message_id`` header is tried, then an id derived
    from the body, so every redelivery of the same body gets the same id. ``name`` is the
    transport's type name, else the 4.x ``event_name`` header, else ``""``. Header values
    are kept as text (bytes decoded as UTF-8).
    """
    if not headers and name and message_id:  # the common case: our own publishers' messages
        parsed = _uuid(message_id)
        if parsed is not None:
            return Message(name, topic, body, parsed, body, content_type, None)
    text_headers = {key: _text(value) for key, value in (headers or {}).items()}
    return Message(
        message_name=name or text_headers.get(EVENT_NAME_HEADER, ""),
        topic=topic,
        payload=body,
        message_id=_uuid(message_id)
        or _uuid(text_headers.get(MESSAGE_ID_HEADER))
        or uuid.uuid5(_BODY_IDS, hashlib.sha256(body).hexdigest()),
        payload_bytes=body,
        content_type=content_type,
        headers=text_headers or None,
    )


def _uuid(value: str | None) -> uuid.UUID | None:
    if not value:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)
