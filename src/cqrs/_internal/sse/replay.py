"""Replay buffers: where a job's SSE frames are kept so a reconnecting client can resume.

A buffer stores the frames of each job in id order, lets any number of readers replay the
frames after a given id and then follow new ones live, and forgets a job ``ttl`` seconds after
its last (terminal) frame. :class:`MemoryReplayBuffer` is the default (one server process);
``cqrs.integrations.redis_replay.RedisReplayBuffer`` shares jobs between processes.

What a reader of :meth:`ReplayBuffer.follow` gets, for a job and the id ``after`` it last saw:

* every kept frame with an id greater than ``after``, in order, then the new ones live, up to
  and including the terminal frame (``complete`` or ``error``), and nothing after it;
* a ``gap`` frame (:func:`~cqrs._internal.sse.frames.gap_frame`) where frames it had not read
  yet were dropped (the buffer is bounded), followed by the frames still kept: a reader never
  fails for being slow. The gap frame's id is one less than the first frame kept, so ids only
  grow and a reconnect with that ``Last-Event-ID`` resumes at the first frame kept. A client
  that must not miss items treats the gap frame as "re-read the state from its source" (the
  frame's JSON holds ``first_id``);
* for a finished job and ``after`` at or past its terminal frame's id: the terminal frame
  again (so a browser's ``EventSource`` sees a definite end instead of an empty response it
  would reconnect to forever); for a running job and ``after`` past its last frame: nothing
  until frames with larger ids come (or the terminal frame, which ends the stream whatever
  its id).

Earlier versions raised :class:`ReplayGap` from ``follow``; buffers now yield the gap frame.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import enum
import time
from collections.abc import AsyncGenerator
from typing import Protocol

from cqrs._internal.errors import CQRSError
from cqrs._internal.sse.frames import Frame, gap_frame

__all__ = ["BufferUnavailable", "JobState", "MemoryReplayBuffer", "ReplayBuffer", "ReplayGap"]


class JobState(enum.StrEnum):
    """What a buffer knows about a job id.

    * ``UNKNOWN``: never opened here, or forgotten long ago (HTTP 404).
    * ``RUNNING``: opened, no terminal frame yet.
    * ``DONE``: ended with a ``complete`` frame; still replayable.
    * ``FAILED``: ended with an ``error`` frame (handler failure, cancellation, shutdown,
      buffer failure); still replayable, the replay ends with that error frame.
    * ``EXPIRED``: finished and its frames were dropped (TTL or memory limit; HTTP 410).
    """

    UNKNOWN = "unknown"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    EXPIRED = "expired"


class ReplayGap(CQRSError, LookupError):
    """The frames a client asked to resume after are no longer in the buffer.

    Kept for buffers written against the earlier contract, which raised it from ``follow``:
    :class:`~cqrs._internal.sse.jobs.StreamJobs` turns it into a ``gap`` frame and goes on
    from ``first_id`` when the buffer gives it, else into a terminal ``error`` frame with the
    reason ``gap``. Buffers of this library yield a ``gap`` frame instead of raising.
    """

    def __init__(self, message: str, *, first_id: int | None = None) -> None:
        super().__init__(message)
        self.first_id = first_id
        """The id of the oldest frame still kept, if the buffer knows it."""


class BufferUnavailable(CQRSError, ConnectionError):
    """The buffer's storage stayed unreachable past the buffer's own retry deadline.

    Buffers retry transient faults themselves (with bounded backoff) and raise this only when
    the outage outlasts their deadline; a job then ends ``failed`` and followers get an
    ``error`` frame with the reason ``buffer_unavailable``.
    """


class ReplayBuffer(Protocol):
    """Storage of job frames for replay (see the module docstring for what readers get).

    ``follow(job_id, after)`` yields every frame with ``id > after`` in order, a ``gap`` frame
    where frames it had not read were dropped, then new frames as they are appended, and stops
    after a terminal frame. For a finished job and ``after`` at or past the terminal frame's
    id it yields the terminal frame again. It yields nothing for an unknown or expired job.
    """

    async def open(self, job_id: str) -> None:
        """Start the log of a new job."""
        ...

    async def append(self, job_id: str, frame: Frame) -> None:
        """Add ``frame`` (with its id) to the job's log; a terminal frame starts the TTL."""
        ...

    async def state(self, job_id: str) -> JobState:
        """Whether the job is unknown, running, done, failed, or expired."""
        ...

    def follow(self, job_id: str, after: int) -> AsyncGenerator[Frame, None]:
        """Replay the frames after ``after``, then follow live until a terminal frame."""
        ...

    async def aclose(self) -> None:
        """Release connections; the buffer is unusable afterwards."""
        ...


FRAME_OVERHEAD = 128
"""Bytes counted per kept frame on top of its ``event`` and ``data`` characters: the frame
tuple, the string headers and the list slot (measured on CPython 3.11, 64-bit, ASCII data;
a non-ASCII string takes 2 or 4 bytes per character, which the estimate does not count)."""

LOG_OVERHEAD = 640
"""Bytes counted per kept job on top of its frames: its log object, id and index entries
(measured as :data:`FRAME_OVERHEAD`)."""


_DROPPED = Frame("dropped", "", 0)


class _Log:
    """The frames of one job: ``frames[head:]`` are kept; ``dropped`` frames came before."""

    __slots__ = (
        "bytes",
        "closed",
        "done_at",
        "dropped",
        "frames",
        "head",
        "last_dropped_id",
        "terminal",
        "waiters",
    )

    def __init__(self) -> None:
        self.frames: list[Frame] = []
        self.head = 0
        self.dropped = 0
        self.last_dropped_id = 0
        self.bytes = LOG_OVERHEAD
        self.terminal: Frame | None = None
        self.done_at = 0.0
        self.closed = False
        self.waiters: set[asyncio.Future[None]] = set()

    @property
    def kept(self) -> int:
        return len(self.frames) - self.head

    def last_id(self) -> int:
        if self.kept:
            frame_id = self.frames[-1].id
            return 0 if frame_id is None else frame_id
        return self.last_dropped_id

    def drop_oldest(self) -> int:
        """Drop the oldest kept frame; return its size."""
        frame = self.frames[self.head]
        self.frames[self.head] = _DROPPED  # frees the frame now; the slot goes at compaction
        self.head += 1
        self.dropped += 1
        self.last_dropped_id = frame.id or 0
        size = _size(frame)
        self.bytes -= size
        # Compact once the dead prefix is as long as the live part: amortised O(1).
        if self.head >= 64 and self.head * 2 >= len(self.frames):
            del self.frames[: self.head]
            self.head = 0
        return size

    def wake(self) -> None:
        for waiter in self.waiters:
            if not waiter.done():
                waiter.set_result(None)
        self.waiters.clear()


class MemoryReplayBuffer:
    """Keeps job frames in this process (the default buffer).

    Limits (each bounds memory on its own; the defaults suit a server with a few GiB):

    * ``max_frames`` (10 000): frames kept per job; older ones are dropped, and a reader that
      had not read them gets a ``gap`` frame and goes on from the oldest kept frame.
    * ``ttl`` (600 s): a finished job is forgotten ``ttl`` seconds after its terminal frame.
    * ``max_total_frames`` (1 000 000) and ``max_bytes`` (256 MiB): the frames kept across
      all jobs. ``max_bytes`` counts each frame's ``event`` and ``data`` characters plus
      :data:`FRAME_OVERHEAD`, and :data:`LOG_OVERHEAD` per job: an estimate of the memory
      held, not an exact figure. Past either limit the finished jobs are evicted oldest
      first, as if their TTL had run out. When running jobs alone hold more than the limit,
      each append to a running job drops that job's own oldest frames (its slow readers get
      a ``gap`` frame) until the total is back under the limit or the job keeps only its
      newest frame: the total then stays within the limit plus one frame per running job,
      and a job that finishes then is evicted at once (its live readers still get every
      frame to the end; a later request gets 410). ``StreamJobs(max_running=...)`` bounds
      the running jobs; with the defaults, about 100 000 finished jobs of 10 small frames
      fit (``benchmarks/jobs_scale.py`` measures about 2.5 KB per such job).
    * ``max_tombstones`` (100 000): after a job is forgotten its id answers EXPIRED (HTTP
      410) for another ``ttl`` seconds, then UNKNOWN; at most this many such ids are kept
      (the oldest go first).

    Every operation costs O(1) plus O(number of jobs it expires): expiry pops jobs from a
    queue ordered by deadline, never sweeps all jobs. Frame ids must be integers that grow
    (gaps between them are allowed); a frame appended after the terminal frame is ignored.
    Readers that are replaying a job when it is forgotten finish their replay.
    """

    def __init__(
        self,
        *,
        ttl: float = 600.0,
        max_frames: int = 10_000,
        max_total_frames: int = 1_000_000,
        max_bytes: int = 256 * 1024 * 1024,
        max_tombstones: int = 100_000,
    ) -> None:
        problems = [
            f"{name} must be {rule}, got {value!r}"
            for name, value, ok, rule in (
                ("ttl", ttl, ttl > 0, "> 0 seconds"),
                ("max_frames", max_frames, max_frames >= 1, ">= 1"),
                ("max_total_frames", max_total_frames, max_total_frames >= 1, ">= 1"),
                ("max_bytes", max_bytes, max_bytes >= 1, ">= 1"),
                ("max_tombstones", max_tombstones, max_tombstones >= 0, ">= 0"),
            )
            if not ok
        ]
        if problems:
            raise ValueError("; ".join(problems))
        self.ttl = ttl
        self.max_frames = max_frames
        self.max_total_frames = max_total_frames
        self.max_bytes = max_bytes
        self.max_tombstones = max_tombstones
        self._logs: dict[str, _Log] = {}
        # Finished jobs in the order they finished (= the order of their deadlines).
        self._finished: collections.OrderedDict[str, _Log] = collections.OrderedDict()
        # Forgotten job ids -> when they were forgotten, oldest first.
        self._expired: collections.OrderedDict[str, float] = collections.OrderedDict()
        self._frames = 0
        self._bytes = 0

    @property
    def kept_frames(self) -> int:
        """Frames kept across all jobs."""
        return self._frames

    @property
    def kept_bytes(self) -> int:
        """The estimated bytes kept across all jobs (see ``max_bytes``)."""
        return self._bytes

    @property
    def kept_jobs(self) -> int:
        """Jobs whose frames are kept (running and finished)."""
        return len(self._logs)

    @property
    def tombstones(self) -> int:
        """Forgotten job ids still reported as EXPIRED."""
        return len(self._expired)

    async def open(self, job_id: str) -> None:
        """Start the log of ``job_id``; a log with the same id is dropped (its readers stop).

        Expires the jobs whose TTL has run out, and evicts finished jobs if the new log's
        overhead takes the total past ``max_bytes``.
        """
        self._expire(time.monotonic())
        old = self._logs.pop(job_id, None)
        if old is not None:
            self._forget(job_id, old)
            old.closed = True
            old.wake()
        self._expired.pop(job_id, None)
        log = _Log()
        self._logs[job_id] = log
        self._bytes += log.bytes
        if self._bytes > self.max_bytes:
            self._evict(None)

    async def append(self, job_id: str, frame: Frame) -> None:
        """Append ``frame`` and wake the readers following the job.

        Raises ``KeyError`` for a job that is not open (never opened, or forgotten) and
        ``ValueError`` for a frame whose id is not an integer greater than the previous one.
        A frame appended after the terminal frame is ignored.
        """
        log = self._logs.get(job_id)
        if log is None:
            raise KeyError(f"no open job {job_id!r} in this buffer (never opened, or expired)")
        if log.terminal is not None:
            return
        if frame.id is None or frame.id <= log.last_id():
            raise ValueError(
                f"job {job_id}: a stored frame needs an integer id greater than the previous "
                f"one ({log.last_id()}), got {frame.id!r}"
            )
        size = _size(frame)
        log.frames.append(frame)
        log.bytes += size
        self._frames += 1
        self._bytes += size
        if log.kept > self.max_frames:
            self._frames -= 1
            self._bytes -= log.drop_oldest()
        if frame.terminal:
            log.terminal = frame
            log.done_at = now = time.monotonic()
            self._finished[job_id] = log
            self._expire(now)
        if self._frames > self.max_total_frames or self._bytes > self.max_bytes:
            self._evict(log)
        log.wake()

    async def state(self, job_id: str) -> JobState:
        """The state of ``job_id``: RUNNING, DONE (``complete`` frame last), FAILED (``error``
        frame last), EXPIRED (forgotten less than ``ttl`` ago) or UNKNOWN."""
        self._expire(time.monotonic())
        log = self._logs.get(job_id)
        if log is not None:
            if log.terminal is None:
                return JobState.RUNNING
            return JobState.FAILED if log.terminal.event == "error" else JobState.DONE
        return JobState.EXPIRED if job_id in self._expired else JobState.UNKNOWN

    async def follow(self, job_id: str, after: int) -> AsyncGenerator[Frame, None]:
        """Replay then follow ``job_id`` (see the module docstring): the frames after
        ``after``, a ``gap`` frame where unread frames were dropped, the terminal frame last.
        Yields nothing for a job that is not kept; stops when the job's log is dropped by
        :meth:`open` of the same id or :meth:`aclose`."""
        log = self._logs.get(job_id)
        if log is None:
            return
        last = after
        # ``index``: the absolute position (counting dropped frames) of the next frame to read.
        position = bisect.bisect_right(
            log.frames, after, lo=log.head, key=lambda frame: frame.id or 0
        )
        index = log.dropped + position - log.head
        if position == log.head and after < log.last_dropped_id:
            index -= 1  # frames after ``after`` were dropped: the loop sends the gap frame
        while not log.closed:
            if index < log.dropped:
                index = log.dropped
                if log.last_dropped_id > last:
                    first = log.frames[log.head].id or 0
                    last = first - 1
                    yield gap_frame(first)
                    continue
            position = index - log.dropped + log.head
            if position < len(log.frames):
                frame = log.frames[position]
                index += 1
                frame_id = frame.id or 0
                if frame_id <= last and not frame.terminal:
                    continue  # a running job resumed past its end: wait for larger ids
                last = max(last, frame_id)
                yield frame
                if frame.terminal:
                    return
                continue
            if log.terminal is not None:
                yield log.terminal  # resumed at or past the end of a finished job
                return
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            log.waiters.add(waiter)
            try:
                await waiter
            finally:
                log.waiters.discard(waiter)  # the reader may be closed or cancelled here

    async def aclose(self) -> None:
        """Forget every job; readers that are waiting for frames stop."""
        for log in self._logs.values():
            log.closed = True
            log.wake()
        self._logs.clear()
        self._finished.clear()
        self._expired.clear()
        self._frames = 0
        self._bytes = 0

    def _forget(self, job_id: str, log: _Log) -> None:
        """Take the kept ``log`` out of the totals and the finished queue."""
        self._finished.pop(job_id, None)
        self._frames -= log.kept
        self._bytes -= log.bytes

    def _tombstone(self, job_id: str, now: float) -> None:
        self._expired[job_id] = now
        self._expired.move_to_end(job_id)
        while len(self._expired) > self.max_tombstones:
            self._expired.popitem(last=False)

    def _expire(self, now: float) -> None:
        """Forget the finished jobs whose TTL ran out, and the tombstones older than ``ttl``.

        Both queues are in deadline order, so this stops at the first entry still kept.
        """
        deadline = now - self.ttl
        finished = self._finished
        while finished:
            job_id, log = next(iter(finished.items()))
            if log.done_at > deadline:
                break
            del self._logs[job_id]
            self._forget(job_id, log)
            self._tombstone(job_id, now)
        expired = self._expired
        while expired:
            job_id, when = next(iter(expired.items()))
            if when > deadline:
                break
            del expired[job_id]

    def _evict(self, appending: _Log | None) -> None:
        """Bring the totals under the limits: evict finished jobs oldest first, then trim
        the ``appending`` job's own oldest frames (keeping its newest)."""
        now = time.monotonic()
        while self._over() and self._finished:
            job_id, log = self._finished.popitem(last=False)
            del self._logs[job_id]
            self._forget(job_id, log)
            self._tombstone(job_id, now)
        if appending is None or appending.terminal is not None:
            return
        while self._over() and appending.kept > 1:
            self._frames -= 1
            self._bytes -= appending.drop_oldest()

    def _over(self) -> bool:
        return self._frames > self.max_total_frames or self._bytes > self.max_bytes


def _size(frame: Frame) -> int:
    return len(frame.event) + len(frame.data) + FRAME_OVERHEAD
