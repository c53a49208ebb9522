"""An in-memory outbox for tests (4.x ``MockOutboxedEventRepository``)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, MutableMapping
from typing import Any

from cqrs._internal.errors import ConfigurationError
from cqrs._internal.generics import describe_type
from cqrs._internal.messages.events import INotificationEvent
from cqrs._internal.outbox.map import OutboxedEventMap, resolve_event
from cqrs._internal.outbox.models import (
    MAX_FLUSH_COUNTER_VALUE,
    EventStatus,
    OutboxedEvent,
    checked_status,
)
from cqrs._internal.outbox.repository import OutboxedEventRepository
from cqrs._internal.serialization.json import EventCodec, JsonEventSerializer

__all__ = ["MockOutboxedEventRepository"]


class MockOutboxedEventRepository(OutboxedEventRepository):
    """The outbox as a dict: ``session_factory()`` gives the dict, row id -> ``OutboxedEvent``.

    As 4.x: :meth:`add` stores at once (there is no transaction, :meth:`commit` and
    :meth:`rollback` do nothing), ``update_status(id, PRODUCED)`` deletes the row. Unlike
    4.x, ids come from a counter of this repository (skipping ids already in the dict, so
    repositories may share one), :meth:`get_many` honours ``batch_size`` and ``topic``, and
    ``NOT_PRODUCED`` counts a failure: a row that failed ``MAX_FLUSH_COUNTER_VALUE`` times
    is no longer returned. Events are checked and encoded as the SQL repository does, so a
    test catches an unregistered event name.
    """

    def __init__(
        self,
        session_factory: Callable[[], MutableMapping[int, OutboxedEvent]],
        *,
        serializer: EventCodec | None = None,
        event_map: OutboxedEventMap | None = None,
    ) -> None:
        session = session_factory()
        if not isinstance(session, MutableMapping):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise ConfigurationError(
                "MockOutboxedEventRepository(session_factory) needs a function returning a "
                f"dict to keep the rows in (e.g. dict), got one returning {session!r}"
            )
        self.session = session
        self._codec: EventCodec = serializer if serializer is not None else JsonEventSerializer()
        self._map = event_map if event_map is not None else OutboxedEventMap.shared()
        self._ids = itertools.count(1)
        self._failures: dict[int, int] = {}

    def add(self, event: INotificationEvent[Any]) -> None:
        """Store ``event`` as a ``NEW`` row at once.

        Raises ``ConfigurationError`` (a ``TypeError``) as the SQL repository does: an
        unregistered ``event_name``, an event of another type, or a codec that fails.
        """
        entry = resolve_event(self._map, event)
        codec = entry.codec if entry.codec is not None else self._codec
        try:
            payload = codec.serialize(event)
            content_type = codec.content_type_for(event)
        except Exception as exc:
            raise ConfigurationError(
                f"Cannot add {describe_type(type(event))} (event_id {event.event_id}) to the "
                f"outbox: {type(codec).__name__} cannot encode it ({exc})"
            ) from exc
        row_id = next(self._ids)
        while row_id in self.session:
            row_id = next(self._ids)
        self.session[row_id] = OutboxedEvent(
            id=row_id,
            event=event,
            topic=event.topic,
            status=EventStatus.NEW,
            payload_bytes=payload,
            content_type=content_type,
        )

    async def get_many(
        self, batch_size: int = 100, topic: str | None = None
    ) -> list[OutboxedEvent]:
        """Up to ``batch_size`` stored rows (of ``topic`` when given), ``NEW`` first, then by
        id. Raises ``ValueError`` for a ``batch_size`` below 1."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:  # pyright: ignore[reportUnnecessaryIsInstance]
            raise ValueError(f"get_many: batch_size must be a positive int, got {batch_size!r}")
        waiting = [
            row
            for row in self.session.values()
            if (topic is None or row.topic == topic)
            and self._failures.get(row.id, 0) < MAX_FLUSH_COUNTER_VALUE
        ]
        waiting.sort(key=lambda row: (row.status is not EventStatus.NEW, row.id))
        return waiting[:batch_size]

    async def update_status(self, outboxed_event_id: int, new_status: EventStatus) -> None:
        """``PRODUCED`` deletes the row; ``NOT_PRODUCED`` marks it and counts a failure;
        an unknown id is ignored. Raises ``ValueError`` for a status that is not one."""
        status = checked_status(new_status)
        row = self.session.get(outboxed_event_id)
        if row is None:
            return
        if status is EventStatus.PRODUCED:
            del self.session[outboxed_event_id]
            self._failures.pop(outboxed_event_id, None)
        elif status is EventStatus.NOT_PRODUCED:
            self._failures[outboxed_event_id] = self._failures.get(outboxed_event_id, 0) + 1
            self.session[outboxed_event_id] = OutboxedEvent(
                id=row.id,
                event=row.event,
                topic=row.topic,
                status=status,
                payload_bytes=row.payload_bytes,
                content_type=row.content_type,
            )

    async def commit(self) -> None:
        """Nothing to do: rows are stored by :meth:`add`."""

    async def rollback(self) -> None:
        """Nothing to undo (as 4.x): rows added stay."""
