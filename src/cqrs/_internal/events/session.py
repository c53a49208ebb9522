"""One stream's event pipeline: ``dispatch`` each item's jobs, ``drain`` at the end, or
``shutdown`` when the stream closes early.

A stream under the ``concurrent`` events policy opens one session from the mediator's event
publisher. The stock publishers give a :class:`PoolSession` (a bounded pool of worker tasks
with backpressure); a user's publisher that offers no ``open_session`` gets a
:class:`BackgroundSession`, which runs its ``publish`` for each item in a task of its own, so
that the user's scheduling is honoured under both policies.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol

from cqrs._internal.events.fanout import EventPublisher, Execute, FanOut, Job, raise_collected

__all__ = ["BackgroundSession", "EventSession", "PoolSession", "open_session"]

logger = logging.getLogger("cqrs")


class EventSession(Protocol):
    """The event pipeline of one stream.

    ``dispatch(jobs)`` hands over the jobs of one item and may return before they ran (it may
    wait for room: backpressure); ``drain()`` waits until every job and follow-up is done and
    raises the failures collected; ``shutdown()`` cancels what is queued or running, waits until
    nothing runs any more, and returns the jobs that did not finish. After ``shutdown`` the
    session is not used again.
    """

    async def dispatch(self, jobs: Sequence[Job]) -> None:
        """Start ``jobs`` (backpressure allowed)."""
        ...

    async def drain(self) -> None:
        """Wait for every job to finish; raise collected failures."""
        ...

    async def shutdown(self) -> list[Job]:
        """Cancel and wait; return the unfinished jobs."""
        ...


class PoolSession:
    """A session over a :class:`FanOut`: at most its limit of jobs at once, backpressure when
    as many jobs are waiting as the limit."""

    __slots__ = ("_fan",)

    def __init__(self, fan: FanOut) -> None:
        self._fan = fan

    async def dispatch(self, jobs: Sequence[Job]) -> None:
        """Queue ``jobs`` once there is room."""
        await self._fan.submit(jobs)

    async def drain(self) -> None:
        """Wait until the pool is idle; raise collected failures."""
        await self._fan.drain()

    async def shutdown(self) -> list[Job]:
        """Cancel the pool's jobs and wait for its workers."""
        if not self._fan.busy:
            return []
        return await self._fan.shutdown()


class BackgroundSession:
    """Runs ``publisher.publish(jobs, execute)`` for each item in a task of its own.

    At most ``limit`` items' batches are in flight; ``dispatch`` waits for one to end beyond
    that. Failures are collected and raised by ``drain``.
    """

    def __init__(self, publisher: EventPublisher, execute: Execute, limit: int) -> None:
        self._publisher = publisher
        self._execute = execute
        self._limit = max(1, limit)
        self._tasks: dict[asyncio.Task[None], Sequence[Job]] = {}
        self._errors: list[Exception] = []

    async def dispatch(self, jobs: Sequence[Job]) -> None:
        """Start a task publishing ``jobs`` once fewer than ``limit`` are running."""
        while len(self._tasks) >= self._limit:
            await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
            self._collect()
        task = asyncio.get_running_loop().create_task(self._publisher.publish(jobs, self._execute))
        self._tasks[task] = jobs

    async def drain(self) -> None:
        """Wait for every batch; raise collected failures."""
        while self._tasks:
            await asyncio.wait(self._tasks)
            self._collect()
        if self._errors:
            errors = self._errors[:]
            self._errors.clear()
            raise_collected(errors)

    async def shutdown(self) -> list[Job]:
        """Cancel every batch and wait for each task to end; return their jobs."""
        abandoned = [job for jobs in self._tasks.values() for job in jobs]
        interrupted: asyncio.CancelledError | None = None
        for task in self._tasks:
            task.cancel()
        while self._tasks:
            try:
                await asyncio.wait(self._tasks)
            except asyncio.CancelledError as exc:
                interrupted = exc
            self._collect()
        if interrupted is not None:
            raise interrupted
        return abandoned

    def _collect(self) -> None:
        for task in [t for t in self._tasks if t.done()]:
            del self._tasks[task]
            if task.cancelled():
                continue
            exc = task.exception()
            if isinstance(exc, Exception):
                self._errors.append(exc)
            elif exc is not None:
                raise exc


def open_session(publisher: EventPublisher, execute: Execute, limit: int) -> EventSession:
    """The publisher's own session when it offers one, else a :class:`BackgroundSession`."""
    opener = getattr(publisher, "open_session", None)
    if opener is not None:
        session: EventSession = opener(execute)
        return session
    return BackgroundSession(publisher, execute, limit)
