"""Messages as Kafka records, both ways: key, value and headers.

Outgoing: the value is the 4.x wire body (``wire_body``: the JSON of ``event.to_dict()`` by
default); the key is the event id unless the broker was given a ``key`` function; headers
carry what Kafka has no field for: the message id (:data:`MESSAGE_ID_HEADER`, the event id),
the message name and the content type, beside the message's own headers (4.x's
``event_name``/``message_id`` for protobuf bodies). Incoming records become a
:class:`Message` whose ``payload_bytes`` is the exact value; the transport headers above
and :data:`ATTEMPT_HEADER` are read, not passed on in ``headers``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from cqrs._internal.brokers.message import received_message, wire_id
from cqrs._internal.brokers.protocol import Message

__all__ = [
    "ATTEMPT_HEADER",
    "CONSUMER_GROUP_HEADER",
    "CONTENT_TYPE_HEADER",
    "MESSAGE_ID_HEADER",
    "MESSAGE_NAME_HEADER",
    "TRANSPORT_HEADERS",
    "attempt_of",
    "check_topic",
    "encode_headers",
    "message_headers",
    "read_headers",
    "record_headers",
    "record_message",
    "retry_topic",
]

MESSAGE_ID_HEADER = "x-message-id"
"""The message id (the event id): Kafka records have no id of their own."""

MESSAGE_NAME_HEADER = "x-message-name"
"""The message name (the event's class name)."""

CONTENT_TYPE_HEADER = "content-type"
"""The content type, set only for non-JSON bodies (as 4.x sets ``Message.content_type``)."""

ATTEMPT_HEADER = "x-attempt"
"""On a retry copy: the attempt it is (2, 3, ...). A record without it is attempt 1."""

CONSUMER_GROUP_HEADER = "x-consumer-group"
"""On a dead letter: the consumer group that gave the message up."""

TRANSPORT_HEADERS = frozenset(
    {MESSAGE_ID_HEADER, MESSAGE_NAME_HEADER, CONTENT_TYPE_HEADER, ATTEMPT_HEADER}
)

_LEGAL_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")
_MAX_ATTEMPT = 1_000_000


def check_topic(topic: str, what: str = "topic") -> str:
    """Return ``topic`` when Kafka accepts the name, else raise ``ValueError`` saying why."""
    if not _LEGAL_TOPIC.fullmatch(topic) or topic in {".", ".."}:
        raise ValueError(
            f"{what} {topic!r} is not a legal Kafka topic name: use 1 to 249 of the "
            "characters a-z, A-Z, 0-9, '.', '_' and '-' (and not '.' or '..')"
        )
    return topic


def retry_topic(topic: str, group_id: str) -> str:
    """Where the retry copies of ``topic`` for consumer group ``group_id`` go:
    ``"<topic>.retry.<group_id>"``. Raises ``ValueError`` when that is no legal topic name
    (the group id has other characters, or the name is too long)."""
    return check_topic(f"{topic}.retry.{group_id}", "the retry topic")


def message_headers(message: Message) -> dict[str, str]:
    """The headers of the record of ``message``: its own headers, then the transport ones."""
    headers = dict(message.headers or {})
    headers[MESSAGE_ID_HEADER] = wire_id(message)
    if message.message_name:
        headers[MESSAGE_NAME_HEADER] = message.message_name
    if message.content_type is not None:
        headers[CONTENT_TYPE_HEADER] = message.content_type
    return headers


def record_headers(message: Message, wire_id_text: str) -> list[tuple[str, bytes]]:
    """:func:`message_headers` as aiokafka's list, built directly (the hot path of a
    publish); ``wire_id_text`` is ``wire_id(message)``, computed once by the caller."""
    headers = (
        [(key, value.encode("utf-8")) for key, value in message.headers.items()]
        if message.headers
        else []
    )
    headers.append((MESSAGE_ID_HEADER, wire_id_text.encode("ascii")))
    if message.message_name:
        headers.append((MESSAGE_NAME_HEADER, message.message_name.encode("utf-8")))
    if message.content_type is not None:
        headers.append((CONTENT_TYPE_HEADER, message.content_type.encode("utf-8")))
    return headers


def encode_headers(headers: Mapping[str, str | bytes] | None) -> list[tuple[str, bytes]]:
    """aiokafka's header list: text values encoded as UTF-8, bytes as they are."""
    if not headers:
        return []
    return [
        (key, value.encode("utf-8") if isinstance(value, str) else bytes(value))
        for key, value in headers.items()
    ]


def read_headers(headers: Iterable[tuple[str, bytes | None]] | None) -> dict[str, bytes]:
    """A record's headers as a dict (the last value of a repeated key wins; ``None`` values
    become empty)."""
    return {key: value or b"" for key, value in headers or ()}


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", "replace")


def attempt_of(headers: Mapping[str, bytes]) -> int:
    """The attempt a record is: its :data:`ATTEMPT_HEADER`, 1 when missing or not a
    positive number."""
    raw = headers.get(ATTEMPT_HEADER)
    if raw is None:
        return 1
    try:
        attempt = int(raw)
    except ValueError:
        return 1
    return attempt if 1 <= attempt <= _MAX_ATTEMPT else 1


def record_message(value: bytes | None, headers: Mapping[str, bytes], topic: str) -> Message:
    """The :class:`Message` of a record read from ``topic`` (the subscribed topic, also for
    retry copies): id, name and content type from the transport headers; the other headers
    as text."""
    if len(headers) == 2:  # the common case: our publishers' id and name, nothing else
        message_id, name = headers.get(MESSAGE_ID_HEADER), headers.get(MESSAGE_NAME_HEADER)
        if message_id is not None and name is not None:
            return received_message(
                value or b"",
                topic=topic,
                message_id=message_id.decode("utf-8", "replace"),
                name=name.decode("utf-8", "replace"),
            )
    return received_message(
        value or b"",
        topic=topic,
        message_id=_text(headers.get(MESSAGE_ID_HEADER)),
        name=_text(headers.get(MESSAGE_NAME_HEADER)),
        content_type=_text(headers.get(CONTENT_TYPE_HEADER)),
        headers={key: raw for key, raw in headers.items() if key not in TRANSPORT_HEADERS},
    )
