"""A replay buffer in Redis Streams, so that several server processes can serve one job.

Layout, for a job ``J`` and the ``prefix`` ``P`` (job ids cannot contain ``:``):

* ``P J`` (no space): a stream with one entry per frame. The entry id is ``"{frame.id}-0"``,
  so the frame id *is* the stream id: replaying after ``n`` is ``XRANGE P J (n+1)-0 +`` and
  following is ``XREAD BLOCK ... STREAMS P J n-0``. The entry's fields are ``event`` and
  ``data``, plus ``prev`` (the id of the entry before it) where the ids jump, so that a reader
  tells frames trimmed away (it gets a ``gap`` frame) from ids that were never used.
* ``P J:state``: ``running``, then ``done`` (ended with ``complete``) or ``failed`` (ended with
  ``error``).
* ``P J:lease``: present while the process that runs the job is alive (see below).

Every change is one Lua script (check the state, ``XADD ... MAXLEN ~``, set the TTLs), so a
frame and the state change it implies are atomic. The job's keys must live on one Redis node:
the buffer targets a standalone Redis (or a primary with replicas), not Cluster.

**Appends are idempotent.** When the reply to an append is lost (the connection broke after
Redis stored the frame) the append is sent again; finding the same frame already stored under
its id, the script answers ``already``, which counts as success. A different frame under an
id that is not above the last one is a conflict (``ValueError``).

**Retries.** Every Redis call (open, append, state, follow) retries connection errors and
timeouts (``ConnectionError``, ``TimeoutError``, ``BusyLoadingError``, ``OSError``) with a
backoff of 0.05 s doubling to 1 s, with jitter, for up to ``outage_deadline`` seconds from the
first failure (a follower's clock restarts at each round trip that gets through). Past it,
:class:`BufferUnavailable` is raised, naming Redis, its URL without the password, and the
deadline. A follower that reconnects goes on after the last frame it yielded: no frame is
lost or repeated. The client the buffer creates does not retry by itself (the buffer does); a
client passed in keeps its own retry settings, under the buffer's.

**The writer's lease.** :meth:`RedisReplayBuffer.open` starts a task, owned by the buffer,
that renews ``P J:lease`` (``lease`` seconds, 15 by default) every ``lease / 3`` seconds and
keeps the job's keys from expiring, until the job's terminal frame is stored (or
:meth:`RedisReplayBuffer.aclose`). If the lease runs out while the state is still
``running`` (the process died, hung, or stayed cut off from Redis), the first reader that
notices (:meth:`~RedisReplayBuffer.state`, or a follower after one idle ``XREAD``) ends the
job: it appends ``failure_frame(Reason.WRITER_LOST, ...)`` with the next id and marks it
``failed``, with the TTLs of a finished job. A writer that comes back afterwards gets
:class:`BufferUnavailable` from its next append.

**Failure states.**

* An append that gives up (``BufferUnavailable``) makes the job end ``failed``: the buffer
  keeps trying, in the background, to store a terminal ``error`` frame with the reason
  ``buffer_unavailable`` (or the terminal frame appended next, e.g. the job engine's) with
  the next free id, as soon as Redis answers again (for up to ``running_ttl``). Later
  non-terminal appends to that job raise :class:`BufferUnavailable` at once.
* Redis lost the job's keys (restarted without persistence, eviction): the writer's next
  append raises :class:`BufferUnavailable` and the buffer stores a ``failed`` log holding only
  the terminal ``error`` frame (``buffer_unavailable``), whose id follows the last frame the
  writer had stored; a follower that was following the job and finds its keys gone yields
  such an error frame itself. A stream never just stops.

TTLs: while the job runs, its keys get ``running_ttl`` (one hour, or ``ttl`` if longer),
refreshed by every append and lease renewal. The terminal frame sets the stream's TTL to
``ttl`` and the state key's to ``2 * ttl``: between the two the state says ``done`` (or
``failed``) but the stream is gone, which :meth:`RedisReplayBuffer.state` reports as EXPIRED
(the tombstone); afterwards the job id is UNKNOWN, as with ``MemoryReplayBuffer``.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from cqrs._internal._optional import require
from cqrs._internal.backoff import Backoff
from cqrs._internal.redis_urls import client_url, without_password
from cqrs._internal.sse.frames import Frame, Reason, failure_frame, gap_frame
from cqrs._internal.sse.replay import BufferUnavailable, JobState

if TYPE_CHECKING:
    import redis.asyncio

__all__ = ["RedisReplayBuffer"]

logger = logging.getLogger("cqrs")

T = TypeVar("T")

# Lua helpers: ids are decimal strings compared as numbers of any size; arithmetic on them
# goes through string.format('%d') (exact up to 2**53, where tostring() would round).
_LUA_IDS = """
local function above(a, b)
  return #a > #b or (#a == #b and a > b)
end
local function plus(id, n)
  return string.format('%d', tonumber(id) + n)
end
local function top_id(stream)
  local top = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
  if top[1] then return string.match(top[1][1], '^(%d+)') end
  return nil
end
"""

# KEYS: stream, state, lease. ARGV: max_frames, frame id, event, data, end state ('done'/'failed',
# '' while running), running TTL ms, stream TTL ms after the end, state TTL ms after the end,
# the id of the previous frame if the caller knows it ('' if not). XADD itself refuses an id
# that is not above the last one; only then is the stored entry looked at.
# Returns {outcome[, detail]}: ok, already (this frame is stored: a retried append), done or
# failed (the job had ended: ignored), missing (no such job), conflict (id not above the
# last: detail is the last id), error (XADD failed otherwise: detail is Redis's message).
_APPEND_SCRIPT = (
    _LUA_IDS
    + """
local id = ARGV[2]
local state = redis.call('GET', KEYS[2])
if state == 'running' then
  local prev = ARGV[9]
  if prev == '' then prev = top_id(KEYS[1]) or '0' end
  local added
  if prev == plus(id, -1) then
    added = redis.pcall('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], id .. '-0',
      'event', ARGV[3], 'data', ARGV[4])
  else
    added = redis.pcall('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], id .. '-0',
      'event', ARGV[3], 'data', ARGV[4], 'prev', prev)
  end
  if type(added) ~= 'table' or not added.err then
    if ARGV[5] ~= '' then
      redis.call('SET', KEYS[2], ARGV[5], 'PX', ARGV[8])
      redis.call('PEXPIRE', KEYS[1], ARGV[7])
      redis.call('DEL', KEYS[3])
    else
      redis.call('PEXPIRE', KEYS[1], ARGV[6])
      redis.call('PEXPIRE', KEYS[2], ARGV[6])
    end
    return {'ok'}
  end
  if not string.find(added.err, 'equal or smaller', 1, true) then
    return {'error', added.err}
  end
end
local same = redis.call('XRANGE', KEYS[1], id .. '-0', id .. '-0')
if same[1] and same[1][2][2] == ARGV[3] and same[1][2][4] == ARGV[4] then
  return {'already'}
end
if state == 'running' then return {'conflict', top_id(KEYS[1]) or '0'} end
return {state or 'missing'}
"""
)

# Ends a running job with a terminal error frame whose id follows the last stored frame.
# KEYS: stream, state, lease. ARGV: mode, event, data, last id the writer stored, stream TTL
# ms, state TTL ms. Mode 'lost' (a reader): only while the lease is gone; mode 'writer' (the
# job's own writer after a failure): also recreates a log that Redis lost. Returns the state
# after the call: failed (ended now), running (lease still held), done/failed, missing.
_FINISH_SCRIPT = (
    _LUA_IDS
    + """
local state = redis.call('GET', KEYS[2])
if not state then
  if ARGV[1] ~= 'writer' then return 'missing' end
elseif state ~= 'running' then
  return state
elseif ARGV[1] == 'lost' and redis.call('EXISTS', KEYS[3]) == 1 then
  return 'running'
end
local last = ARGV[4]
local top = top_id(KEYS[1])
if top and above(top, last) then last = top end
local id = plus(last, 1)
if top then
  redis.call('XADD', KEYS[1], id .. '-0', 'event', ARGV[2], 'data', ARGV[3])
else
  redis.call('XADD', KEYS[1], id .. '-0', 'event', ARGV[2], 'data', ARGV[3], 'prev', last)
end
redis.call('SET', KEYS[2], 'failed', 'PX', ARGV[6])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('DEL', KEYS[3])
return 'failed'
"""
)

# KEYS: state, lease, stream. ARGV: lease ms, running TTL ms. Returns the state.
_RENEW_SCRIPT = """
local state = redis.call('GET', KEYS[1])
if state ~= 'running' then return state or 'missing' end
redis.call('SET', KEYS[2], '1', 'PX', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[3], ARGV[2])
return 'running'
"""

_RUNNING = "running"
_DONE = "done"
_FAILED = "failed"
_MISSING = "missing"
_BATCH = 512
_FIRST_DELAY = 0.05
_MAX_DELAY = 1.0

WRITER_LOST_MESSAGE = "The server process running the job stopped; start the job again."
LOG_LOST_MESSAGE = "The job's events were lost by the replay buffer; start the job again."
UNSTORED_MESSAGE = "The job's events could not be stored; start the job again."


class _Writer:
    """What this buffer knows of a job it opened: the last frame id Redis acknowledged, the
    task keeping the job (lease renewal, then recording its end after a failure), and the
    terminal frame still to record after an append gave up."""

    __slots__ = ("last", "lost", "own_end", "pending", "task")

    def __init__(self) -> None:
        self.last = 0
        self.task: asyncio.Task[None] | None = None
        self.pending: Frame | None = None
        self.own_end = False  # ``pending`` is a frame the job's writer appended (keep it)
        self.lost: str | None = None  # why the job was ended by someone else


class RedisReplayBuffer:
    """Keeps job frames in Redis Streams, shared by every process that uses the same Redis
    and ``prefix`` (see the module docstring for the key layout, the lease and the retries).

    * ``client``: a ``redis.asyncio.Redis`` to use (it stays open on :meth:`aclose`); if
      ``None`` the buffer creates one from ``url`` (socket timeout ``block_ms`` + 5 s and
      connect timeout 5 s unless the url sets them; no retries of its own) and closes it on
      :meth:`aclose`. A given client works whether its responses are decoded or not; its
      ``socket_timeout`` should exceed ``block_ms`` (redis-py 8 defaults to 5 s), else each
      wait of a follower ends in a read timeout and a reconnect (tolerated, but wasteful).
    * ``prefix``: the start of every key; jobs of different deployments sharing one Redis
      need different prefixes.
    * ``ttl``: seconds a finished job stays readable after its terminal frame; its id is then
      reported as EXPIRED for another ``ttl`` seconds.
    * ``max_frames``: frames kept per job, trimmed with ``MAXLEN ~``: Redis drops whole
      internal nodes, so *at least* ``max_frames`` (and a few more) are kept. A reader that
      had not read the dropped frames gets a ``gap`` frame and goes on from the oldest kept.
    * ``block_ms``: how long one ``XREAD BLOCK`` waits before a follower re-checks the job
      state and the writer's lease.
    * ``outage_deadline``: seconds a call retries an unreachable Redis before it raises
      :class:`BufferUnavailable` (at the latest one socket timeout later).
    * ``lease``: seconds after its writer's last renewal (every ``lease / 3``) at which a
      running job is declared lost (``writer_lost``). Keep it well above the pauses of a
      healthy process and above the Redis blips you want jobs to survive.

    ``url`` (attribute): where the buffer's Redis is, without the password (as error
    messages name it). ``running_ttl`` (attribute, seconds): the idle time after which the
    keys of a job that is still running expire when no reader ever noticed its writer was
    gone. It defaults to one hour, or ``ttl`` if longer, and is refreshed by every append and
    lease renewal.

    Raises :class:`cqrs.MissingExtraError` when the ``redis`` package is not installed and
    ``ValueError`` for a setting out of range.
    """

    def __init__(
        self,
        client: redis.asyncio.Redis | None = None,
        *,
        url: str = "redis://127.0.0.1:6379/0",
        prefix: str = "cqrs:jobs:",
        ttl: float = 600.0,
        max_frames: int = 10_000,
        block_ms: int = 5_000,
        outage_deadline: float = 30.0,
        lease: float = 15.0,
    ) -> None:
        if ttl <= 0 or max_frames < 1 or block_ms < 1:
            raise ValueError("ttl must be > 0, max_frames >= 1 and block_ms >= 1")
        if not outage_deadline > 0:
            raise ValueError(f"outage_deadline must be > 0 seconds, got {outage_deadline!r}")
        if not lease > 0:
            raise ValueError(f"lease must be > 0 seconds, got {lease!r}")
        with require("redis", extra="redis", feature="RedisReplayBuffer"):
            import redis.asyncio as aioredis
            import redis.asyncio.retry
            import redis.backoff
            import redis.exceptions
        self._wait_timeout: type[Exception] = redis.exceptions.TimeoutError
        self._response_error: type[Exception] = redis.exceptions.ResponseError
        self._retryable: tuple[type[BaseException], ...] = (
            redis.exceptions.ConnectionError,
            redis.exceptions.TimeoutError,
            OSError,
        )
        # Subclasses of the above that no wait will cure.
        self._fatal: tuple[type[BaseException], ...] = (
            BufferUnavailable,
            redis.exceptions.AuthenticationError,
            redis.exceptions.AuthorizationError,
        )
        if client is None:
            # redis-py's typing is partial: the client is used through ``Any``. The socket
            # timeout (redis-py 8 defaults to 5 s) must outlast an XREAD BLOCK; settings in
            # the url take precedence. The buffer retries, so the client must not.
            self._redis: Any = cast(Any, aioredis.Redis).from_url(
                url,
                socket_timeout=block_ms / 1000 + 5.0,
                socket_connect_timeout=5.0,
                retry=redis.asyncio.retry.Retry(redis.backoff.NoBackoff(), 0),
            )
            self._owns_client = True
            self.url = without_password(url)
        else:
            self._redis = client
            self._owns_client = False
            self.url = client_url(client)
        self.prefix = prefix
        self.ttl = ttl
        self.max_frames = max_frames
        self.block_ms = block_ms
        self.outage_deadline = outage_deadline
        self.lease = lease
        self.running_ttl: float = max(ttl, 3600.0)
        self._append_script: Any = self._redis.register_script(_APPEND_SCRIPT)
        self._finish_script: Any = self._redis.register_script(_FINISH_SCRIPT)
        self._renew_script: Any = self._redis.register_script(_RENEW_SCRIPT)
        self._writers: dict[str, _Writer] = {}

    # --- keys and retries ------------------------------------------------------------------

    def _keys(self, job_id: str) -> tuple[str, str, str]:
        stream = f"{self.prefix}{job_id}"
        return stream, f"{stream}:state", f"{stream}:lease"

    async def _retry(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """``await call()``, retried on connection errors until ``outage_deadline``."""
        outage = _Outage(self.url, self.outage_deadline)
        while True:
            try:
                return await call()
            except self._retryable as exc:
                if isinstance(exc, self._fatal):
                    raise
                await outage.wait(exc, what)

    def _retryable_error(self, exc: BaseException) -> bool:
        return isinstance(exc, self._retryable) and not isinstance(exc, self._fatal)

    async def _finish(self, job_id: str, mode: str, frame: Frame, last: int) -> str:
        stream, state, lease = self._keys(job_id)
        result = await self._finish_script(
            keys=[stream, state, lease],
            args=[mode, frame.event, frame.data, last, _ms(self.ttl), _ms(2 * self.ttl)],
        )
        return str(_text(result))

    # --- writing ---------------------------------------------------------------------------

    async def open(self, job_id: str) -> None:
        """Start the log of ``job_id`` (RUNNING, no frames) and this process's lease on it;
        an old log with this id is dropped. Raises ``ValueError`` for an id containing
        ``:`` and :class:`BufferUnavailable` when Redis stays unreachable."""
        if not _valid(job_id):
            raise ValueError(f"a job id cannot contain ':' (got {job_id!r})")
        stream, state, lease = self._keys(job_id)

        async def reset() -> None:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(stream)
                pipe.set(state, _RUNNING, px=_ms(self.running_ttl))
                pipe.set(lease, "1", px=_ms(self.lease))
                await pipe.execute()

        await self._retry(f"opening job {job_id}", reset)
        await self._stop_writer(job_id)
        writer = _Writer()
        self._writers[job_id] = writer
        writer.task = asyncio.get_running_loop().create_task(
            self._renew_lease(job_id, writer), name=f"cqrs redis lease {job_id}"
        )

    async def append(self, job_id: str, frame: Frame) -> None:
        """Add ``frame`` as the stream entry ``"{frame.id}-0"`` and refresh the running TTL;
        a terminal frame marks the job done (``complete``) or failed (``error``), starts its
        ``ttl`` and stops this process's lease on it. Followers in any process are woken by
        Redis. Storing the same frame again (a retry) is a no-op.

        Raises ``KeyError`` if ``job_id`` was never opened or has expired, ``ValueError`` for
        a frame without a positive integer id or one whose id is not above the previous
        frame's (and that is not that frame), and :class:`BufferUnavailable` when Redis stays
        unreachable past ``outage_deadline``, when Redis lost the job's log, or when the job
        was declared lost while this process could not renew its lease (the job then ends
        ``failed``, see the module docstring). A frame appended after the terminal frame is
        ignored (every follower has stopped at the terminal frame).
        """
        if frame.id is None or frame.id < 1:
            raise ValueError(f"a stored frame needs an integer id >= 1, got {frame.id!r}")
        writer = self._writers.get(job_id)
        if writer is not None:
            if writer.lost is not None:
                del self._writers[job_id]
                raise BufferUnavailable(writer.lost)
            if writer.pending is not None:  # an earlier append gave up: the job has failed
                if frame.terminal:
                    if not writer.own_end:
                        writer.pending, writer.own_end = frame, True
                    return
                raise BufferUnavailable(
                    f"job {job_id} already failed: an earlier frame could not be stored in "
                    f"Redis at {self.url}"
                )
        keys = self._keys(job_id)
        end = (_FAILED if frame.event == "error" else _DONE) if frame.terminal else ""
        args = [
            self.max_frames,
            frame.id,
            frame.event,
            frame.data,
            end,
            _ms(self.running_ttl),
            _ms(self.ttl),
            _ms(2 * self.ttl),
            "" if writer is None else writer.last,
        ]
        try:
            result = await self._retry(
                f"storing frame {frame.id} of job {job_id}",
                lambda: self._append_script(keys=keys, args=args),
            )
        except BufferUnavailable:
            if writer is not None:
                self._give_up(job_id, writer, frame if frame.terminal else None, UNSTORED_MESSAGE)
            raise
        outcome = str(_text(result[0]))
        if outcome in ("ok", "already"):
            if writer is not None:
                writer.last = max(writer.last, frame.id)
                if frame.terminal:
                    await self._stop_writer(job_id)
            return
        if outcome in (_DONE, _FAILED):
            if writer is None:
                return  # after the end: ignored
            await self._stop_writer(job_id)
            raise BufferUnavailable(self._lost_message(job_id))
        if outcome == _MISSING:
            if writer is None:
                raise KeyError(f"no open job {job_id!r} in this buffer (never opened, or expired)")
            message = (
                f"Redis at {self.url} lost the frames of job {job_id} (its keys are gone: "
                "Redis restarted without persistence, or evicted or deleted them)"
            )
            self._give_up(job_id, writer, frame if frame.terminal else None, LOG_LOST_MESSAGE)
            raise BufferUnavailable(message)
        if outcome == "error":
            raise self._response_error(
                f"storing frame {frame.id} of job {job_id} failed: {_text(result[1])}"
            )
        raise ValueError(
            f"job {job_id}: frame {frame.id} is not after the last stored frame "
            f"({_text(result[1])}) and differs from the frame stored under its id; frame ids "
            "must increase"
        )

    def _lost_message(self, job_id: str) -> str:
        return (
            f"job {job_id} was ended by another reader of Redis at {self.url} as writer_lost: "
            f"this process did not renew its lease (lease={self.lease:g} s) in time"
        )

    def _give_up(self, job_id: str, writer: _Writer, terminal: Frame | None, message: str) -> None:
        """The job failed for this process: stop renewing, record its end in the background
        (``terminal``, else an error frame with the reason ``buffer_unavailable`` and
        ``message`` for clients)."""
        if writer.pending is not None:
            return
        if terminal is not None:
            writer.pending, writer.own_end = terminal, True
        else:
            writer.pending = failure_frame(Reason.BUFFER_UNAVAILABLE, message, None)
        logger.debug("Redis replay buffer: job %s failed; recording its end", job_id)
        renewing = writer.task
        if renewing is not None and renewing is not asyncio.current_task():
            renewing.cancel()
        writer.task = asyncio.get_running_loop().create_task(
            self._record_end(job_id, writer), name=f"cqrs redis end {job_id}"
        )

    async def _stop_writer(self, job_id: str) -> None:
        writer = self._writers.pop(job_id, None)
        if writer is None or writer.task is None:
            return
        task = writer.task
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def _renew_lease(self, job_id: str, writer: _Writer) -> None:
        """Renew the lease every ``lease / 3`` seconds until the job ends here or elsewhere."""
        stream, state, lease = self._keys(job_id)
        backoff = Backoff(_FIRST_DELAY, _MAX_DELAY)
        delay = self.lease / 3
        while True:
            await asyncio.sleep(delay)
            try:
                outcome = str(
                    _text(
                        await self._renew_script(
                            keys=[state, lease, stream],
                            args=[_ms(self.lease), _ms(self.running_ttl)],
                        )
                    )
                )
            except Exception as exc:
                self._log_background_failure("renewing the lease of", job_id, exc)
                delay = min(backoff.next(), self.lease / 3)
                continue
            backoff.reset()
            delay = self.lease / 3
            if outcome == _RUNNING:
                continue
            if outcome == _MISSING:
                self._give_up(job_id, writer, None, LOG_LOST_MESSAGE)
            else:
                writer.lost = self._lost_message(job_id)
            return

    def _log_background_failure(self, what: str, job_id: str, exc: Exception) -> None:
        """Connection errors are expected during an outage; anything else is worth a
        warning (the background tasks retry every error: a lease must not die of one)."""
        if self._retryable_error(exc):
            logger.debug("Redis replay buffer: %s job %s failed (%r)", what, job_id, exc)
        else:
            logger.warning(
                "Redis replay buffer: %s job %s in Redis at %s failed; retrying",
                what,
                job_id,
                self.url,
                exc_info=exc,
            )

    async def _record_end(self, job_id: str, writer: _Writer) -> None:
        """Store ``writer.pending`` as the job's terminal frame (next free id) once Redis
        answers, retrying for up to ``running_ttl``; then forget the writer."""
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + self.running_ttl
        backoff = Backoff(_FIRST_DELAY, _MAX_DELAY)
        try:
            while True:
                frame = writer.pending
                assert frame is not None
                try:
                    outcome = await self._finish(job_id, "writer", frame, writer.last)
                except Exception as exc:
                    self._log_background_failure("storing the end of", job_id, exc)
                    if loop.time() >= give_up_at:
                        logger.warning(
                            "Redis replay buffer: the end of job %s could not be stored in "
                            "Redis at %s within %g s; readers will see writer_lost",
                            job_id,
                            self.url,
                            self.running_ttl,
                        )
                        return
                    await asyncio.sleep(backoff.next())
                    continue
                logger.info("Redis replay buffer: job %s ended %s", job_id, outcome)
                return
        finally:
            if self._writers.get(job_id) is writer:
                del self._writers[job_id]

    # --- reading ---------------------------------------------------------------------------

    async def state(self, job_id: str) -> JobState:
        """RUNNING while the writer holds its lease; DONE or FAILED (by the terminal frame)
        while the job's frames are kept; EXPIRED during ``ttl`` seconds after they were
        dropped; UNKNOWN otherwise. A running job whose lease ran out is ended as
        ``writer_lost`` here and reported FAILED. Raises :class:`BufferUnavailable` when
        Redis stays unreachable past ``outage_deadline``."""
        if not _valid(job_id):
            return JobState.UNKNOWN
        stream, state, lease = self._keys(job_id)

        async def read() -> list[Any]:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.get(state)
                pipe.exists(stream)
                pipe.exists(lease)
                result: list[Any] = await pipe.execute()
                return result

        raw_state, exists, leased = await self._retry(f"reading the state of job {job_id}", read)
        value = _text(raw_state)
        if value == _RUNNING:
            if leased:
                return JobState.RUNNING
            value = await self._retry(
                f"ending job {job_id} (writer lost)",
                lambda: self._finish(job_id, "lost", _writer_lost(), 0),
            )
            if value == _RUNNING:
                return JobState.RUNNING
            exists = True
        if value == _DONE:
            return JobState.DONE if exists else JobState.EXPIRED
        if value == _FAILED:
            return JobState.FAILED if exists else JobState.EXPIRED
        return JobState.UNKNOWN

    async def follow(self, job_id: str, after: int) -> AsyncGenerator[Frame, None]:
        """Yield the frames with ``id > after`` (``XRANGE``), then wait for new ones with
        ``XREAD BLOCK block_ms`` in a loop, until the terminal frame.

        Works across processes: the writer may be another process. Yields nothing for an
        unknown or expired job; for a finished job and ``after`` at or past its terminal
        frame, the terminal frame again. Where frames it had not read were trimmed (a reader
        more than ``max_frames`` behind), a ``gap`` frame, then the frames kept. A running
        job whose writer's lease ran out is ended here (``writer_lost`` error frame); a job
        whose keys vanish while followed (Redis lost them) ends with an ``error`` frame with
        the reason ``buffer_unavailable``. On connection errors it reconnects with backoff
        and goes on after the last frame it yielded; past ``outage_deadline`` without a
        successful round trip it raises :class:`BufferUnavailable`. Each wait is bounded: it
        never busy-loops, and it holds one pooled connection while blocked.
        """
        if not _valid(job_id):
            return
        stream, state, lease = self._keys(job_id)
        last = after
        seen = False  # the job existed during this follow
        outage = _Outage(self.url, self.outage_deadline)
        what = f"following job {job_id}"

        async def poll() -> list[Any]:
            # The state is read with the frames, in one transaction: if it says done, the
            # terminal frame (appended atomically with the state change) is in the entries.
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.get(state)
                pipe.exists(lease)
                pipe.xrange(stream, min=f"{last + 1}-0", max="+", count=_BATCH)
                result: list[Any] = await pipe.execute()
                return result

        while True:
            again = False  # ``entries`` is the last entry, for a resume at or past the end
            try:
                raw_state, leased, entries = await poll()
                value = _text(raw_state)
                if not entries and value in (_DONE, _FAILED):
                    entries = await self._redis.xrevrange(stream, count=1)
                    again = True
            except Exception as exc:
                if not self._retryable_error(exc):
                    raise
                await outage.wait(exc, what)
                continue
            outage.reset()
            seen = seen or value is not None
            if again:
                if entries:
                    frame_id, frame, _ = _entry(*entries[0])
                    if frame.terminal:
                        yield frame
                return  # finished; an empty stream has expired
            for entry_id, fields in entries:
                frame_id, frame, prev = _entry(entry_id, fields)
                if prev > last:
                    yield gap_frame(frame_id)
                last = frame_id
                yield frame
                if frame.terminal:
                    return
            if entries:
                continue
            if value is None:
                if seen:  # the job's keys vanished while it was followed: Redis lost them
                    yield failure_frame(Reason.BUFFER_UNAVAILABLE, LOG_LOST_MESSAGE, last + 1)
                return  # unknown or expired
            try:
                if not leased:
                    await self._finish(job_id, "lost", _writer_lost(), 0)
                    continue
                # Returns as soon as an entry after ``last`` exists (also one appended
                # between the XRANGE and now), else after block_ms; XRANGE then reads it.
                await self._redis.xread({stream: f"{last}-0"}, count=1, block=self.block_ms)
            except self._wait_timeout:
                # The client's socket timeout is shorter than block_ms: redis-py dropped the
                # connection; waiting is over. An actual outage fails the next round trip.
                continue
            except Exception as exc:
                if not self._retryable_error(exc):
                    raise
                await outage.wait(exc, what)

    async def aclose(self) -> None:
        """Stop the lease tasks (a job still running here is then declared lost by its
        readers once its lease runs out), then close the Redis client if this buffer
        created it; a client passed in stays open. The jobs stay in Redis (other processes
        may still serve them)."""
        for job_id in list(self._writers):
            await self._stop_writer(job_id)
        if self._owns_client:
            await self._redis.aclose()


class _Outage:
    """The retries of one operation: when its failures began, and its backoff."""

    __slots__ = ("backoff", "deadline", "since", "url")

    def __init__(self, url: str, deadline: float) -> None:
        self.url = url
        self.deadline = deadline
        self.since: float | None = None
        self.backoff = Backoff(_FIRST_DELAY, _MAX_DELAY)

    def reset(self) -> None:
        self.since = None
        self.backoff.reset()

    async def wait(self, exc: BaseException, what: str) -> None:
        """Sleep before the next attempt; raise :class:`BufferUnavailable` past the deadline."""
        now = asyncio.get_running_loop().time()
        if self.since is None:
            self.since = now
        left = self.since + self.deadline - now
        if left <= 0:
            raise BufferUnavailable(
                f"Redis at {self.url} stayed unreachable for {self.deadline:g} s "
                f"(RedisReplayBuffer outage_deadline) while {what}; last error: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        logger.debug("Redis replay buffer: %s failed (%r); retrying", what, exc)
        await asyncio.sleep(min(self.backoff.next(), left))


def _writer_lost() -> Frame:
    return failure_frame(Reason.WRITER_LOST, WRITER_LOST_MESSAGE, None)


def _valid(job_id: str) -> bool:
    return ":" not in job_id


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


def _text(value: Any) -> Any:
    """``bytes`` from a client without ``decode_responses`` as ``str``; others unchanged."""
    return value.decode() if isinstance(value, bytes) else value


def _entry(entry_id: Any, fields: Any) -> tuple[int, Frame, int]:
    """The frame id and frame of a stream entry, and the id of the entry stored before it."""
    frame_id = int(_text(entry_id).partition("-")[0])
    decoded = {_text(key): _text(value) for key, value in fields.items()}
    prev = decoded.get("prev")
    return (
        frame_id,
        Frame(str(decoded["event"]), str(decoded["data"]), frame_id),
        frame_id - 1 if prev is None else int(prev),
    )
