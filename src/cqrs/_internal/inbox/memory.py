"""An inbox in this process's memory: for tests and for running without a database.

It keeps the semantics of the SQL inbox (a claim of a key that another claim holds waits for
it; a failed claim leaves nothing), but it forgets everything when the process ends, so it
protects against redeliveries within one process only.
"""

from __future__ import annotations

import asyncio
import datetime
import uuid
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager

from cqrs._internal.inbox.repository import DEFAULT_CONSUMER, InboxRecord, checked_consumer

__all__ = ["InMemoryInbox"]

_Key = tuple[uuid.UUID, str]


class InMemoryInbox:
    """An :class:`~cqrs.inbox.Inbox` held in a dict (see the module docstring).

    ``consumer`` is the name the middleware records events for (``TypeError`` or
    ``ValueError`` for one that is not 1 to 255 characters of text).
    """

    def __init__(self, consumer: str = DEFAULT_CONSUMER) -> None:
        self._consumer = checked_consumer(consumer)
        self._records: dict[_Key, InboxRecord] = {}
        self._holding: dict[_Key, asyncio.Event] = {}

    @property
    def consumer(self) -> str:
        """The consumer name records are written for."""
        return self._consumer

    @property
    def records(self) -> list[InboxRecord]:
        """The kept records, oldest first."""
        return list(self._records.values())

    @asynccontextmanager
    async def claim(self, record: InboxRecord) -> AsyncGenerator[bool]:
        """See ``Inbox.claim``: False when the key is recorded; else the record is kept
        when the block ends normally."""
        key = (record.event_id, record.consumer)
        while (holder := self._holding.get(key)) is not None:
            await holder.wait()
        if key in self._records:
            yield False
            return
        released = self._holding[key] = asyncio.Event()
        try:
            yield True
            self._records[key] = record
        finally:
            del self._holding[key]
            released.set()

    async def contains(self, event_id: uuid.UUID, consumer: str | None = None) -> bool:
        """Whether ``event_id`` is recorded for ``consumer`` (default: this inbox's)."""
        return (event_id, consumer or self._consumer) in self._records

    async def purge(self, before: datetime.datetime) -> int:
        """Forget the records received before ``before``; return how many."""
        old = [key for key, found in self._records.items() if found.received_at < before]
        for key in old:
            del self._records[key]
        return len(old)
