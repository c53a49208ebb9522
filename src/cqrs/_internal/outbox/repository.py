"""The outbox storage protocol (4.x ``OutboxedEventRepository``)."""

from __future__ import annotations

import abc
from typing import Any

from cqrs._internal.messages.events import INotificationEvent
from cqrs._internal.outbox.models import EventStatus, OutboxedEvent

__all__ = ["EventStatus", "OutboxedEvent", "OutboxedEventRepository"]


class OutboxedEventRepository(abc.ABC):
    """Where notification events wait, written with the business data, until relayed.

    :meth:`add` is synchronous: it only stages the event in the current unit of work, so a
    handler adds its events beside its own writes and one commit stores them all (a rollback
    stores none). The other methods are async and talk to the storage. Nothing is stored or
    changed for good before :meth:`commit`.
    """

    @abc.abstractmethod
    def add(self, event: INotificationEvent[Any]) -> None:
        """Stage ``event`` for the outbox; it is stored by the next :meth:`commit`.

        Raises ``TypeError`` when the event cannot be stored (its name is not registered,
        or its codec cannot encode it); nothing is staged then.
        """

    @abc.abstractmethod
    async def get_many(
        self, batch_size: int = 100, topic: str | None = None
    ) -> list[OutboxedEvent]:
        """Up to ``batch_size`` events waiting to be published, oldest first (only those of
        ``topic`` when given)."""

    @abc.abstractmethod
    async def update_status(self, outboxed_event_id: int, new_status: EventStatus) -> None:
        """Record the outcome of publishing the event with this id (``PRODUCED`` or
        ``NOT_PRODUCED``); it takes effect at the next :meth:`commit`."""

    @abc.abstractmethod
    async def commit(self) -> None:
        """Store what was staged and updated since the last commit."""

    @abc.abstractmethod
    async def rollback(self) -> None:
        """Forget what was staged and updated since the last commit."""
