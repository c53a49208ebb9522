"""Sends each event where it belongs: domain events to handlers, notifications to the broker."""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
from collections.abc import Awaitable, Coroutine, Iterable, Sequence
from typing import Any, ClassVar

from cqrs._internal.brokers.protocol import Message, MessageBroker
from cqrs._internal.coro import Resume, being_cancelled
from cqrs._internal.di.scope import ScopeStrategy, bound_scope, wrap_container
from cqrs._internal.dispatch.events import cycle_message
from cqrs._internal.dispatch.invokers import (
    HandlerInvoker,
    as_events,
    note_resolve_failure,
    stray_cancel,
)
from cqrs._internal.errors import EventCycleError, NoBrokerError
from cqrs._internal.events.fanout import YIELD_EVERY, Job, raise_collected
from cqrs._internal.events.publishers import EventPublisher, run_at_most, run_in_order
from cqrs._internal.events.targets import PUBLISH, CompiledTargets
from cqrs._internal.messages.events import IEvent
from cqrs._internal.registry import EventMap
from cqrs._internal.serialization.json import EventSerializer, JsonEventSerializer
from cqrs._internal.settings import ErrorHook, FailurePolicy, Settings

__all__ = [
    "DONE",
    "EMIT",
    "ErrorHook",
    "EventEmitter",
    "FailurePolicy",
    "cycle_error",
    "uses_own_emit",
]

logger = logging.getLogger("cqrs")

_PUBLISH: Any = PUBLISH
EMIT: Any = "EventEmitter.emit"
"""The target of a job that a user's own ``emit`` runs (see :func:`uses_own_emit`)."""

_UNPLANNED: Any = object()
DONE: Any = object()
"""What ``next(coro.__await__(), DONE)`` returns when a coroutine driven by hand finished
without waiting (``next`` with a default reports the end without raising StopIteration)."""
_DEFAULT_SERIALIZER = JsonEventSerializer()


def uses_own_emit(emitter: object) -> bool:
    """True when events must go through ``emitter.emit`` rather than the stock fast path.

    That is the case for an emitter that is not an ``EventEmitter`` (duck-typed, or a mock), a
    subclass that overrides ``emit``, and an instance whose ``emit`` was replaced.
    """
    cls = type(emitter)
    if not issubclass(cls, EventEmitter):
        return True
    return cls.overrides_emit or "emit" in emitter.__dict__


async def _run_queue(
    limit: int, queue: collections.deque[Job], execute: Any, errors: list[Exception], ran: int
) -> None:
    """Run ``queue`` as the stock publisher of ``limit`` does."""
    if limit == 1:
        await run_in_order(queue, execute, errors, ran)
    else:
        await run_at_most(limit, queue, execute, errors, ran)


def cycle_error(parent: Job, follow: Sequence[IEvent], limit: int) -> EventCycleError:
    """The error for follow-ups of ``parent`` that would nest deeper than ``limit``."""
    chain: list[str] = []
    job: Any = parent
    while job is not None:
        chain.append(type(job[0]).__qualname__)
        job = job[3]
    chain.reverse()
    chain.append(type(follow[0]).__qualname__)
    return EventCycleError(cycle_message(chain, limit))


class EventEmitter:
    """Runs domain events through their handlers and publishes notification events.

    ``emit(event)`` handles one event and returns the follow-up events its handlers produced,
    each once, in handler order (4.x API). Domain events (``IDomainEvent``) go to the handlers
    bound in ``event_map``, resolved through ``container``, one after another; notification
    events (``INotificationEvent``) are sent to ``message_broker`` as a :class:`Message`. Any
    other event is logged at WARNING and skipped (4.x dropped it silently).

    ``failure_policy`` decides what a failing event handler does: ``"log"`` (default) logs it
    with its traceback and goes on; ``"raise"`` lets the error reach the caller once the other
    events are done. ``on_error(event, handler, exc)``, sync or async, is called for every
    failure under both policies. A handler that raises ``CancelledError`` while its caller was
    not cancelled fails with ``EventHandlerCancelled``. A broker failure, and a chain of
    follow-ups deeper than ``max_event_depth`` (``EventCycleError``), always reach the caller.

    The mediators run events through the emitter's own fast path; a subclass that overrides
    ``emit``, an instance whose ``emit`` was replaced, or any other object with
    ``async emit(event)`` is called once per event instead, follow-ups included.
    """

    overrides_emit: ClassVar[bool] = False
    """True for a subclass that overrides :meth:`emit` (set when the subclass is created)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.overrides_emit = cls.emit is not EventEmitter.emit

    def __init__(
        self,
        event_map: EventMap,
        container: Any,
        message_broker: MessageBroker | None = None,
        scope_strategy: ScopeStrategy = ScopeStrategy.NONE,
        *,
        serializer: EventSerializer | None = None,
        failure_policy: FailurePolicy = "log",
        on_error: ErrorHook | None = None,
        settings: Settings | None = None,
    ) -> None:
        if settings is None:
            settings = Settings(
                scope_strategy=scope_strategy,
                serializer=serializer,
                event_failure_policy=failure_policy,
                on_event_error=on_error,
            )
        self._settings = settings
        self._event_map = event_map
        self._container = wrap_container(container)
        self._message_broker = message_broker
        self._scope_strategy = settings.scope_strategy
        self._serializer: EventSerializer = settings.serializer or _DEFAULT_SERIALIZER
        self.failure_policy: FailurePolicy = settings.event_failure_policy
        self.on_error: ErrorHook | None = settings.on_event_error
        self.max_event_depth: int = settings.max_event_depth
        self.compiled_targets = CompiledTargets(event_map, self._container, self._scope_strategy)
        """The targets of each event type (what the mediators' inline paths look up)."""

    @property
    def settings(self) -> Settings:
        """The options this emitter was built with."""
        return self._settings

    @property
    def event_map(self) -> EventMap:
        """The map of domain event types to handler classes."""
        return self._event_map

    @property
    def container(self) -> Any:
        """The (scope-aware) container handlers are resolved from."""
        return self._container

    @property
    def message_broker(self) -> MessageBroker | None:
        """Where notification events go."""
        return self._message_broker

    @property
    def scope_strategy(self) -> ScopeStrategy:
        """Where DI scopes are opened for event handlers."""
        return self._scope_strategy

    async def emit(self, event: IEvent) -> Sequence[IEvent]:
        """Handle ``event`` (its handlers one after another) and return the follow-ups.

        Each follow-up event is returned once, whether or not anything handles it.
        """
        compiled = self.compiled_targets
        if compiled.version != compiled.counter["changes"]:
            compiled.forget()
        targets: Any = compiled.targets.get(type(event))
        if targets is None:
            targets = compiled.targets_of(event.__class__)
        follow: list[IEvent] = []
        for target in targets:
            build = None if target is _PUBLISH else target.build
            if build is None or bound_scope() is not None:
                follow.extend(await self._follow_ups(event, target, None))
                continue
            try:
                try:
                    handler = build()
                except Exception as exc:
                    note_resolve_failure(exc, target, event)
                    raise
                await handler.handle(event)
                more = handler.events
            except BaseException as exc:
                await self._failed(event, target, exc)
                continue
            if more:
                follow.extend(as_events(more))
        return follow

    def jobs_for(self, event: IEvent) -> list[Job]:
        """The jobs for one event: one per bound handler, or one publish."""
        return self.jobs_for_all((event,))

    def jobs_for_all(
        self, events: Sequence[IEvent], depth: int = 0, parent: Job | None = None
    ) -> list[Job]:
        """The jobs for several events, in event order, ``depth`` generations deep."""
        if events.__class__ is not list and events.__class__ is not tuple:
            events = as_events(events)
        compiled = self.compiled_targets
        if compiled.version != compiled.counter["changes"]:
            compiled.forget()
        jobs: list[Job] = []
        append = jobs.append
        targets_of = compiled.targets.get
        for event in events:
            targets: Any = targets_of(event.__class__)
            if targets is None:
                targets = compiled.compile(event.__class__)
            for target in targets:
                append((event, target, depth, parent))
        return jobs

    def targets_of(self, event_type: type[Any]) -> tuple[Any, ...]:
        """The compiled targets of ``event_type``: one per bound handler, or one publish."""
        compiled = self.compiled_targets
        if compiled.version != compiled.counter["changes"]:
            compiled.forget()
        return compiled.targets_of(event_type)

    async def run(
        self, job: Job, container: Any = None, then: EventPublisher | None = None
    ) -> list[Job]:
        """Run one job and return the jobs of its follow-up events.

        ``container`` is the scope to resolve from (the mediator passes the ``send`` scope);
        ``None`` means the emitter's own container. With ``then``, the follow-up jobs are
        published there (and awaited) instead of returned. Raises ``EventCycleError`` when the
        follow-ups would nest deeper than ``max_event_depth``.
        """
        event, target = job[0], job[1]
        build = None if target is _PUBLISH else target.build
        if build is not None and container is None and bound_scope() is None:
            # The common case inline: a handler built without a scope, one coroutine frame.
            try:
                try:
                    handler = build()
                except Exception as exc:
                    note_resolve_failure(exc, target, event)
                    raise
                await handler.handle(event)
                follow = handler.events
            except BaseException as exc:
                await self._failed(event, target, exc)
                return []
        else:
            follow = await self._follow_ups(event, target, container)
        if not follow:
            return []
        jobs = self.follow_up_jobs(follow, job)
        if then is None or not jobs:
            return jobs
        await then.publish(jobs, self.run)
        return []

    def follow_up_jobs(self, follow: object, parent: Job) -> list[Job]:
        """The jobs of the follow-up events ``follow`` of the job ``parent``.

        Raises ``ConfigurationError`` when ``follow`` is not a sequence of events, and
        ``EventCycleError`` when they would nest deeper than ``max_event_depth``.
        """
        events = as_events(follow)
        depth = parent[2] + 1
        if depth > self.max_event_depth:
            raise cycle_error(parent, events, self.max_event_depth)
        return self.jobs_for_all(events, depth, parent)

    async def run_events(
        self,
        events: Sequence[IEvent],
        limit: int = 1,
        start: int = 0,
        errors: list[Exception] | None = None,
        later: collections.deque[Job] | None = None,
    ) -> None:
        """Run ``events`` and every follow-up in the calling task, exactly as a stock
        publisher with ``limit`` runs their jobs with :meth:`run`, but without a job, a
        coroutine or a publisher call per handler while handlers need no scope and do not wait.

        Jobs run in order, follow-ups after the jobs already queued. With ``limit`` > 1,
        each job but the last is started by hand: the first one that waits makes the rest go
        to :func:`run_at_most`, whose helper tasks take the queue while it waits. Failures are
        collected and raised at the end (see :func:`raise_collected`); a real cancellation
        propagates at once (helpers are cancelled and awaited).

        ``start``, ``errors`` and ``later`` continue a batch whose first ``start`` events
        already ran, one job each (see :meth:`resume_events`): the failures and the
        follow-up jobs they left.
        """
        compiled = self.compiled_targets
        if compiled.version != compiled.counter["changes"]:
            compiled.forget()
        solo_of = compiled.solo.get
        scoped = bound_scope() is not None
        if len(events) == 1 and not start:
            event = events[0]
            target = solo_of(type(event), _UNPLANNED)
            if target is _UNPLANNED:
                target = compiled.solo_for(event.__class__)
            if target is not None and not scoped:
                # One job (the common case): run it here, as a publisher runs its only job.
                try:
                    try:
                        handler = target.build()  # pyright: ignore[reportOptionalCall]
                    except Exception as exc:
                        note_resolve_failure(exc, target, event)
                        raise
                    await handler.handle(event)
                    no_events = target.no_events
                    if no_events is not None and type(handler).events is no_events:  # pyright: ignore[reportUnknownMemberType]
                        return
                    follow = handler.events
                except BaseException as exc:
                    await self._failed(event, target, exc)
                    return
                if follow:
                    await self.run_follow_ups(follow, event, target, limit)
                return
        # Each event's targets are looked up as its turn comes (a binding changed by a
        # handler of this batch applies to the events after it, as to its follow-ups).
        if errors is None:
            errors = []
        remaining = len(events) - start
        # Jobs until the event loop may run (see fanout.YIELD_EVERY); ``start`` jobs ran.
        countdown = YIELD_EVERY - start % YIELD_EVERY
        for event in events[start:] if start else events:
            remaining -= 1
            target = solo_of(type(event), _UNPLANNED)
            if target is _UNPLANNED:
                target = compiled.solo_for(event.__class__)
            if target is None or scoped:
                if later is None:
                    later = collections.deque()
                ran = YIELD_EVERY - countdown
                ran = await self._run_each(event, limit, remaining, later, errors, ran, events)
                if ran < 0:
                    return
                countdown = YIELD_EVERY - ran % YIELD_EVERY
                continue
            countdown -= 1
            if not countdown:
                countdown = YIELD_EVERY
                await asyncio.sleep(0)
            waiting: Awaitable[Sequence[Job]] | None = None
            try:
                try:
                    handler = target.build()  # pyright: ignore[reportOptionalCall]
                except Exception as exc:
                    note_resolve_failure(exc, target, event)
                    raise
                if limit > 1 and (remaining or later):
                    # Not the last job of the queue: started by hand, see run_at_most.
                    coro = handler.handle(event)
                    yielded = next(coro.__await__(), DONE)
                    if yielded is not DONE:
                        waiting = self._finish(event, target, handler, coro, yielded)
                else:
                    await handler.handle(event)
                no_events = target.no_events
                if waiting is not None or (
                    no_events is not None and type(handler).events is no_events  # pyright: ignore[reportUnknownMemberType]
                ):
                    follow = None
                else:
                    follow = handler.events
            except BaseException as exc:
                try:
                    await self._failed(event, target, exc)
                except Exception as error:
                    errors.append(error)
                continue
            if waiting is not None:
                tail = events[len(events) - remaining :]
                ran = YIELD_EVERY - countdown
                await self._hand_over(limit, waiting, (), tail, later or (), errors, ran)
                return
            if follow:
                try:
                    jobs = self.follow_up_jobs(follow, (event, target, 0, None))
                except Exception as exc:
                    errors.append(exc)
                else:
                    if later is None:
                        later = collections.deque(jobs)
                    else:
                        later.extend(jobs)
        if later:
            await _run_queue(limit, later, self.run, errors, YIELD_EVERY - countdown)
        elif errors:
            raise_collected(errors)

    async def resume_events(
        self,
        events: Sequence[IEvent],
        index: int,
        limit: int,
        target: HandlerInvoker,
        *,
        error: BaseException | None = None,
        follow: object = None,
        waiting: tuple[Any, Coroutine[Any, Any, Any], Any] | None = None,
    ) -> None:
        """The rest of a batch that a mediator began running in its own frame, as
        :meth:`run_events` would have gone on.

        ``events[:index]`` ran there, each its only handler (``compiled_targets.solo``),
        without waiting, failing or follow-ups. The job of ``events[index]`` (``target``)
        then raised ``error``, produced the follow-ups ``follow``, or is ``waiting``: its
        ``(handler, coroutine, what the coroutine yielded)`` after it first waited (only a
        job that was not the last, under ``limit`` > 1, is started by hand).
        """
        event = events[index]
        if waiting is not None:
            handler, coro, yielded = waiting
            rest = self._finish(event, target, handler, coro, yielded)
            tail = events[index + 1 :]
            await self._hand_over(limit, rest, (), tail, (), [], index + 1)
            return
        errors: list[Exception] = []
        later: collections.deque[Job] | None = None
        if error is not None:
            try:
                await self._failed(event, target, error)
            except Exception as exc:
                errors.append(exc)
        elif follow:
            try:
                later = collections.deque(self.follow_up_jobs(follow, (event, target, 0, None)))
            except Exception as exc:
                errors.append(exc)
        await self.run_events(events, limit, index + 1, errors, later)

    async def run_follow_ups(
        self, follow: object, event: IEvent, target: HandlerInvoker, limit: int
    ) -> None:
        """Run the follow-up events ``follow`` that ``target`` produced for ``event``, the
        only job of its batch, as a stock publisher with ``limit`` runs them.

        Raises ``ConfigurationError`` when ``follow`` is not a sequence of events, and
        ``EventCycleError`` when they would nest too deep; their failures as the publisher does.
        """
        jobs = self.follow_up_jobs(follow, (event, target, 0, None))
        if jobs:
            await _run_queue(limit, collections.deque(jobs), self.run, [], 1)

    async def handler_failed(
        self, event: IEvent, target: HandlerInvoker, exc: BaseException
    ) -> None:
        """``target``'s handler failed on ``event`` with ``exc``: report it under the failure
        policy (``on_error``, then log or raise); re-raise what is not a failure (a real
        cancellation, ``KeyboardInterrupt``...)."""
        await self._failed(event, target, exc)

    async def _run_each(
        self,
        event: IEvent,
        limit: int,
        remaining: int,
        later: collections.deque[Job],
        errors: list[Exception],
        ran: int,
        events: Sequence[IEvent],
    ) -> int:
        """:meth:`run_events` for an event that is not one handler built without a scope
        (several handlers, a publish, a scope): each target through :meth:`run`.

        Returns the count of jobs run so far, or -1 when a job waited and the rest of the
        batch was handed over to helper tasks (and is done).
        """
        targets = self.targets_of(event.__class__)
        for position, target in enumerate(targets):
            ran += 1
            if ran % YIELD_EVERY == 0:
                await asyncio.sleep(0)
            work = self.run((event, target, 0, None))
            waiting: Awaitable[Sequence[Job]] | None = None
            try:
                if limit > 1 and (remaining or later or position < len(targets) - 1):
                    try:
                        yielded = work.send(None)
                    except StopIteration as stop:
                        later.extend(stop.value)
                    else:
                        waiting = Resume(work, yielded)
                else:
                    later.extend(await work)
            except Exception as exc:
                errors.append(exc)
            if waiting is not None:
                rest = [(event, other, 0, None) for other in targets[position + 1 :]]
                tail = events[len(events) - remaining :] if remaining else ()
                await self._hand_over(limit, waiting, rest, tail, later, errors, ran)
                return -1
        return ran

    async def _hand_over(
        self,
        limit: int,
        waiting: Awaitable[Sequence[Job]],
        rest: Sequence[Job],
        tail: Sequence[IEvent],
        later: Iterable[Job],
        errors: list[Exception],
        ran: int,
    ) -> None:
        """A job of :meth:`run_events` waits: run it beside helper tasks that take the rest
        of the queue (the event's other jobs, the batch's later events, queued follow-ups)."""
        queue: collections.deque[Job] = collections.deque(rest)
        if tail:
            queue.extend(self.jobs_for_all(tail))
        queue.extend(later)
        await run_at_most(limit, queue, self.run, errors, ran, waiting)

    async def _finish(
        self,
        event: IEvent,
        target: Any,
        handler: Any,
        coro: Coroutine[Any, Any, Any],
        yielded: Any,
    ) -> list[Job]:
        """The rest of a job :meth:`run_events` started by hand: its handler has just waited."""
        try:
            await Resume(coro, yielded)
            follow = handler.events
        except BaseException as exc:
            await self._failed(event, target, exc)
            return []
        return self.follow_up_jobs(follow, (event, target, 0, None)) if follow else []

    async def _follow_ups(self, event: Any, target: Any, container: Any) -> Sequence[IEvent]:
        """Publish ``event``, or handle it with ``target`` resolved from ``container`` (the
        emitter's own for ``None``); a handler's failure goes to the failure policy."""
        if target is _PUBLISH:
            await self._publish(event)
            return ()
        try:
            _, follow = await target.invoke(event, container or self._container)
        except BaseException as exc:
            await self._failed(event, target, exc)
            return ()
        return as_events(follow)

    async def _failed(self, event: Any, target: Any, exc: BaseException) -> None:
        """Report a handler's failure under the policy; re-raise what is not one (a real
        cancellation, ``KeyboardInterrupt``...)."""
        if isinstance(exc, Exception):
            await self._report(event, target.handler_type, exc)
        elif isinstance(exc, asyncio.CancelledError) and not being_cancelled():
            await self._report(event, target.handler_type, stray_cancel(exc, target.handler_type))
        else:
            raise exc

    async def _report(self, event: IEvent, handler_type: Any, exc: Exception) -> None:
        if self.on_error is not None:
            result = self.on_error(event, handler_type, exc)
            if inspect.isawaitable(result):
                await result
        if self.failure_policy == "raise":
            raise exc
        logger.error(
            "Event handler %s failed on %s; the error is logged and processing goes on "
            "(failure_policy='log').",
            getattr(handler_type, "__qualname__", handler_type),
            type(event).__qualname__,
            exc_info=exc,
        )

    async def _publish(self, event: Any) -> None:
        broker = self._message_broker
        if broker is None:
            raise NoBrokerError(
                f"{type(event).__qualname__} is a notification event but no message broker "
                "is configured; pass message_broker= to bootstrap."
            )
        serializer = self._serializer
        content_type = serializer.content_type_for(event)
        headers = (
            None
            if content_type is None
            else {"event_name": event.event_name, "message_id": str(event.event_id)}
        )
        await broker.send_message(
            Message(
                message_name=type(event).__name__,
                topic=event.topic,
                payload=event.to_dict(),
                message_id=event.event_id,
                payload_bytes=serializer.serialize(event),
                content_type=content_type,
                headers=headers,
            )
        )
