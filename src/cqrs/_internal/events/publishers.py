"""Publishing strategies: how the jobs of a batch of events are scheduled.

:class:`SequentialPublisher` runs one job at a time; :class:`ConcurrentPublisher` runs at most
``limit`` at once. Both collect failures while the other jobs go on and raise them at the end
(one as itself, several as an ``ExceptionGroup``), and neither lets a job outlive the call that
started it: when the caller is cancelled, the jobs are cancelled and awaited. A user's own
strategy implements :class:`EventPublisher` (``bootstrap(..., event_publisher=...)``).

Their loops are :func:`run_in_order` and :func:`run_at_most`; ``EventEmitter.run_events``
follows the same schedule for a stock emitter and hands its queue to them when a handler
waits or emits follow-ups.
"""

from __future__ import annotations

import asyncio
import collections
import functools
from collections.abc import Awaitable, Sequence

from cqrs._internal.coro import Resume
from cqrs._internal.events.fanout import (
    YIELD_EVERY,
    EventPublisher,
    Execute,
    FanOut,
    Job,
    raise_collected,
)
from cqrs._internal.events.session import EventSession, PoolSession

__all__ = [
    "ConcurrentPublisher",
    "EventPublisher",
    "SequentialPublisher",
    "choose_publisher",
    "run_at_most",
    "run_in_order",
]


class SequentialPublisher:
    """Runs jobs one at a time, in order, follow-ups after the jobs already queued (BFS)."""

    async def publish(self, jobs: Sequence[Job], execute: Execute) -> None:
        """Run every job inline; collect failures and raise them at the end."""
        if len(jobs) == 1:
            jobs = await execute(jobs[0])
            if not jobs:
                return
        await run_in_order(collections.deque(jobs), execute, [])

    def open_session(self, execute: Execute) -> EventSession:
        """A stream's event pipeline running one job at a time in one background worker."""
        return PoolSession(FanOut(execute, 1))


class ConcurrentPublisher:
    """Runs at most ``limit`` jobs at once; a follow-up starts as soon as a slot is free.

    The calling task runs jobs itself, one after another. Helper tasks (at most ``limit - 1``)
    are started only when the job the caller runs actually waits (it goes on waiting in the
    caller's task, as a plain ``await``). Jobs that never wait therefore cost no task and no
    loop turn, and a single job runs inline.
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"the concurrency limit must be at least 1, got {limit}")
        self.limit = limit

    async def publish(self, jobs: Sequence[Job], execute: Execute) -> None:
        """Run ``jobs`` under the limit; collect failures and raise them at the end."""
        if self.limit == 1 or len(jobs) == 1:
            await _SEQUENTIAL.publish(jobs, execute)
            return
        await run_at_most(self.limit, collections.deque(jobs), execute, [])

    def open_session(self, execute: Execute) -> EventSession:
        """A stream's event pipeline running at most ``limit`` jobs at once."""
        return PoolSession(FanOut(execute, self.limit))


_SEQUENTIAL = SequentialPublisher()


async def run_in_order(
    queue: collections.deque[Job], execute: Execute, errors: list[Exception], ran: int = 0
) -> None:
    """The loop of :class:`SequentialPublisher`: run ``queue`` one job at a time, follow-ups
    appended; failures go to ``errors`` and are raised at the end. ``ran`` counts the jobs
    already run by the caller (the loop lets the event loop run every ``YIELD_EVERY`` jobs)."""
    while queue:
        ran += 1
        if ran % YIELD_EVERY == 0:
            await asyncio.sleep(0)
        try:
            follow = await execute(queue.popleft())
        except Exception as exc:
            errors.append(exc)
            continue
        if follow:
            queue.extend(follow)
    if errors:
        raise_collected(errors)


async def run_at_most(
    limit: int,
    queue: collections.deque[Job],
    execute: Execute,
    errors: list[Exception],
    ran: int = 0,
    waiting: Awaitable[Sequence[Job]] | None = None,
) -> None:
    """The loop of :class:`ConcurrentPublisher` (``limit`` > 1), as in its docstring.

    ``waiting`` is the rest of a job the caller started by hand in this task and which has
    just waited for the first time: helpers start on ``queue`` at once, then it is awaited
    here. Failures go to ``errors`` and are raised at the end; on cancellation the helpers
    are cancelled and awaited.
    """
    helpers: FanOut | None = None
    try:
        if waiting is not None:
            helpers = FanOut(execute, limit - 1, queue, errors)
            helpers.spawn()
            try:
                follow = await waiting
            except Exception as exc:
                errors.append(exc)
                follow = ()
            if follow:
                queue.extend(follow)
        while True:
            while queue:
                ran += 1
                if ran % YIELD_EVERY == 0:
                    await asyncio.sleep(0)
                work = execute(queue.popleft())
                try:
                    if not queue:
                        follow = await work
                    else:
                        # Drive the job by hand until it first waits (see coro.py):
                        # only then do helpers take the rest of the queue meanwhile.
                        try:
                            yielded = work.send(None)
                        except StopIteration as stop:
                            follow = stop.value
                        else:
                            if helpers is None:
                                helpers = FanOut(execute, limit - 1, queue, errors)
                            helpers.spawn()
                            follow = await Resume(work, yielded)
                except Exception as exc:
                    errors.append(exc)
                    follow = ()
                if follow:
                    queue.extend(follow)
            if helpers is None or not helpers.running:
                break
            await helpers.wait_idle()
        if helpers is not None:
            helpers.raise_failures()
        elif errors:
            raise_collected(errors)
    finally:
        if helpers is not None and helpers.running:
            await helpers.shutdown()


@functools.lru_cache(maxsize=32)
def choose_publisher(limit: int) -> EventPublisher:
    """The stock strategy for a handler limit: sequential for 1, else concurrent (one shared
    instance per limit: the stock publishers keep no state between calls)."""
    return ConcurrentPublisher(limit) if limit > 1 else SequentialPublisher()
