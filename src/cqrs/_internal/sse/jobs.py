"""Resumable streaming jobs: POST starts a command as a job, GET streams its frames.

A job runs the mediator stream once, in a background task of the server process that started
it, and appends every frame to a :class:`ReplayBuffer`. Any number of GET connections replay
the frames after the id they last saw (``Last-Event-ID`` header, or ``?last=N`` after a page
reload) and then follow the live ones; a reconnect never runs the command again.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets
from collections.abc import AsyncGenerator, Callable
from typing import Any, Self

from cqrs._internal.errors import CQRSError
from cqrs._internal.mediators import StreamingRequestMediator
from cqrs._internal.messages.requests import IRequest
from cqrs._internal.sse.frames import Frame, Reason, SSESettings, failure_frame
from cqrs._internal.sse.replay import JobState, MemoryReplayBuffer, ReplayBuffer
from cqrs._internal.sse.stream import frames_of

__all__ = [
    "MAX_EVENT_ID",
    "JobExpired",
    "JobNotFound",
    "StreamJobs",
    "TooManyJobs",
    "parse_last_event_id",
]

logger = logging.getLogger("cqrs")


class JobNotFound(CQRSError, LookupError):
    """No job has this id (HTTP 404)."""


class JobExpired(CQRSError, LookupError):
    """The job existed but its frames were dropped after its TTL (HTTP 410)."""


class TooManyJobs(CQRSError, RuntimeError):
    """This process already runs its limit of jobs (HTTP 429); try again after ``retry_after``
    seconds."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


MAX_EVENT_ID = 2**53 - 1
"""The largest event id: the largest integer a browser's JavaScript counts exactly."""


def parse_last_event_id(header: str | None, query: str | None) -> int:
    """The id to resume after: the ``Last-Event-ID`` header, else ``?last=``, else 0.

    Raises ``ValueError`` for a value that is not a non-negative integer.
    """
    raw = header if header not in (None, "") else query
    if raw in (None, ""):
        return 0
    value = int(str(raw))
    if value < 0:
        raise ValueError("a last event id cannot be negative")
    if value > MAX_EVENT_ID:
        raise ValueError(f"a last event id cannot exceed {MAX_EVENT_ID}")
    return value


class StreamJobs:
    """Runs mediator streams as resumable jobs (see the module docstring).

    ``mediator`` is a ``StreamingRequestMediator`` or a zero-argument function returning one.
    Job ids are 128-bit random, URL-safe strings. ``settings`` renders the frames (the
    ``start`` frame is sent to each new connection, not stored). Use it as an async context
    manager (or call :meth:`aclose`) so that running jobs are cancelled at shutdown.
    """

    def __init__(
        self,
        mediator: StreamingRequestMediator | Callable[[], StreamingRequestMediator],
        *,
        buffer: ReplayBuffer | None = None,
        settings: SSESettings | None = None,
    ) -> None:
        self._mediator = mediator
        self.buffer: ReplayBuffer = buffer if buffer is not None else MemoryReplayBuffer()
        self.settings: SSESettings = settings or SSESettings()
        self._tasks: dict[str, asyncio.Task[None]] = {}

    @property
    def running(self) -> int:
        """How many jobs this process is running."""
        return len(self._tasks)

    def _get_mediator(self) -> StreamingRequestMediator:
        mediator = self._mediator
        return mediator if isinstance(mediator, StreamingRequestMediator) else mediator()

    async def start(self, request: IRequest[Any]) -> str:
        """Start streaming ``request`` in the background; return the new job's id.

        The handler lookup happens now: a request with no streaming handler raises here.
        """
        stream = self._get_mediator().stream(request)
        job_id = secrets.token_urlsafe(16)
        await self.buffer.open(job_id)
        task = asyncio.get_running_loop().create_task(
            self._run(job_id, stream), name=f"cqrs job {job_id}"
        )
        self._tasks[job_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(job_id, None))
        return job_id

    async def _run(self, job_id: str, stream: Any) -> None:
        settings = self.settings
        last_id = 0
        try:
            async with contextlib.aclosing(frames_of(stream, _without_start(settings))) as frames:
                async for frame in frames:
                    if frame.id is not None:
                        last_id = frame.id
                    await self.buffer.append(job_id, frame)
        except asyncio.CancelledError:
            await self.buffer.append(job_id, _cancelled(last_id + 1))
            raise
        except Exception as exc:  # the buffer itself failed; nothing more can be recorded
            logger.error("Job %s could not record its frames", job_id, exc_info=exc)

    async def cancel(self, job_id: str) -> bool:
        """Cancel a running job of this process; True if there was one to cancel."""
        task = self._tasks.get(job_id)
        if task is None:
            return False
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return True

    async def state(self, job_id: str) -> JobState:
        """What the buffer knows of ``job_id``."""
        return await self.buffer.state(job_id)

    async def frames(self, job_id: str, after: int = 0) -> AsyncGenerator[Frame, None]:
        """The frames for one connection: ``start`` (first connection only), then the stored
        frames after ``after``, then live ones until the terminal frame.

        Raises :class:`JobNotFound` or :class:`JobExpired` before yielding anything.
        """
        await self.check(job_id)
        return self.follow(job_id, after)

    async def check(self, job_id: str) -> None:
        """Raise :class:`JobNotFound` or :class:`JobExpired` unless ``job_id`` can be streamed."""
        state = await self.buffer.state(job_id)
        if state is JobState.UNKNOWN:
            raise JobNotFound(
                f"No job {job_id!r}: it never existed or belongs to another deployment."
            )
        if state is JobState.EXPIRED:
            raise JobExpired(f"Job {job_id!r} finished and its events expired; start a new job.")

    async def follow(self, job_id: str, after: int = 0) -> AsyncGenerator[Frame, None]:
        """:meth:`frames` without the :meth:`check`, for callers that already made it."""
        if after == 0 and self.settings.send_start:
            yield self.settings.start()
        async with contextlib.aclosing(self.buffer.follow(job_id, after)) as frames:
            async for frame in frames:
                yield frame

    async def aclose(self) -> None:
        """Cancel every running job of this process and close the buffer."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.buffer.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def _without_start(settings: SSESettings) -> SSESettings:
    return dataclasses.replace(settings, send_start=False)


def _cancelled(event_id: int) -> Frame:
    return failure_frame(Reason.CANCELLED, "The job was cancelled.", event_id)
