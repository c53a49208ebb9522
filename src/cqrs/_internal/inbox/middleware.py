"""The mediator wrapper that runs each event's handlers once per consumer.

``IdempotentEventMediator(mediator, inbox)`` has the ``send`` of ``EventMediator``, so it
goes wherever a mediator does: ``EventConsumer``, the FastStream adapter, a 4.x
``AMQPConsumer`` handler. Per event it claims the event's record in the inbox (a transaction
that stays open), runs ``mediator.send(event)`` inside the claim, and keeps the record only
when the handlers succeeded: a redelivered event whose record exists is acknowledged
without running anything, and a failed one leaves no record, so the consumer's retry runs
it again.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable
from typing import Any, Protocol

from cqrs._internal.inbox.repository import Inbox, KeyFunction, record_for

__all__ = ["IdempotentEventMediator", "InboxStats"]

logger = logging.getLogger("cqrs.inbox")


class _Sends(Protocol):
    def send(self, event: Any, /) -> Awaitable[Any]: ...


@dataclasses.dataclass
class InboxStats:
    """What an :class:`IdempotentEventMediator` did, for logs, metrics and tests."""

    handled: int = 0
    """Events whose handlers ran and whose record was kept."""
    duplicates: int = 0
    """Events already recorded: acknowledged without running a handler."""
    failed: int = 0
    """Events whose handlers (or the inbox) failed: no record kept, the error raised."""


class IdempotentEventMediator:
    """Runs ``mediator.send(event)`` at most once per event id for ``inbox.consumer``.

    ``send(event)`` claims the event's record (``inbox.claim``), runs the handlers inside
    the claim, and returns; an event already recorded returns at once (logged at DEBUG,
    counted in ``stats.duplicates``). A handler error (or a cancellation) drops the record
    and propagates, so the consumer retries the message. Events are keyed by
    ``key(event)``, by default their ``event_id``; an event with no ``event_id`` raises
    ``TypeError`` naming its type. Storage errors propagate like handler errors.

    With ``SqlAlchemyInbox`` the claim is a database transaction: handlers that write
    through ``current_inbox_session()`` commit or roll back together with the record.
    """

    __slots__ = ("_consumer", "_inbox", "_key", "_mediator", "stats")

    def __init__(self, mediator: _Sends, inbox: Inbox, *, key: KeyFunction | None = None) -> None:
        if not callable(getattr(mediator, "send", None)):
            raise TypeError(
                f"mediator must have an async send(event), such as cqrs.EventMediator; got "
                f"{type(mediator).__qualname__}"
            )
        if not callable(getattr(inbox, "claim", None)):
            raise TypeError(
                f"inbox must be an Inbox (SqlAlchemyInbox or InMemoryInbox); got "
                f"{type(inbox).__qualname__}"
            )
        if key is not None and not callable(key):
            raise TypeError(f"key must be a function of the event giving its id, got {key!r}")
        self._mediator = mediator
        self._inbox = inbox
        self._consumer = inbox.consumer
        self._key = key
        self.stats = InboxStats()

    @property
    def mediator(self) -> Any:
        """The wrapped mediator."""
        return self._mediator

    @property
    def inbox(self) -> Inbox:
        """Where handled events are recorded."""
        return self._inbox

    async def send(self, event: Any) -> None:
        """Run the handlers of ``event`` unless it was handled; see the class docstring."""
        record = record_for(event, self._consumer, self._key)
        try:
            async with self._inbox.claim(record) as fresh:
                if not fresh:
                    self.stats.duplicates += 1
                    logger.debug(
                        "Event %s (%s) was already handled by consumer %r; skipped.",
                        record.event_id,
                        record.event_name,
                        record.consumer,
                    )
                    return
                await self._mediator.send(event)
        except BaseException:
            self.stats.failed += 1
            raise
        self.stats.handled += 1
