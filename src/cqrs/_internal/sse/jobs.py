"""Resumable streaming jobs: POST starts a command as a job, GET streams its frames.

A job runs the mediator stream once, in a background task of the server process that started
it, and appends every frame to a :class:`ReplayBuffer`. Any number of GET connections replay
the frames after the id they last saw (``Last-Event-ID`` header, or ``?last=N`` after a page
reload) and then follow the live ones; a reconnect never runs the command again.

Every job ends with exactly one terminal frame, which a follower gets last:

* ``complete``: the handler finished (the job's state is DONE);
* ``error`` (state FAILED), whose JSON ``reason`` says why: ``handler_failed``,
  ``cancelled`` (:meth:`StreamJobs.cancel`), ``shutdown`` (:meth:`StreamJobs.shutdown` or
  :meth:`StreamJobs.aclose` while it ran), ``buffer_unavailable`` (the buffer failed while
  the job wrote to it; the handler is closed at once).

A follower that falls behind the buffer's window gets a ``gap`` frame and goes on from the
oldest frame kept (see :mod:`cqrs._internal.sse.replay`); a follower whose buffer fails gets
a terminal ``error`` frame with the reason ``buffer_unavailable``: a stream never ends with an
exception, and never hangs open after its job ended.
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
from cqrs._internal.sse.frames import Frame, Reason, SSESettings, failure_frame, gap_frame
from cqrs._internal.sse.replay import (
    BufferUnavailable,
    JobState,
    MemoryReplayBuffer,
    ReplayBuffer,
    ReplayGap,
)
from cqrs._internal.sse.stream import frames_of
from cqrs._internal.streaming import RequestStream

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
    """This process already runs its limit of jobs, or is shutting down (HTTP 429); try again
    after ``retry_after`` seconds."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


MAX_EVENT_ID = 2**53 - 1
"""The largest event id: the largest integer a browser's JavaScript counts exactly."""

CANCELLED_MESSAGE = "The job was cancelled."
SHUTDOWN_MESSAGE = "The server is shutting down."
BUFFER_FAILED_MESSAGE = "The job's events could not be stored; start the job again."
FOLLOW_FAILED_MESSAGE = "The job's events cannot be read right now; reconnect later."
GAP_MESSAGE = "This client fell behind and the frames it missed are gone; reload the state."


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


class _Job:
    """One running job: its task, the id its end frame takes, and why it is being stopped."""

    __slots__ = ("ended", "job_id", "next_id", "stop", "task")

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.task: asyncio.Task[None] | None = None
        self.next_id = 1
        self.ended = False
        self.stop: Reason | None = None


class StreamJobs:
    """Runs mediator streams as resumable jobs (see the module docstring).

    ``mediator`` is a ``StreamingRequestMediator`` or a zero-argument function returning one.
    Job ids are 128-bit random, URL-safe strings. ``settings`` renders the frames (the
    ``start`` frame is sent to each new connection, not stored).

    ``max_running`` (default 1 000) bounds the jobs this process runs at once: :meth:`start`
    past it raises :class:`TooManyJobs` with ``retry_after`` (default 5 s) before anything
    runs. The buffer bounds what is kept of finished jobs (see :class:`MemoryReplayBuffer`).

    Use it as an async context manager, or call :meth:`aclose` at shutdown, so that running
    jobs end with a ``shutdown`` error frame and their handlers' cleanup has run.
    """

    def __init__(
        self,
        mediator: StreamingRequestMediator | Callable[[], StreamingRequestMediator],
        *,
        buffer: ReplayBuffer | None = None,
        settings: SSESettings | None = None,
        max_running: int = 1_000,
        retry_after: float = 5.0,
    ) -> None:
        if max_running < 1:
            raise ValueError(f"max_running must be >= 1, got {max_running!r}")
        if not retry_after > 0:
            raise ValueError(f"retry_after must be > 0 seconds, got {retry_after!r}")
        self._mediator = mediator
        self.buffer: ReplayBuffer = buffer if buffer is not None else MemoryReplayBuffer()
        self.settings: SSESettings = settings or SSESettings()
        self.max_running = max_running
        self.retry_after = retry_after
        self._jobs: dict[str, _Job] = {}
        self._starting = 0
        self._stopping = False
        self._buffer_closed = False

    @property
    def running(self) -> int:
        """How many jobs this process is running."""
        return len(self._jobs)

    def _get_mediator(self) -> StreamingRequestMediator:
        mediator = self._mediator
        return mediator if isinstance(mediator, StreamingRequestMediator) else mediator()

    async def start(self, request: IRequest[Any]) -> str:
        """Start streaming ``request`` in the background; return the new job's id.

        The handler lookup happens now: a request with no streaming handler raises here.
        Raises :class:`TooManyJobs` when ``max_running`` jobs already run (or start), or once
        :meth:`shutdown` began; nothing is run or stored then. Errors of the buffer's
        ``open`` propagate.
        """
        self._admit()
        self._starting += 1
        try:
            stream = self._get_mediator().stream(request)
            job_id = secrets.token_urlsafe(16)
            await self.buffer.open(job_id)
        finally:
            self._starting -= 1
        job = _Job(job_id)
        if self._stopping:  # shutdown began while the log was being opened
            job.stop = Reason.SHUTDOWN
            await self._record_end(job_id, job)
            raise self._refusal()
        self._jobs[job_id] = job
        task = asyncio.get_running_loop().create_task(
            self._run(job_id, stream, job), name=f"cqrs job {job_id}"
        )
        job.task = task
        task.add_done_callback(lambda _: self._jobs.pop(job_id, None))
        return job_id

    def _admit(self) -> None:
        if self._stopping:
            raise self._refusal()
        if len(self._jobs) + self._starting >= self.max_running:
            raise TooManyJobs(
                f"This server already runs its limit of {self.max_running} jobs "
                f"(StreamJobs max_running={self.max_running}); retry after "
                f"{self.retry_after:g} s. To run more at once, raise max_running or add "
                "server processes.",
                retry_after=self.retry_after,
            )

    def _refusal(self) -> TooManyJobs:
        return TooManyJobs(
            f"This server is shutting down and starts no new jobs; retry after "
            f"{self.retry_after:g} s (another server will take it).",
            retry_after=self.retry_after,
        )

    async def _run(self, job_id: str, stream: RequestStream[Any], job: _Job) -> None:
        frames = frames_of(stream, _without_start(self.settings))
        failure: Exception | None = None
        try:
            async with contextlib.aclosing(frames):
                async for frame in frames:
                    # One past this frame, whether or not its append below gets through.
                    job.next_id = (frame.id or job.next_id) + 1
                    try:
                        await self.buffer.append(job_id, frame)
                    except Exception as exc:
                        failure = exc
                        break  # leaving the ``async with`` closes the handler at once
                    if frame.terminal:
                        job.ended = True
        except asyncio.CancelledError:
            if job.stop is None:  # cancelled by someone else: the event loop is closing
                job.stop = Reason.SHUTDOWN
            await self._record_end(job_id, job)
            raise
        except Exception as exc:  # the stream's own cleanup failed after its last frame
            logger.error("Job %s: closing its stream failed", job_id, exc_info=exc)
            job.stop = Reason.HANDLER_FAILED
            await self._record_end(job_id, job, error=exc)
            return
        if failure is None:
            return
        if isinstance(failure, BufferUnavailable):
            logger.error(
                "Job %s stopped: its replay buffer is unavailable (%s); the handler was closed "
                "and followers get an error frame",
                job_id,
                failure,
            )
        else:
            logger.error(
                "Job %s stopped: storing its frames failed; the handler was closed and "
                "followers get an error frame",
                job_id,
                exc_info=failure,
            )
        job.stop = Reason.BUFFER_UNAVAILABLE
        await self._record_end(job_id, job, quiet=True)

    async def _record_end(
        self, job_id: str, job: _Job, *, quiet: bool = False, error: Exception | None = None
    ) -> None:
        """Best effort: append the job's terminal frame for ``job.stop`` (once)."""
        if job.ended:
            return
        job.ended = True
        reason = job.stop or Reason.SHUTDOWN
        if error is not None:
            frame = self.settings.error(error, job.next_id)
        else:
            message = {
                Reason.CANCELLED: CANCELLED_MESSAGE,
                Reason.BUFFER_UNAVAILABLE: BUFFER_FAILED_MESSAGE,
            }.get(reason, SHUTDOWN_MESSAGE)
            frame = failure_frame(reason, message, job.next_id)
        try:
            await self.buffer.append(job_id, frame)
        except Exception as exc:
            (logger.debug if quiet else logger.warning)(
                "Job %s: its %s frame could not be stored (%s: %s)",
                job_id,
                reason.value,
                type(exc).__name__,
                exc,
            )

    async def cancel(self, job_id: str) -> bool:
        """Cancel a running job of this process; True if there was one to cancel.

        The handler is cancelled and its cleanup awaited; the job ends with an ``error``
        frame with the reason ``cancelled``.
        """
        job = self._jobs.get(job_id)
        if job is None:
            return False
        if job.stop is None:
            job.stop = Reason.CANCELLED
        await self._stop([job])
        return True

    async def _stop(self, jobs: list[_Job]) -> None:
        """Cancel ``jobs`` (each once: a second cancel would interrupt its cleanup), wait for
        them, and record the end of any that never got to run."""
        tasks: list[asyncio.Task[None]] = []
        for job in jobs:
            task = job.task
            if task is None:
                continue
            if not task.cancelling() and not task.done():
                task.cancel()
            tasks.append(task)
        await asyncio.gather(*tasks, return_exceptions=True)
        for job in jobs:
            task = job.task
            if task is not None and task.cancelled() and not job.ended:
                # Cancelled before its first step: ``_run`` never ran to record the end.
                job.stop = job.stop or Reason.SHUTDOWN
                await self._record_end(job.job_id, job)

    async def state(self, job_id: str) -> JobState:
        """What the buffer knows of ``job_id``; buffer errors propagate."""
        return await self.buffer.state(job_id)

    async def frames(self, job_id: str, after: int = 0) -> AsyncGenerator[Frame, None]:
        """The frames for one connection: ``start`` (first connection only), then the stored
        frames after ``after``, then live ones until the terminal frame (see :meth:`follow`).

        Raises :class:`JobNotFound` or :class:`JobExpired` before yielding anything.
        """
        await self.check(job_id)
        return self.follow(job_id, after)

    async def check(self, job_id: str) -> None:
        """Raise :class:`JobNotFound` or :class:`JobExpired` unless ``job_id`` can be streamed
        (RUNNING, DONE or FAILED). Errors of the buffer (e.g. :class:`BufferUnavailable`)
        propagate: the HTTP layer answers them with 503."""
        state = await self.buffer.state(job_id)
        if state is JobState.UNKNOWN:
            raise JobNotFound(
                f"No job {job_id!r}: it never existed or belongs to another deployment."
            )
        if state is JobState.EXPIRED:
            raise JobExpired(f"Job {job_id!r} finished and its events expired; start a new job.")

    async def follow(self, job_id: str, after: int = 0) -> AsyncGenerator[Frame, None]:
        """:meth:`frames` without the :meth:`check`, for callers that already made it.

        Never raises: what the buffer yields, in order, ending with the job's terminal frame.

        * A follower behind the buffer's window gets a ``gap`` frame (id: the first frame kept
          minus one) and then every frame from the first one kept. A client that reconnects
          after a gap sends that id as ``Last-Event-ID`` and goes on from the first frame
          kept; one that needs every item re-reads the state from its source.
        * ``after`` at or past a finished job's terminal frame: the terminal frame again.
          ``after`` past the last frame of a running job: waits for larger ids.
        * Any exception of the buffer (``BufferUnavailable``, a Redis error, anything) ends
          the stream with a terminal ``error`` frame (reason ``buffer_unavailable``, no id),
          logged once at WARNING without a traceback.
        * A buffer that still raises :class:`ReplayGap`: a ``gap`` frame and a new follow
          from the ``first_id`` it names, or, without one, a terminal ``error`` frame with the
          reason ``gap``.
        * If the buffer stops without a terminal frame because the job's frames are gone (it
          expired, or the buffer closed), the stream just ends: a reconnect then gets 404 or
          410, or resumes on a server that still runs the job.
        """
        if after == 0 and self.settings.send_start:
            yield self.settings.start()
        last = after
        frames = self.buffer.follow(job_id, after)
        try:
            while True:
                try:
                    frame = await anext(frames)
                except StopAsyncIteration:
                    break
                except ReplayGap as gap:
                    first = gap.first_id
                    if first is None or first - 1 <= last:
                        _log_follow_failure(job_id, gap)
                        yield failure_frame(Reason.GAP, GAP_MESSAGE, None)
                        return
                    last = first - 1
                    yield gap_frame(first)
                    await _close_quietly(frames)
                    frames = self.buffer.follow(job_id, last)
                    continue
                except Exception as exc:
                    _log_follow_failure(job_id, exc)
                    yield failure_frame(Reason.BUFFER_UNAVAILABLE, FOLLOW_FAILED_MESSAGE, None)
                    return
                if frame.id is not None and frame.id > last:
                    last = frame.id
                yield frame
                if frame.terminal:
                    return
        finally:
            await _close_quietly(frames)
        end = await self._terminal_after_end(job_id, after)
        if end is not None:
            yield end

    async def _terminal_after_end(self, job_id: str, after: int) -> Frame | None:
        """The frame to end a follow on when the buffer stopped without a terminal frame: the
        job's terminal frame if it finished (resumed past the end, for a buffer that yields
        nothing then), an ``error`` frame if the buffer fails, else None."""
        try:
            if await self.buffer.state(job_id) not in (JobState.DONE, JobState.FAILED):
                return None
            for start in (after - 1, 0) if after > 1 else (0,):
                async with contextlib.aclosing(self.buffer.follow(job_id, start)) as frames:
                    async for frame in frames:
                        if frame.terminal:
                            return frame
        except Exception as exc:
            _log_follow_failure(job_id, exc)
            return failure_frame(Reason.BUFFER_UNAVAILABLE, FOLLOW_FAILED_MESSAGE, None)
        return None

    async def shutdown(self, grace: float = 0.0) -> None:
        """Stop this process's jobs for a server shutdown; call it from the shutdown hook.

        From now on :meth:`start` raises :class:`TooManyJobs`. Running jobs get up to
        ``grace`` seconds to finish on their own; the others are cancelled and end with an
        ``error`` frame with the reason ``shutdown``, appended after their handlers' cleanup
        (``finally`` blocks, which may await) has finished. The buffer stays open, so that
        followers read the jobs' ends; :meth:`aclose` also closes it. Safe to call more than
        once and concurrently.
        """
        self._stopping = True
        jobs = list(self._jobs.values())
        tasks = [job.task for job in jobs if job.task is not None]
        if grace > 0 and tasks:
            await asyncio.wait(tasks, timeout=grace)
        for job in jobs:
            if job.stop is None:
                job.stop = Reason.SHUTDOWN
        await self._stop(jobs)

    async def aclose(self) -> None:
        """:meth:`shutdown` (no grace), then close the buffer. Safe to call more than once."""
        await self.shutdown()
        if not self._buffer_closed:
            self._buffer_closed = True
            await self.buffer.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def _without_start(settings: SSESettings) -> SSESettings:
    return dataclasses.replace(settings, send_start=False)


def _log_follow_failure(job_id: str, exc: BaseException) -> None:
    logger.warning(
        "A follower of job %s got an error frame: the replay buffer failed (%s: %s)",
        job_id,
        type(exc).__name__,
        exc,
    )


async def _close_quietly(frames: AsyncGenerator[Frame, None]) -> None:
    """Close a buffer's follow; its errors were reported already, or do not matter now."""
    with contextlib.suppress(Exception):
        await frames.aclose()
