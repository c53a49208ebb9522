"""Replay buffers: where a job's SSE frames are kept so a reconnecting client can resume.

A buffer stores the frames of each job in id order, lets any number of readers replay the
frames after a given id and then follow new ones live, and forgets a job ``ttl`` seconds after
its last (terminal) frame. :class:`MemoryReplayBuffer` is the default (one server process);
``cqrs.integrations.redis_replay.RedisReplayBuffer`` shares jobs between processes.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import time
from collections.abc import AsyncGenerator
from typing import Protocol

from cqrs._internal.errors import CQRSError
from cqrs._internal.sse.frames import Frame

__all__ = ["BufferUnavailable", "JobState", "MemoryReplayBuffer", "ReplayBuffer", "ReplayGap"]


class JobState(enum.StrEnum):
    """What a buffer knows about a job id."""

    UNKNOWN = "unknown"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    EXPIRED = "expired"


class ReplayGap(CQRSError, LookupError):
    """The frames a client asked to resume after are no longer in the buffer."""


class BufferUnavailable(CQRSError, ConnectionError):
    """The buffer's storage stayed unreachable past the buffer's own retry deadline.

    Buffers retry transient faults themselves (with bounded backoff) and raise this only when
    the outage outlasts their deadline; a job then ends ``failed`` and followers get an
    ``error`` frame with the reason ``buffer_unavailable``.
    """


class ReplayBuffer(Protocol):
    """Storage of job frames for replay (see the module docstring).

    ``follow(job_id, after)`` yields every frame with ``id > after`` in order, then new frames
    as they are appended, and stops after a terminal frame. It raises :class:`ReplayGap` when
    frames after ``after`` were already dropped (the buffer is bounded).
    """

    async def open(self, job_id: str) -> None:
        """Start the log of a new job."""
        ...

    async def append(self, job_id: str, frame: Frame) -> None:
        """Add ``frame`` (with its id) to the job's log; a terminal frame starts the TTL."""
        ...

    async def state(self, job_id: str) -> JobState:
        """Whether the job is unknown, running, done, or expired."""
        ...

    def follow(self, job_id: str, after: int) -> AsyncGenerator[Frame, None]:
        """Replay the frames after ``after``, then follow live until a terminal frame."""
        ...

    async def aclose(self) -> None:
        """Release connections; the buffer is unusable afterwards."""
        ...


class _Log:
    __slots__ = ("done_at", "frames", "waiters")

    def __init__(self, max_frames: int) -> None:
        self.frames: collections.deque[Frame] = collections.deque(maxlen=max_frames)
        self.done_at: float | None = None
        self.waiters: list[asyncio.Future[None]] = []

    def wake(self) -> None:
        for waiter in self.waiters:
            if not waiter.done():
                waiter.set_result(None)
        self.waiters.clear()


class MemoryReplayBuffer:
    """Keeps job frames in this process (the default buffer).

    At most ``max_frames`` frames per job (older ones are dropped: resuming before them raises
    :class:`ReplayGap`); a finished job is forgotten ``ttl`` seconds after its terminal frame,
    and its id is then reported as EXPIRED for another ``ttl`` seconds.
    """

    def __init__(self, *, ttl: float = 600.0, max_frames: int = 10_000) -> None:
        if ttl <= 0 or max_frames < 1:
            raise ValueError("ttl must be > 0 and max_frames >= 1")
        self.ttl = ttl
        self.max_frames = max_frames
        self._logs: dict[str, _Log] = {}
        self._expired: dict[str, float] = {}

    async def open(self, job_id: str) -> None:
        """Start the log of ``job_id``; drops the logs whose TTL has run out."""
        self._sweep()
        self._logs[job_id] = _Log(self.max_frames)

    async def append(self, job_id: str, frame: Frame) -> None:
        """Append ``frame`` and wake the readers following the job."""
        log = self._logs.get(job_id)
        if log is None:
            raise KeyError(f"no open job {job_id!r} in this buffer")
        log.frames.append(frame)
        if frame.terminal:
            log.done_at = time.monotonic()
        log.wake()

    async def state(self, job_id: str) -> JobState:
        """The state of ``job_id`` (expired logs are swept first)."""
        self._sweep()
        log = self._logs.get(job_id)
        if log is not None:
            return JobState.RUNNING if log.done_at is None else JobState.DONE
        return JobState.EXPIRED if job_id in self._expired else JobState.UNKNOWN

    async def follow(self, job_id: str, after: int) -> AsyncGenerator[Frame, None]:
        """Replay then follow ``job_id`` (see :class:`ReplayBuffer`)."""
        log = self._logs.get(job_id)
        if log is None:
            return
        last = after
        while True:
            frames = log.frames
            if frames:
                # Ids are consecutive, so the frame after ``last`` sits at a computable index.
                first = _first_id(frames)
                if last + 1 < first:
                    raise ReplayGap(
                        f"job {job_id}: frames after id {last} are gone (the buffer keeps "
                        f"{self.max_frames} per job; the oldest kept is {first})"
                    )
                index = last + 1 - first
                if index < len(frames):
                    frame = frames[index]
                    last = frame.id if frame.id is not None else last + 1
                    yield frame
                    if frame.terminal:
                        return
                    continue
            if log.done_at is not None:
                return
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            log.waiters.append(waiter)
            await waiter

    async def aclose(self) -> None:
        """Forget every job."""
        for log in self._logs.values():
            log.wake()
        self._logs.clear()
        self._expired.clear()

    def _sweep(self) -> None:
        now = time.monotonic()
        for job_id, log in list(self._logs.items()):
            if log.done_at is not None and now - log.done_at >= self.ttl:
                del self._logs[job_id]
                self._expired[job_id] = now
        for job_id, when in list(self._expired.items()):
            if now - when >= self.ttl:
                del self._expired[job_id]


def _first_id(frames: collections.deque[Frame]) -> int:
    first = frames[0].id
    return 0 if first is None else first
