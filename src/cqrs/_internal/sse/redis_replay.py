"""A replay buffer in Redis Streams, so that several server processes can serve one job.

Layout, for a job ``J`` and the ``prefix`` ``P``:

* ``P J`` (no space): a stream with one entry per frame. The entry id is ``"{frame.id}-0"``,
  so the frame id *is* the stream id: replaying after ``n`` is ``XRANGE P J (n+1)-0 +``,
  following is ``XREAD BLOCK ... STREAMS P J n-0``, and Redis itself rejects a frame whose id
  is not greater than the last one (two writers can never interleave a job's frames). The
  entry's fields are ``event`` and ``data``.
* ``P J:state``: ``"running"`` or ``"done"``.

TTLs: while the job runs, both keys get ``running_ttl`` (default: one hour, or ``ttl`` if
longer), refreshed on every append, so a running job never expires while it produces frames,
and the keys of a job whose writer died go away eventually. The terminal frame sets the
stream's TTL to ``ttl`` and the state key's to ``2 * ttl``: between the two the state says
``done`` but the stream is gone, which :meth:`RedisReplayBuffer.state` reports as EXPIRED
(the tombstone), and afterwards the job id is UNKNOWN, as with ``MemoryReplayBuffer``.

Appending is one Lua script (check the state, ``XADD ... MAXLEN ~``, set the TTLs), so that a
frame and the state change it implies are atomic. The job's two keys must live on the same
Redis node: the buffer targets a standalone Redis (or a primary with replicas), not Cluster.
"""

from __future__ import annotations

import math
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any, cast

from cqrs._internal._optional import require
from cqrs._internal.sse.frames import Frame
from cqrs._internal.sse.replay import JobState, ReplayGap

if TYPE_CHECKING:
    import redis.asyncio

__all__ = ["RedisReplayBuffer"]

# KEYS: stream, state. ARGV: max_frames, entry id, event, data, terminal ("1"/"0"),
# running TTL ms, stream TTL ms after the end, state TTL ms after the end.
_APPEND_SCRIPT = """
local state = redis.call('GET', KEYS[2])
if state ~= 'running' then
  if state then return state end
  return 'missing'
end
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], ARGV[2], 'event', ARGV[3], 'data', ARGV[4])
if ARGV[5] == '1' then
  redis.call('SET', KEYS[2], 'done', 'PX', ARGV[8])
  redis.call('PEXPIRE', KEYS[1], ARGV[7])
else
  redis.call('PEXPIRE', KEYS[1], ARGV[6])
  redis.call('PEXPIRE', KEYS[2], ARGV[6])
end
return 'ok'
"""

_RUNNING = "running"
_DONE = "done"
_BATCH = 512


class RedisReplayBuffer:
    """Keeps job frames in Redis Streams, shared by every process that uses the same Redis
    and ``prefix`` (see the module docstring for the key layout).

    * ``client``: a ``redis.asyncio.Redis`` to use (it stays open on :meth:`aclose`); if
      ``None`` the buffer creates one from ``url`` (with a socket timeout of
      ``block_ms`` + 5 s unless the url sets one) and closes it on :meth:`aclose`. A given
      client works whether its responses are decoded or not; its ``socket_timeout`` should
      exceed ``block_ms`` (redis-py 8 defaults to 5 s), else each wait of a follower ends
      in a read timeout and a reconnect (tolerated, but wasteful).
    * ``prefix``: the start of every key; jobs of different deployments sharing one Redis
      need different prefixes.
    * ``ttl``: seconds a finished job stays readable after its terminal frame; its id is then
      reported as EXPIRED for another ``ttl`` seconds.
    * ``max_frames``: frames kept per job, trimmed with ``MAXLEN ~``: Redis drops whole
      internal nodes, so *at least* ``max_frames`` (and a few more) are kept. Resuming before
      the oldest kept frame raises :class:`ReplayGap`.
    * ``block_ms``: how long one ``XREAD BLOCK`` waits before a follower re-checks the job
      state (so a follower of an abandoned job notices it expired).

    ``running_ttl`` (attribute, seconds): the idle time after which the keys of a job that
    is still running expire (a writer that died without its terminal frame). It defaults
    to one hour, or ``ttl`` if longer, and is refreshed by every append.

    Failure modes: a Redis outage raises ``redis.exceptions.ConnectionError`` (or
    ``redis.exceptions.TimeoutError``) from the method that was called, including from the
    ``async for`` over :meth:`follow` (at the latest ``block_ms`` after the outage began);
    nothing is retried or buffered locally. Job ids must not contain ``:``.

    Raises :class:`cqrs.MissingExtraError` when the ``redis`` package is not installed.
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
    ) -> None:
        if ttl <= 0 or max_frames < 1 or block_ms < 1:
            raise ValueError("ttl must be > 0, max_frames >= 1 and block_ms >= 1")
        with require("redis", extra="redis", feature="RedisReplayBuffer"):
            import redis.asyncio as aioredis
            import redis.exceptions
        self._wait_timeout: type[Exception] = redis.exceptions.TimeoutError
        if client is None:
            # redis-py's typing is partial: the client is used through ``Any``. The socket
            # timeout (redis-py 8 defaults to 5 s) must outlast an XREAD BLOCK; a
            # ``socket_timeout`` in the url takes precedence.
            self._redis: Any = cast(Any, aioredis.Redis).from_url(
                url, socket_timeout=block_ms / 1000 + 5.0
            )
            self._owns_client = True
        else:
            self._redis = client
            self._owns_client = False
        self.prefix = prefix
        self.ttl = ttl
        self.max_frames = max_frames
        self.block_ms = block_ms
        self.running_ttl: float = max(ttl, 3600.0)
        self._append_script: Any = self._redis.register_script(_APPEND_SCRIPT)

    def _keys(self, job_id: str) -> tuple[str, str]:
        stream = f"{self.prefix}{job_id}"
        return stream, f"{stream}:state"

    async def open(self, job_id: str) -> None:
        """Start the log of ``job_id`` (RUNNING, no frames); an old log with this id is
        dropped. Raises ``ValueError`` for an id containing ``:``."""
        if not _valid(job_id):
            raise ValueError(f"a job id cannot contain ':' (got {job_id!r})")
        stream, state = self._keys(job_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(stream)
            pipe.set(state, _RUNNING, px=_ms(self.running_ttl))
            await pipe.execute()

    async def append(self, job_id: str, frame: Frame) -> None:
        """Add ``frame`` as the stream entry ``"{frame.id}-0"`` and refresh the running TTL;
        a terminal frame marks the job done and starts its ``ttl``. Followers in any process
        are woken by Redis.

        Raises ``KeyError`` if ``job_id`` was never opened or has expired, ``ValueError`` for
        a frame without a positive integer id, and ``redis.exceptions.ResponseError`` for an
        id not greater than the previous frame's. A frame appended after the terminal frame
        is ignored (every follower has stopped at the terminal frame).
        """
        if frame.id is None or frame.id < 1:
            raise ValueError(f"a stored frame needs an integer id >= 1, got {frame.id!r}")
        stream, state = self._keys(job_id)
        result = await self._append_script(
            keys=[stream, state],
            args=[
                self.max_frames,
                f"{frame.id}-0",
                frame.event,
                frame.data,
                "1" if frame.terminal else "0",
                _ms(self.running_ttl),
                _ms(self.ttl),
                _ms(2 * self.ttl),
            ],
        )
        outcome = _text(result)
        if outcome in ("ok", _DONE):
            return
        raise KeyError(f"no open job {job_id!r} in this buffer (never opened, or expired)")

    async def state(self, job_id: str) -> JobState:
        """RUNNING or DONE while the job's frames are kept; EXPIRED during ``ttl`` seconds
        after they were dropped; UNKNOWN otherwise (also for the id of a running job whose
        writer stopped appending for ``running_ttl``). Redis errors propagate."""
        if not _valid(job_id):
            return JobState.UNKNOWN
        stream, state = self._keys(job_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.get(state)
            pipe.exists(stream)
            raw_state, exists = await pipe.execute()
        value = _text(raw_state)
        if value == _RUNNING:
            return JobState.RUNNING
        if value == _DONE:
            return JobState.DONE if exists else JobState.EXPIRED
        return JobState.UNKNOWN

    async def follow(self, job_id: str, after: int) -> AsyncGenerator[Frame, None]:
        """Yield the frames with ``id > after`` (``XRANGE``), then wait for new ones with
        ``XREAD BLOCK block_ms`` in a loop, until the terminal frame.

        Works across processes: the writer may be another process. Yields nothing for an
        unknown or expired job, and stops if the job's keys disappear while waiting. Raises
        :class:`ReplayGap` when frames after ``after`` were trimmed (also when this reader
        falls more than ``max_frames`` behind the writer). Each wait is bounded: it never
        busy-loops, and it holds one pooled connection while blocked.
        """
        if not _valid(job_id):
            return
        stream, state = self._keys(job_id)
        last = after
        while True:
            # The state is read before the frames, in one transaction: if it says done, the
            # terminal frame (appended atomically with the state change) is in ``entries``.
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.get(state)
                pipe.xrange(stream, min=f"{last + 1}-0", max="+", count=_BATCH)
                raw_state, entries = await pipe.execute()
            for entry_id, fields in entries:
                frame_id = int(_text(entry_id).partition("-")[0])
                if frame_id > last + 1:
                    raise ReplayGap(
                        f"job {job_id}: frames after id {last} are gone (the buffer keeps "
                        f"about {self.max_frames} per job; the oldest kept is {frame_id})"
                    )
                frame = _frame(fields, frame_id)
                last = frame_id
                yield frame
                if frame.terminal:
                    return
            if entries:
                continue
            if _text(raw_state) != _RUNNING:
                return  # done with nothing after ``last``, expired, or unknown
            # Returns as soon as an entry after ``last`` exists (also one appended between
            # the XRANGE and now), else after block_ms; XRANGE then reads what is there.
            try:
                await self._redis.xread({stream: f"{last}-0"}, count=1, block=self.block_ms)
            except self._wait_timeout:
                # The client's socket timeout is shorter than block_ms: redis-py dropped the
                # connection; waiting is over. An actual outage fails the next round trip.
                continue

    async def aclose(self) -> None:
        """Close the Redis client if this buffer created it; a client passed in stays open.
        The jobs stay in Redis (other processes may still serve them)."""
        if self._owns_client:
            await self._redis.aclose()


def _valid(job_id: str) -> bool:
    return ":" not in job_id


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


def _text(value: Any) -> Any:
    """``bytes`` from a client without ``decode_responses`` as ``str``; others unchanged."""
    return value.decode() if isinstance(value, bytes) else value


def _frame(fields: Any, frame_id: int) -> Frame:
    decoded = {_text(key): _text(value) for key, value in fields.items()}
    return Frame(str(decoded["event"]), str(decoded["data"]), frame_id)
