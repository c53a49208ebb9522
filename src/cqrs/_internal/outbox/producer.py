"""The 4.x outbox relay loop: read batches from a repository, publish, record the outcome."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from cqrs._internal.brokers.message import EVENT_NAME_HEADER, MESSAGE_ID_HEADER
from cqrs._internal.brokers.protocol import Message, MessageBroker
from cqrs._internal.outbox.models import EventStatus, OutboxedEvent
from cqrs._internal.outbox.repository import OutboxedEventRepository

__all__ = ["DEFAULT_POLL_INTERVAL", "EventProducer", "SessionFactory", "outbox_message"]

logger = logging.getLogger("cqrs.outbox")

SessionFactory = Callable[[], Any]
"""4.x alias: a callable returning a database session (e.g. an ``async_sessionmaker``)."""

DEFAULT_POLL_INTERVAL = 0.5
"""Seconds :meth:`EventProducer.event_batch_generator` waits after an empty batch."""


def outbox_message(outboxed: OutboxedEvent) -> Message:
    """The :class:`Message` of an outbox row, as 4.x's producer builds it.

    ``message_name`` is the event's ``event_name`` (the emitter uses the class name),
    ``message_id`` its ``event_id``, ``topic`` the row's topic and ``payload_bytes`` the
    stored bytes; ``content_type`` and the ``event_name``/``message_id`` headers are set
    for a non-JSON codec only.
    """
    event = outboxed.event
    content_type = outboxed.content_type
    return Message(
        message_name=event.event_name,
        topic=outboxed.topic,
        payload=event.to_dict(),
        message_id=event.event_id,
        payload_bytes=outboxed.payload_bytes,
        content_type=content_type,
        headers=None
        if content_type is None
        else {EVENT_NAME_HEADER: event.event_name, MESSAGE_ID_HEADER: str(event.event_id)},
    )


class EventProducer:
    """Publishes outbox rows through a broker and records the outcome in the repository.

    The 4.x loop, kept working::

        async for batch in producer.event_batch_generator(100):
            for outboxed in batch:
                await producer.send_message(outboxed)
            await producer.repository.commit()

    :meth:`send_message` never raises for a broker failure (4.x loops rely on it): it logs
    the event id and the error and marks the row ``NOT_PRODUCED``, so it is tried again
    later (at most ``MAX_FLUSH_COUNTER_VALUE`` times). A row is marked ``PRODUCED`` only
    after the broker's ``send_message`` returned. Nothing is committed here: the caller
    commits. For several relays at once, leases and pipelined publishing, use the relay.
    """

    def __init__(
        self,
        message_broker: MessageBroker,
        repository: OutboxedEventRepository,
        *,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
    ) -> None:
        if poll_interval < 0:
            raise ValueError(f"poll_interval must be >= 0 seconds, got {poll_interval!r}")
        self.message_broker = message_broker
        self.repository = repository
        self.poll_interval = poll_interval

    async def event_batch_generator(
        self, batch_size: int = 100, *, topic: str | None = None
    ) -> AsyncIterator[list[OutboxedEvent]]:
        """Yield ``repository.get_many(batch_size)`` batches, forever.

        An empty batch is yielded too (a loop may stop on it); the next query waits
        :attr:`poll_interval` seconds after an empty one instead of polling in a busy loop
        (4.x queried again at once). Errors of the repository propagate.
        """
        while True:
            batch = await self.repository.get_many(batch_size, topic)
            yield batch
            if not batch and self.poll_interval:
                await asyncio.sleep(self.poll_interval)

    async def send_message(self, outboxed: OutboxedEvent) -> None:
        """Publish one row and mark it ``PRODUCED``; on a broker error, log it and mark the
        row ``NOT_PRODUCED`` instead (not raised). Errors of the repository propagate."""
        message = outbox_message(outboxed)
        try:
            await self.message_broker.send_message(message)
        except Exception as exc:
            logger.error(
                "Publishing outbox event %s (%s, row %s, topic %r) failed: %s: %s; marked "
                "NOT_PRODUCED, it is tried again later.",
                outboxed.event.event_id,
                outboxed.event.event_name,
                outboxed.id,
                outboxed.topic,
                type(exc).__name__,
                exc,
                exc_info=exc,
            )
            await self.repository.update_status(outboxed.id, EventStatus.NOT_PRODUCED)
            return
        await self.repository.update_status(outboxed.id, EventStatus.PRODUCED)
