"""A user's own ``cqrs.events.EventPublisher`` (and ``EventSession``), as pyright sees it.

The protocols are public in ``cqrs.events``, but the job type and the ``execute`` callable they
mention are not (``cqrs._internal.events.fanout.Job`` / ``Execute``), so a user spells them
with ``Any`` as below; pyright still checks the method names, ``async``, and arity.
"""

# pyright: reportUnnecessaryTypeIgnoreComment=error

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, assert_type

import di

import cqrs
from cqrs.events import (
    ConcurrentPublisher,
    EventPublisher,
    EventSession,
    SequentialPublisher,
)
from cqrs.requests import bootstrap

Execute = Callable[[Any], Coroutine[Any, Any, Sequence[Any]]]


class OneAtATime:
    """Runs the jobs in order, each follow-up right after the job that produced it."""

    async def publish(self, jobs: Sequence[Any], execute: Execute) -> None:
        pending = list(jobs)
        while pending:
            pending[:0] = await execute(pending.pop(0))


class InOneTask:
    """Also offers a session, for streams under the ``concurrent`` events policy."""

    async def publish(self, jobs: Sequence[Any], execute: Execute) -> None:
        for job in jobs:
            await self.publish(await execute(job), execute)

    def open_session(self, execute: Execute) -> EventSession:
        return _Session(self, execute)


class _Session:
    def __init__(self, publisher: InOneTask, execute: Execute) -> None:
        self._publisher = publisher
        self._execute = execute
        self._tasks: list[asyncio.Task[None]] = []

    async def dispatch(self, jobs: Sequence[Any]) -> None:
        publish = self._publisher.publish(jobs, self._execute)
        self._tasks.append(asyncio.get_running_loop().create_task(publish))

    async def drain(self) -> None:
        await asyncio.gather(*self._tasks)

    async def shutdown(self) -> list[Any]:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        return []


class SyncPublish:
    def publish(self, jobs: Sequence[Any], execute: Execute) -> None:
        return None


class NoExecute:
    async def publish(self, jobs: Sequence[Any]) -> None:
        return None


async def run_nothing(job: Any) -> Sequence[Any]:
    return ()


async def publishers() -> None:
    chosen: list[EventPublisher] = [
        SequentialPublisher(),
        ConcurrentPublisher(limit=4),
        OneAtATime(),
        InOneTask(),
    ]
    assert_type(await chosen[2].publish([], run_nothing), None)
    assert_type(
        bootstrap.bootstrap(di.Container(), event_publisher=OneAtATime()),
        cqrs.RequestMediator,
    )
    bootstrap.bootstrap_streaming(di.Container(), event_publisher=InOneTask())

    # Refused: ``publish`` must be ``async`` and take the jobs and ``execute``.
    bootstrap.bootstrap(di.Container(), event_publisher=SyncPublish())  # pyright: ignore[reportArgumentType]
    wrong: EventPublisher = NoExecute()  # pyright: ignore[reportAssignmentType]
    del wrong
