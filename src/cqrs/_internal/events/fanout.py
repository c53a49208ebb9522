"""The job pool behind concurrent event handling: jobs, worker tasks, collected failures.

A *job* is one unit of event work: one handler for one domain event, one publish of a
notification event, or one call of a user's own ``EventEmitter.emit``. Running a job returns
its follow-up jobs. Publishers treat jobs as opaque values. The limit bounds how many jobs
run at once (handler executions, not events). Failures (``Exception``) are collected while the
other jobs go on and raised once everything is done: the only failure as itself, several as an
``ExceptionGroup``. Cancellation stops everything at once; no job outlives the call that
started it.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, NoReturn, Protocol

__all__ = ["YIELD_EVERY", "EventPublisher", "Execute", "FanOut", "Job", "raise_collected"]

Job = tuple[Any, Any, int, Any]
"""``(event, target, depth, parent job)``: an opaque unit of event work for publishers."""

YIELD_EVERY = 64
"""A publisher running jobs inline lets the event loop run after this many jobs, so a long
fan-out of handlers that never wait cannot starve timeouts and other tasks."""

Execute = Callable[[Job], Coroutine[Any, Any, Sequence[Job]]]


def raise_collected(errors: list[Exception]) -> NoReturn:
    """Raise the only error as itself, several as one ``ExceptionGroup``."""
    if len(errors) == 1:
        raise errors[0]
    raise ExceptionGroup(f"{len(errors)} event jobs failed", errors)


class EventPublisher(Protocol):
    """Decides how the jobs of a batch of events are scheduled.

    ``publish`` must run every job and every follow-up job it returns exactly once, and must not
    return while any job it started is still running; if it is cancelled it must cancel the
    jobs it started and wait for them. A publisher may also offer
    ``open_session(execute) -> EventSession`` to serve the ``concurrent`` stream policy; one
    that does not is run in a background task per item there (see ``events/session.py``).
    """

    async def publish(self, jobs: Sequence[Job], execute: Execute) -> None:
        """Run ``jobs`` and their follow-ups to completion."""
        ...


class FanOut:
    """A pool of at most ``limit`` worker tasks that drain a shared job queue.

    Long-lived in concurrent streams (:meth:`submit` applies backpressure there) and the helper
    pool of :class:`ConcurrentPublisher`. The owner must call :meth:`drain` or :meth:`cancel`;
    nothing here outlives its owner.
    """

    __slots__ = ("_crash", "_execute", "_idle", "_limit", "_space", "_unstarted", "errors",
                 "queue", "running")  # fmt: skip

    def __init__(
        self,
        execute: Execute,
        limit: int,
        queue: collections.deque[Job] | None = None,
        errors: list[Exception] | None = None,
    ) -> None:
        self._execute = execute
        self._limit = limit
        self.queue: collections.deque[Job] = collections.deque() if queue is None else queue
        self.running: dict[asyncio.Task[None], Job | None] = {}
        self.errors: list[Exception] = [] if errors is None else errors
        self._unstarted: set[asyncio.Task[None]] = set()
        self._crash: BaseException | None = None
        self._idle: asyncio.Future[None] | None = None
        self._space: asyncio.Future[None] | None = None

    @property
    def busy(self) -> bool:
        """True while a job is queued or running."""
        return bool(self.queue or self.running)

    def add(self, jobs: Sequence[Job]) -> None:
        """Queue ``jobs`` and start workers up to the limit."""
        self.queue.extend(jobs)
        self.spawn()

    async def submit(self, jobs: Sequence[Job]) -> None:
        """Queue ``jobs`` once fewer than ``limit`` jobs are waiting (backpressure)."""
        while len(self.queue) >= self._limit:
            if self._space is None or self._space.done():
                self._space = asyncio.get_running_loop().create_future()
            await self._space
        self.add(jobs)

    async def wait_idle(self) -> None:
        """Wait until no worker is running."""
        while self.running:
            if self._idle is None or self._idle.done():
                self._idle = asyncio.get_running_loop().create_future()
            await self._idle

    async def drain(self) -> None:
        """Wait until every job, follow-ups included, is done; then raise collected failures."""
        await self.wait_idle()
        self.raise_failures()

    def raise_failures(self) -> None:
        """Raise a worker crash, else the collected job failures, if any."""
        if self._crash is not None:
            raise self._crash
        if self.errors:
            errors = self.errors[:]
            self.errors.clear()
            raise_collected(errors)

    def cancel(self) -> list[Job]:
        """Cancel every running job and drop the queue; return the jobs that did not finish.

        The workers finish their cancellation later: :meth:`shutdown` also waits for them.
        """
        abandoned = [job for job in self.running.values() if job is not None]
        abandoned.extend(self.queue)
        self.queue.clear()
        for task in self.running:
            task.cancel()
        return abandoned

    async def shutdown(self) -> list[Job]:
        """Cancel every job and wait until every worker has ended, ``finally`` blocks included.

        Return the jobs that did not finish. Cancelling the caller while it waits does not cut
        the wait short (no worker may outlive its owner); the cancellation is raised once the
        workers are gone.
        """
        abandoned = self.cancel()
        interrupted: asyncio.CancelledError | None = None
        while self.running:
            try:
                await self.wait_idle()
            except asyncio.CancelledError as exc:
                interrupted = exc
                self.cancel()
        if interrupted is not None:
            raise interrupted
        return abandoned

    def spawn(self) -> None:
        """Start workers while there are more queued jobs than starting workers."""
        if not self.queue or len(self.running) >= self._limit:
            return
        loop = asyncio.get_running_loop()
        while len(self.running) < self._limit and len(self._unstarted) < len(self.queue):
            task = loop.create_task(self._work())
            self.running[task] = None
            self._unstarted.add(task)
            task.add_done_callback(self._finished)

    async def _work(self) -> None:
        queue = self.queue
        task = asyncio.current_task()
        assert task is not None
        self._unstarted.discard(task)
        ran = 0
        while queue:
            ran += 1
            if ran % YIELD_EVERY == 0:
                await asyncio.sleep(0)
                if not queue:
                    break
            job = queue.popleft()
            self.running[task] = job
            space = self._space
            if space is not None and not space.done():
                space.set_result(None)
            try:
                follow = await self._execute(job)
            except Exception as exc:
                self.errors.append(exc)
                continue
            finally:
                self.running[task] = None
            if follow:
                queue.extend(follow)
                self.spawn()

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.running.pop(task, None)
        self._unstarted.discard(task)
        if not task.cancelled():
            crash = task.exception()
            if crash is not None and self._crash is None:
                self._crash = crash
        if self.queue and self._crash is None:
            # Jobs added while this worker was exiting found the pool full: start one now.
            self.spawn()
        if not self.running:
            for waiter in (self._idle, self._space):
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)
