"""What every inbox stores and offers (no database library here).

An inbox remembers which events a consumer has handled, keyed by ``(event id, consumer)``.
:meth:`Inbox.claim` is the one operation the middleware needs: it records the event in a
transaction that stays open while the handlers run, and keeps the record only when they
succeed. A second claim of the same key waits until the first one has finished: it is then
refused (the event was handled) or granted (the first one failed and left nothing).
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol

from cqrs._internal.clock import utc_now
from cqrs._internal.errors import CQRSError

__all__ = [
    "DEFAULT_CONSUMER",
    "MAX_NAME_LENGTH",
    "Inbox",
    "InboxRecord",
    "KeyFunction",
    "NoInboxTransaction",
    "checked_consumer",
    "event_key",
    "record_for",
    "utc_now",
]

DEFAULT_CONSUMER = "default"
"""The consumer name of an inbox built without one."""

MAX_NAME_LENGTH = 255
"""Longest consumer and event name a record holds (the columns are ``VARCHAR(255)``)."""

KeyFunction = Callable[[Any], "uuid.UUID | str"]
"""Gives an event's inbox key: a UUID, or text (UUID text is read as that UUID; any other
text stands for the UUID-5 of it)."""

_TEXT_KEYS = uuid.UUID("3c1f6b0e-1d43-4c55-8d0b-6a1c7f1e2b90")
"""Namespace of the UUID-5 keys made from text that is not a UUID."""


class NoInboxTransaction(CQRSError, RuntimeError):
    """``current_inbox_session()`` was called where no inbox transaction is open."""


@dataclass(frozen=True)
class InboxRecord:
    """One handled event: its id, the consumer that handled it, its name, and when it was
    received (naive UTC, as the outbox's times)."""

    event_id: uuid.UUID
    consumer: str
    event_name: str
    received_at: datetime.datetime


class Inbox(Protocol):
    """Storage of handled events (``SqlAlchemyInbox``, ``InMemoryInbox``).

    ``consumer`` names the consumer whose records the middleware writes: two consumers of the
    same events (two services, two queues) each handle every event once.
    """

    @property
    def consumer(self) -> str:
        """The consumer name records are written for."""
        ...

    def claim(self, record: InboxRecord) -> AbstractAsyncContextManager[bool]:
        """``async with inbox.claim(record) as fresh:``: record the event, or find it there.

        ``fresh`` is False when ``(record.event_id, record.consumer)`` is already recorded:
        run nothing. When True, the record is kept if the block ends normally and dropped if
        it raises (or is cancelled). A claim of a key that another claim holds waits until
        that one has finished. Storage errors propagate.
        """
        ...

    async def contains(self, event_id: uuid.UUID, consumer: str | None = None) -> bool:
        """Whether ``event_id`` is recorded for ``consumer`` (default: :attr:`consumer`)."""
        ...

    async def purge(self, before: datetime.datetime) -> int:
        """Forget the records received before ``before`` (naive UTC) for every consumer and
        return how many. An event redelivered after its record is purged runs again."""
        ...


def checked_consumer(consumer: object) -> str:
    """``consumer`` if it is a usable consumer name; ``TypeError``/``ValueError`` saying
    what is wrong otherwise."""
    if not isinstance(consumer, str):
        raise TypeError(f"consumer must be a str naming the consumer, got {consumer!r}")
    if not consumer or len(consumer) > MAX_NAME_LENGTH:
        raise ValueError(
            f"consumer must be 1 to {MAX_NAME_LENGTH} characters, got {len(consumer)}: "
            "name the service or queue that handles the events, e.g. consumer='billing'"
        )
    return consumer


def event_key(event: Any) -> uuid.UUID | str:
    """The default inbox key: ``event.event_id`` (notification events carry one, read from
    the message body). Raises ``TypeError`` naming the event type when it has none."""
    try:
        return event.event_id
    except AttributeError:
        raise TypeError(
            f"{type(event).__qualname__} has no event_id, which the inbox keys events by; "
            "consume notification events, or pass key=<function giving an event's id> to "
            "IdempotentEventMediator"
        ) from None


def _key_uuid(key: object, event: Any) -> uuid.UUID:
    if isinstance(key, uuid.UUID):
        return key
    if isinstance(key, str) and key:
        try:
            return uuid.UUID(key)
        except ValueError:
            return uuid.uuid5(_TEXT_KEYS, key)
    raise TypeError(
        f"the inbox key of {type(event).__qualname__} must be a UUID or non-empty text, got {key!r}"
    )


def _event_name(event: Any) -> str:
    name = getattr(event, "event_name", None)
    if not isinstance(name, str) or not name:
        name = type(event).__qualname__
    return name[:MAX_NAME_LENGTH]


def record_for(event: Any, consumer: str, key: KeyFunction | None = None) -> InboxRecord:
    """The record of ``event`` for ``consumer``: its key (``key(event)``, default
    :func:`event_key`), its ``event_name`` (else its class name) and the time now."""
    raw = event_key(event) if key is None else key(event)
    return InboxRecord(_key_uuid(raw, event), consumer, _event_name(event), utc_now())
