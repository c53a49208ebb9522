"""Runs the events a handler produced, follow-ups included, under a publishing strategy.

One path serves ``send``, both stream policies and every kind of emitter: the events become
*jobs*, and the publisher (stock or the user's) schedules them. For a stock ``EventEmitter`` a
job is one handler of one event (so the concurrency limit bounds handler executions); for an
emitter whose ``emit`` is its own (a subclass, a patched instance, a mock, a duck type) a job is
one ``emit(event)`` call, so every event, follow-ups included, goes through that ``emit``.

Under a stock publisher with a stock emitter, the emitter runs that same schedule itself
(``EventEmitter.run_events``): no job, coroutine or publisher call per handler while handlers
need no scope and do not wait.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

from cqrs._internal.coro import being_cancelled
from cqrs._internal.dispatch.invokers import as_events, stray_cancel
from cqrs._internal.events.emitter import EMIT, EventEmitter, cycle_error, uses_own_emit
from cqrs._internal.events.fanout import Execute, Job
from cqrs._internal.events.publishers import (
    ConcurrentPublisher,
    EventPublisher,
    SequentialPublisher,
    choose_publisher,
    run_in_order,
)
from cqrs._internal.events.session import EventSession, open_session
from cqrs._internal.events.targets import CompiledTargets
from cqrs._internal.messages.events import IEvent
from cqrs._internal.settings import Settings

__all__ = ["EventProcessor", "InlineEvents", "StreamEventPipeline", "choose_publisher"]

logger = logging.getLogger("cqrs")

JobsFor = Callable[[Sequence[IEvent]], list[Job]]


class InlineEvents:
    """How a mediator may run a batch of events in its own frame (``EventProcessor.inline``).

    ``emitter`` is a stock ``EventEmitter`` whose schedule is that of a stock publisher with
    ``limit`` (see :meth:`EventEmitter.run_events`). A mediator that runs a batch itself first
    checks, for every batch, that ``emit`` was not replaced on the instance (``"emit" in
    attrs``), that no DI scope is bound, and that ``compiled`` (the emitter's compiled targets)
    is current; it runs there only events whose only target is ``compiled.solo[type]``, and
    hands the rest of the batch to :meth:`EventEmitter.resume_events` or
    :meth:`EventEmitter.run_events` as soon as a job waits, fails or has follow-ups.
    """

    __slots__ = ("attrs", "compiled", "emitter", "limit")

    def __init__(
        self, emitter: EventEmitter, limit: int, attrs: dict[str, Any], compiled: CompiledTargets
    ) -> None:
        self.emitter = emitter
        self.limit = limit
        self.attrs = attrs
        self.compiled = compiled


_UNPLANNED = InlineEvents(cast(Any, None), 0, {"emit": "not planned yet"}, cast(Any, None))
"""``EventProcessor.inline`` until the first batch: its ``attrs`` send every batch to
:meth:`EventProcessor.process`, which plans it (a mediator built per request and never used
for events never does)."""


class EventProcessor:
    """Processes a batch of events and every follow-up event they cause.

    Sequential (``concurrent_event_handle_enable=False``): one handler execution at a time,
    in order, follow-ups after the events already queued. Concurrent: at most
    ``max_concurrent_event_handlers`` handler executions at once (4.x limited events, not
    handlers), follow-ups start as soon as a slot is free. ``publisher=`` (or
    ``settings.event_publisher``) replaces both with your own :class:`EventPublisher`.

    ``emit_events`` returns only when every job it started has finished; if it is cancelled,
    the jobs are cancelled and awaited before the cancellation goes on. Failures are raised
    once the other events are done (see the emitter's ``failure_policy``). A mediator without
    an emitter logs the events it drops.
    """

    def __init__(
        self,
        event_map: Any = None,
        event_emitter: Any = None,
        max_concurrent_event_handlers: int = 1,
        concurrent_event_handle_enable: bool = True,
        *,
        publisher: EventPublisher | None = None,
        settings: Settings | None = None,
    ) -> None:
        if settings is None:
            settings = Settings(
                max_concurrent_event_handlers=max_concurrent_event_handlers,
                concurrent_event_handle_enable=concurrent_event_handle_enable,
                event_publisher=publisher,
            )
        self.settings = settings
        self.event_map = event_map
        self.max_concurrent_event_handlers: int = settings.max_concurrent_event_handlers
        self.concurrent_event_handle_enable: bool = settings.concurrent_events
        self.limit: int = settings.event_limit
        chosen: EventPublisher = settings.event_publisher or choose_publisher(self.limit)
        self._publisher = chosen
        self._inline_limit = 0
        """The stock publisher's limit (0: not a stock publisher); set with :attr:`inline`."""
        self._emit_runner: tuple[Any, Execute] | None = None
        self._event_emitter = event_emitter
        self.inline: InlineEvents | None = _UNPLANNED
        """Set while a batch may run without a publisher call (see :class:`InlineEvents`);
        planned on the first batch, and again after the publisher or the emitter changed."""

    @property
    def publisher(self) -> EventPublisher:
        """The strategy that schedules event jobs."""
        return self._publisher

    @publisher.setter
    def publisher(self, publisher: EventPublisher) -> None:
        self._publisher = publisher
        self.inline = _UNPLANNED

    @property
    def event_emitter(self) -> Any:
        """The emitter that runs the events (``None``: events are logged and dropped)."""
        return self._event_emitter

    @event_emitter.setter
    def event_emitter(self, emitter: Any) -> None:
        self._event_emitter = emitter
        self.inline = _UNPLANNED

    def _plan_inline(self) -> InlineEvents | None:
        """:attr:`inline` for the emitter and publisher of now: set for a stock
        ``EventEmitter`` (whose class keeps the stock ``emit``; a patch of ``emit`` on the
        instance is checked per batch) under a stock publisher."""
        emitter: object = self._event_emitter
        emitter_type = type(emitter)  # not isinstance: a spec'd mock is not a stock emitter
        limit = self._inline_limit = _inline_limit(self._publisher)
        inline: InlineEvents | None = None
        if limit and issubclass(emitter_type, EventEmitter) and not emitter_type.overrides_emit:
            stock = cast(EventEmitter, emitter)
            inline = InlineEvents(stock, limit, vars(stock), stock.compiled_targets)
        self.inline = inline
        return inline

    def route(self, container: Any = None) -> tuple[JobsFor, Execute] | None:
        """How events become jobs now, and what runs a job: ``None`` without an emitter.

        ``container`` is the scope handlers resolve from (``None``: the emitter's own).
        """
        emitter = self._event_emitter
        if emitter is None:
            return None
        if uses_own_emit(emitter):
            runner = self._emit_runner
            if runner is None or runner[0] is not emitter:
                runner = self._emit_runner = (
                    emitter,
                    _emit_runner(emitter, self.settings.max_event_depth),
                )
            return _emit_jobs, runner[1]
        stock: EventEmitter = emitter
        if container is None:
            return stock.jobs_for_all, stock.run

        async def execute(job: Job) -> Sequence[Job]:
            return await stock.run(job, container)

        return stock.jobs_for_all, execute

    async def emit_events(self, events: Sequence[IEvent], container: Any = None) -> None:
        """Process ``events`` and their follow-ups to completion."""
        await self.process(events, container)

    def process(self, events: Sequence[IEvent], container: Any = None) -> Awaitable[object]:
        """:meth:`emit_events` as an awaitable, without a coroutine frame of its own.

        With a stock emitter, a stock publisher and no scope, the emitter runs the publisher's
        schedule itself (:meth:`EventEmitter.run_events`).
        """
        inline = self.inline
        if inline is _UNPLANNED:
            inline = self._plan_inline()
        kind: type[Any] = type(events)
        if inline is None or container is not None or kind is not list or "emit" in inline.attrs:
            return self._emit(events, container)
        return inline.emitter.run_events(events, inline.limit)

    async def _emit(self, events: Sequence[IEvent], container: Any) -> None:
        if not events:
            return
        route = self.route(container)
        if route is None:
            _drop(events)
            return
        jobs_for, execute = route
        if jobs_for is _emit_jobs and self._inline_limit:
            events = as_events(events)
            if len(events) == 1:
                # What a stock publisher does with one job: run it, then its follow-ups.
                follow = await execute((events[0], EMIT, 0, None))
                if follow:
                    await run_in_order(collections.deque(follow), execute, [])
                return
        jobs = jobs_for(events)
        if jobs:
            await self.publisher.publish(jobs, execute)

    def open_stream_pipeline(self, container: Any, concurrent: bool) -> StreamEventPipeline:
        """The event pipeline of one stream: inline (``before_item``) or a session from the
        publisher (``concurrent``)."""
        return StreamEventPipeline(self, container, concurrent)


class StreamEventPipeline:
    """The events of one stream: ``dispatch`` an item's events, ``drain`` at the end,
    ``shutdown`` when the stream is closed early.

    Inline, ``dispatch`` returns once the events and their follow-ups are done. Concurrent, it
    hands them to a session opened once from the publisher (the routing of events to jobs is
    fixed when the stream opens) and returns when there is room.
    """

    __slots__ = ("_jobs_for", "_session", "dispatch")

    def __init__(self, processor: EventProcessor, container: Any, concurrent: bool) -> None:
        self._session: EventSession | None = None
        self._jobs_for: JobsFor | None = None
        self.dispatch: Callable[[Sequence[IEvent]], Awaitable[object]] = (
            processor.process
            if container is None
            else functools.partial(processor.process, container=container)
        )
        route = processor.route(container) if concurrent else None
        if route is not None:
            self._jobs_for, execute = route
            self._session = open_session(processor.publisher, execute, processor.limit)
            self.dispatch = self._submit

    @property
    def inline(self) -> bool:
        """True when ``dispatch`` runs the events before it returns (no session)."""
        return self._session is None

    async def _submit(self, events: Sequence[IEvent]) -> None:
        assert self._session is not None
        assert self._jobs_for is not None
        jobs = self._jobs_for(events)
        if jobs:
            await self._session.dispatch(jobs)

    async def drain(self) -> None:
        """Wait until every event dispatched so far is done; raise collected failures."""
        if self._session is not None:
            await self._session.drain()

    async def shutdown(self) -> list[Job]:
        """Cancel the events still queued or running, wait for them; return the unfinished."""
        if self._session is None:
            return []
        return await self._session.shutdown()


def _inline_limit(publisher: object) -> int:
    """The ``limit`` of a stock publisher, whose schedule the emitter runs itself
    (``EventEmitter.run_events``); 0 for any other publisher."""
    if type(publisher) is SequentialPublisher:
        return 1
    if type(publisher) is ConcurrentPublisher:
        return publisher.limit
    return 0


def _drop(events: Sequence[IEvent]) -> None:
    logger.warning(
        "%d events were produced but the mediator has no event emitter; they are dropped: %s",
        len(events),
        ", ".join(type(e).__qualname__ for e in events),
    )


def _emit_jobs(events: Sequence[IEvent], depth: int = 0, parent: Job | None = None) -> list[Job]:
    return [(event, EMIT, depth, parent) for event in as_events(events)]


def _emit_runner(emitter: Any, max_depth: int) -> Execute:
    """Runs a job with the emitter's own ``emit``; its return value are the follow-ups."""

    async def execute(job: Job) -> Sequence[Job]:
        try:
            follow = await emitter.emit(job[0])
        except asyncio.CancelledError as exc:
            if being_cancelled():
                raise
            raise stray_cancel(exc, type(emitter).__qualname__ + ".emit") from exc
        if not follow:
            return []
        follow = as_events(follow)
        depth = job[2] + 1
        if depth > max_depth:
            raise cycle_error(job, follow, max_depth)
        return _emit_jobs(follow, depth, job)

    return execute
