"""Messages as NATS headers and bodies, both ways.

A published message is the wire body (``wire_body``) with these headers: ``Nats-Msg-Id``,
the event id (JetStream de-duplicates on it); ``x-message-name``, the message name when
there is one; ``Content-Type`` when set (non-JSON serializers); and the message's own
headers (4.x ``event_name``/``message_id`` for protobuf). A received message gets its id
back from ``Nats-Msg-Id`` and its name and content type from those headers, which are not
repeated in ``Message.headers``.

A dead-letter copy keeps the body and every header, adds the reason and the original topic,
and has the id ``<id>:dead-letter`` in ``Nats-Msg-Id``: the original's id would be dropped
as a duplicate (both live in one stream), while a second copy of the same dead letter (the
same message given up twice) is dropped as one. The ``:dead-letter`` suffix is removed when
the copy is received, so its ``message_id`` is the original's.
"""

from __future__ import annotations

from collections.abc import Mapping

from cqrs._internal.brokers.delivery import DEAD_LETTER_REASON_HEADER, ORIGINAL_TOPIC_HEADER
from cqrs._internal.brokers.message import received_message, wire_id
from cqrs._internal.brokers.protocol import Message

__all__ = [
    "CONTENT_TYPE_HEADER",
    "DEAD_LETTER_ID_SUFFIX",
    "MESSAGE_ID_HEADER",
    "NAME_HEADER",
    "dead_letter_headers",
    "publish_headers",
    "received",
]

MESSAGE_ID_HEADER = "Nats-Msg-Id"
"""JetStream's de-duplication id: the event id."""
NAME_HEADER = "x-message-name"
"""The message name (AMQP's ``type``)."""
CONTENT_TYPE_HEADER = "Content-Type"
"""The content type of a non-JSON body."""
DEAD_LETTER_ID_SUFFIX = ":dead-letter"
"""Appended to the ``Nats-Msg-Id`` of a dead-letter copy."""

_TRANSPORT = frozenset({MESSAGE_ID_HEADER, NAME_HEADER, CONTENT_TYPE_HEADER})
_REASON_LIMIT = 2000


def publish_headers(message: Message) -> dict[str, str]:
    """The NATS headers of ``message`` (a new dict: nats-py adds to it)."""
    headers = dict(message.headers) if message.headers else {}
    headers[MESSAGE_ID_HEADER] = wire_id(message)
    if message.message_name:
        headers[NAME_HEADER] = message.message_name
    if message.content_type:
        headers[CONTENT_TYPE_HEADER] = message.content_type
    return headers


def received(body: bytes, headers: Mapping[str, str] | None, topic: str) -> Message:
    """The :class:`Message` of a body and headers received on ``topic``'s subject."""
    headers = headers or {}
    wire = headers.get(MESSAGE_ID_HEADER)
    if wire is not None:
        wire = wire.split(":", 1)[0]
    return received_message(
        body,
        topic=topic,
        message_id=wire,
        name=headers.get(NAME_HEADER),
        content_type=headers.get(CONTENT_TYPE_HEADER),
        headers={str(key): value for key, value in headers.items() if str(key) not in _TRANSPORT},
    )


def dead_letter_headers(
    headers: Mapping[str, str] | None, *, reason: str, topic: str, fallback_id: str
) -> dict[str, str]:
    """The headers of the dead-letter copy of a message received on ``topic``.

    ``reason`` goes on one line (NATS headers cannot hold line breaks) and is cut at 2,000
    characters; ``fallback_id`` names a message published without ``Nats-Msg-Id`` (its
    stream sequence), so its copies are de-duplicated too.
    """
    copy = {str(key): value for key, value in (headers or {}).items()}
    original_id = copy.get(MESSAGE_ID_HEADER) or fallback_id
    copy[MESSAGE_ID_HEADER] = original_id + DEAD_LETTER_ID_SUFFIX
    copy[DEAD_LETTER_REASON_HEADER] = one_line(reason)
    copy[ORIGINAL_TOPIC_HEADER] = topic
    return copy


def one_line(reason: str) -> str:
    """``reason`` with line breaks turned into spaces, at most 2,000 characters."""
    flat = reason.replace("\r\n", " ").replace("\r", " ").replace("\n", " ")
    return flat if len(flat) <= _REASON_LIMIT else flat[: _REASON_LIMIT - 1] + "…"
