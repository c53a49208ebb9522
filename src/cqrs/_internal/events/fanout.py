"""Running event jobs one at a time or concurrently under a limit.

A *job* is one unit of event work: one handler for one domain event, or one publish of a
notification event. Running a job returns its follow-up jobs. The limit bounds how many jobs
run at once (handler executions, not events). Failures (``Exception``) are collected while the
other jobs go on and raised once everything is done: the only failure as itself, several as an
``ExceptionGroup``. Cancellation stops everything at once; no job outlives the call that
started it.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NoReturn, Protocol

__all__ = [
    "ConcurrentPublisher",
    "EventPublisher",
    "Execute",
    "FanOut",
    "Job",
    "SequentialPublisher",
    "raise_collected",
]

Job = tuple[Any, Any]
"""``(event, target)``: the event and the handler class (or publish marker) that takes it."""

Execute = Callable[[Job], Awaitable[Sequence[Job]]]


def raise_collected(errors: list[Exception]) -> NoReturn:
    """Raise the only error as itself, several as one ``ExceptionGroup``."""
    if len(errors) == 1:
        raise errors[0]
    raise ExceptionGroup(f"{len(errors)} event jobs failed", errors)


class EventPublisher(Protocol):
    """Decides how the jobs of a batch of events are scheduled.

    ``publish`` must run every job and every follow-up job it returns exactly once, and must not
    return while any job it started is still running.
    """

    async def publish(self, jobs: Sequence[Job], execute: Execute) -> None:
        """Run ``jobs`` and their follow-ups to completion."""
        ...


class SequentialPublisher:
    """Runs jobs one at a time, in order, follow-ups after the jobs already queued (BFS)."""

    async def publish(self, jobs: Sequence[Job], execute: Execute) -> None:
        """Run every job inline; collect failures and raise them at the end."""
        queue = collections.deque(jobs)
        errors: list[Exception] = []
        while queue:
            try:
                follow = await execute(queue.popleft())
            except Exception as exc:
                errors.append(exc)
                continue
            if follow:
                queue.extend(follow)
        if errors:
            raise_collected(errors)


class ConcurrentPublisher:
    """Runs at most ``limit`` jobs at once; a follow-up starts as soon as a slot is free.

    A single job (one event with one handler) runs inline, without a task.
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"the concurrency limit must be at least 1, got {limit}")
        self.limit = limit

    async def publish(self, jobs: Sequence[Job], execute: Execute) -> None:
        """Run ``jobs`` under the limit; collect failures and raise them at the end."""
        if self.limit == 1:
            await _SEQUENTIAL.publish(jobs, execute)
            return
        if len(jobs) == 1:
            jobs = await execute(jobs[0])
            if not jobs:
                return
        fan = FanOut(execute, self.limit)
        try:
            fan.add(jobs)
            await fan.drain()
        finally:
            fan.cancel()


_SEQUENTIAL = SequentialPublisher()


class FanOut:
    """A pool of at most ``limit`` worker tasks that drain a shared job queue.

    Used one-shot by :class:`ConcurrentPublisher` and long-lived by concurrent streams
    (:meth:`submit` applies backpressure there). The owner must call :meth:`drain` or
    :meth:`cancel`; nothing here outlives its owner.
    """

    __slots__ = ("_crash", "_errors", "_execute", "_idle", "_limit", "_queue", "_running", "_space")

    def __init__(self, execute: Execute, limit: int) -> None:
        self._execute = execute
        self._limit = limit
        self._queue: collections.deque[Job] = collections.deque()
        self._running: dict[asyncio.Task[None], Job | None] = {}
        self._errors: list[Exception] = []
        self._crash: BaseException | None = None
        self._idle: asyncio.Future[None] | None = None
        self._space: asyncio.Future[None] | None = None

    @property
    def busy(self) -> bool:
        """True while a job is queued or running."""
        return bool(self._queue or self._running)

    def add(self, jobs: Sequence[Job]) -> None:
        """Queue ``jobs`` and start workers up to the limit."""
        self._queue.extend(jobs)
        self._spawn()

    async def submit(self, jobs: Sequence[Job]) -> None:
        """Queue ``jobs`` once fewer than ``limit`` jobs are waiting (backpressure)."""
        while len(self._queue) >= self._limit:
            if self._space is None or self._space.done():
                self._space = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._space)
        self.add(jobs)

    async def drain(self) -> None:
        """Wait until every job, follow-ups included, is done; then raise collected failures."""
        while self._running:
            if self._idle is None or self._idle.done():
                self._idle = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._idle)
        if self._crash is not None:
            raise self._crash
        if self._errors:
            errors, self._errors = self._errors, []
            raise_collected(errors)

    def cancel(self) -> list[Job]:
        """Cancel every running job and drop the queue; return the jobs that did not finish."""
        abandoned = [job for job in self._running.values() if job is not None]
        abandoned.extend(self._queue)
        self._queue.clear()
        for task in self._running:
            task.cancel()
        return abandoned

    def _spawn(self) -> None:
        if len(self._running) >= self._limit or not self._queue:
            return
        loop = asyncio.get_running_loop()
        while self._queue and len(self._running) < self._limit:
            task = loop.create_task(self._work())
            self._running[task] = None
            task.add_done_callback(self._finished)

    async def _work(self) -> None:
        queue = self._queue
        task = asyncio.current_task()
        assert task is not None
        while queue:
            job = queue.popleft()
            self._running[task] = job
            space = self._space
            if space is not None and not space.done():
                space.set_result(None)
            try:
                follow = await self._execute(job)
            except Exception as exc:
                self._errors.append(exc)
                continue
            finally:
                self._running[task] = None
            if follow:
                queue.extend(follow)
                self._spawn()

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.pop(task, None)
        if not task.cancelled():
            crash = task.exception()
            if crash is not None and self._crash is None:
                self._crash = crash
        if self._queue and self._crash is None:
            # Jobs added while this worker was exiting found the pool full: start one now.
            self._spawn()
        if not self._running:
            for waiter in (self._idle, self._space):
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)
