"""Runs the events a handler produced, follow-ups included, under a publishing strategy."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from cqrs._internal.events.emitter import EventEmitter
from cqrs._internal.events.fanout import (
    ConcurrentPublisher,
    EventPublisher,
    Execute,
    Job,
    SequentialPublisher,
)
from cqrs._internal.messages.events import IEvent

__all__ = ["EventProcessor", "choose_publisher"]

logger = logging.getLogger("cqrs")


def choose_publisher(
    max_concurrent_event_handlers: int, concurrent_event_handle_enable: bool
) -> EventPublisher:
    """The 4.x knobs as a strategy: sequential, or concurrent with at most N handlers at once."""
    if not isinstance(max_concurrent_event_handlers, int) or max_concurrent_event_handlers < 1:  # pyright: ignore[reportUnnecessaryIsInstance]
        raise ValueError(
            "max_concurrent_event_handlers must be an int >= 1, got "
            f"{max_concurrent_event_handlers!r}."
        )
    if concurrent_event_handle_enable and max_concurrent_event_handlers > 1:
        return ConcurrentPublisher(max_concurrent_event_handlers)
    return SequentialPublisher()


class EventProcessor:
    """Processes a batch of events and every follow-up event they cause.

    Sequential (``concurrent_event_handle_enable=False``): one handler execution at a time,
    in order, follow-ups after the events already queued. Concurrent: at most
    ``max_concurrent_event_handlers`` handler executions at once (4.x limited events, not
    handlers), follow-ups start as soon as a slot is free. ``publisher=`` replaces both with
    your own :class:`EventPublisher`.

    ``emit_events`` returns only when every job it started has finished; if it is cancelled,
    the jobs are cancelled with it. Failures are raised once the other events are done (see
    the emitter's ``failure_policy``). A mediator without an emitter logs the events it drops.
    """

    def __init__(
        self,
        event_map: Any = None,
        event_emitter: EventEmitter | None = None,
        max_concurrent_event_handlers: int = 1,
        concurrent_event_handle_enable: bool = True,
        *,
        publisher: EventPublisher | None = None,
    ) -> None:
        self.event_map = event_map
        self.event_emitter = event_emitter
        self.max_concurrent_event_handlers = max_concurrent_event_handlers
        self.concurrent_event_handle_enable = concurrent_event_handle_enable
        self.publisher = publisher or choose_publisher(
            max_concurrent_event_handlers, concurrent_event_handle_enable
        )
        self._execute: Execute | None = event_emitter.run if event_emitter is not None else None

    @property
    def limit(self) -> int:
        """How many handler executions may run at once."""
        publisher = self.publisher
        return publisher.limit if isinstance(publisher, ConcurrentPublisher) else 1

    def executor(self, container: Any = None) -> Execute | None:
        """The job runner, resolving handlers from ``container`` (None: the emitter's own)."""
        emitter = self.event_emitter
        if emitter is None:
            return None
        if container is None:
            return self._execute

        async def execute(job: Job) -> Sequence[Job]:
            return await emitter.run(job, container)

        return execute

    async def emit_events(self, events: Sequence[IEvent], container: Any = None) -> None:
        """Process ``events`` and their follow-ups to completion."""
        if not events:
            return
        emitter = self.event_emitter
        if emitter is None:
            logger.warning(
                "%d events were produced but the mediator has no event emitter; they are "
                "dropped: %s",
                len(events),
                ", ".join(type(e).__qualname__ for e in events),
            )
            return
        jobs = emitter.jobs_for_all(events)
        if jobs:
            execute = self._execute if container is None else self.executor(container)
            assert execute is not None
            await self.publisher.publish(jobs, execute)
