"""A message as the fields of a stream entry, both ways.

An entry has the fields ``id`` (the message id: the event id, so consumers can deduplicate),
``name`` (the message name), ``body`` (the exact wire body: by default the 4.x JSON of
``event.to_dict()``), ``content_type`` when set, and one ``header:<name>`` field per header.
A dead-lettered copy is the original entry with two more headers:
``header:x-dead-letter-reason`` and ``header:x-original-topic``.

An entry written by other code is read leniently: a missing ``body`` is an empty body (which
the consumer dead-letters as undecodable), a missing or non-UUID ``id`` becomes an id derived
from the body, and every field that is not one of the above is kept as a header.
"""

from __future__ import annotations

from collections.abc import Mapping

from cqrs._internal.brokers.message import received_message, wire_body, wire_id
from cqrs._internal.brokers.protocol import Message

__all__ = [
    "BODY",
    "CONTENT_TYPE",
    "HEADER_PREFIX",
    "ID",
    "NAME",
    "Fields",
    "entry_fields",
    "entry_message",
]

ID, NAME, BODY, CONTENT_TYPE = b"id", b"name", b"body", b"content_type"
HEADER_PREFIX = b"header:"
_RESERVED = frozenset({ID, NAME, BODY, CONTENT_TYPE})

Fields = dict[bytes, bytes]
"""The fields of an entry as redis-py returns them (bytes to bytes, in stored order)."""


def entry_fields(message: Message) -> Fields:
    """The fields ``message`` is stored with. Raises ``TypeError`` for a payload that has no
    wire form (not JSON-encodable)."""
    fields: Fields = {
        ID: wire_id(message).encode(),
        NAME: message.message_name.encode(),
        BODY: wire_body(message),
    }
    if message.content_type is not None:
        fields[CONTENT_TYPE] = message.content_type.encode()
    for key, value in (message.headers or {}).items():
        fields[HEADER_PREFIX + key.encode()] = str(value).encode()
    return fields


def entry_message(topic: str, fields: Mapping[bytes, bytes]) -> Message:
    """The :class:`Message` of an entry of ``topic`` (see the module docstring)."""
    if len(fields) == 3:  # the common case: our publishers' id, name and body, nothing else
        message_id, name, body = fields.get(ID), fields.get(NAME), fields.get(BODY)
        if message_id is not None and name is not None and body is not None:
            return received_message(
                body,
                topic=topic,
                message_id=message_id.decode("utf-8", "replace"),
                name=name.decode("utf-8", "replace"),
            )
    headers: dict[str, bytes] = {}
    for key, value in fields.items():
        if key.startswith(HEADER_PREFIX):
            headers[key[len(HEADER_PREFIX) :].decode("utf-8", "replace")] = value
        elif key not in _RESERVED:
            headers[key.decode("utf-8", "replace")] = value
    name = fields.get(NAME)
    content_type = fields.get(CONTENT_TYPE)
    message_id = fields.get(ID)
    return received_message(
        fields.get(BODY, b""),
        topic=topic,
        message_id=None if message_id is None else message_id.decode("utf-8", "replace"),
        name=None if name is None else name.decode("utf-8", "replace"),
        content_type=None if content_type is None else content_type.decode("utf-8", "replace"),
        headers=headers,
    )
