"""RedisReplayBuffer against a real Redis on 127.0.0.1:6379, plus a conformance check that
every replay buffer (MemoryReplayBuffer included) must pass.

Every Redis test uses its own key prefix and deletes its keys afterwards. Tests that need
Redis are skipped when nothing listens on 127.0.0.1:6379.

Nothing here sleeps "long enough": a test waits for the event itself (a frame read, a
follower waiting in ``XREAD``, a held handler) through ``tests.support.wait_until``, and time
only bounds things from below (a TTL never runs out early), which a loaded machine cannot
break.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

import di
import httpx
import pytest
import redis
import redis.asyncio
import redis.exceptions

import cqrs
from cqrs._internal.errors import MissingExtraError
from cqrs._internal.sse.frames import gap_frame
from cqrs._internal.sse.jobs import MAX_EVENT_ID
from cqrs.integrations.fastapi import (
    BufferUnavailable,
    Frame,
    JobState,
    MemoryReplayBuffer,
    ReplayBuffer,
    StreamJobs,
)
from cqrs.integrations.redis_replay import RedisReplayBuffer
from cqrs.requests import bootstrap
from tests.support import LONG_TEST_TIMEOUT, PATIENCE, settle, wait_until, wait_until_async

pytestmark = [pytest.mark.redis, pytest.mark.timeout(LONG_TEST_TIMEOUT)]

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
REDIS_URL = f"redis://{REDIS_HOST}:{REDIS_PORT}/0"
ROOT = Path(__file__).resolve().parents[2]


def _redis_reachable() -> bool:
    try:
        with socket.create_connection((REDIS_HOST, REDIS_PORT), timeout=0.5):
            return True
    except OSError:
        return False


REDIS_UP = _redis_reachable()
NEEDS_REDIS = f"no Redis server reachable on {REDIS_HOST}:{REDIS_PORT}"


@pytest.fixture
def redis_up() -> None:
    """Skip the test when no Redis server listens on 127.0.0.1:6379."""
    if not REDIS_UP:
        pytest.skip(NEEDS_REDIS)


@pytest.fixture
async def client(redis_up: None) -> AsyncIterator[redis.asyncio.Redis]:
    """A client of the test Redis (bytes responses)."""
    connection = redis.asyncio.Redis.from_url(REDIS_URL)
    yield connection
    await connection.aclose()


@pytest.fixture
async def prefix(client: redis.asyncio.Redis) -> AsyncIterator[str]:
    """A key prefix of this test alone; its keys are deleted afterwards."""
    unique = f"cqrs:test:{uuid.uuid4().hex}:"
    yield unique
    await _delete_keys(client, unique)


async def _delete_keys(client: redis.asyncio.Redis, prefix: str) -> None:
    keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
    if keys:
        await client.delete(*keys)


class CountingRedis(redis.asyncio.Redis):
    """A client that notes when each ``XREAD`` is sent, so a test can wait until a follower
    waits (and count its waits) instead of sleeping."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.xreads: list[float] = []

    @classmethod
    def connect(cls, **kwargs: Any) -> CountingRedis:
        """A client of the test Redis (``kwargs`` as for ``Redis.from_url``)."""
        client = cls.from_url(REDIS_URL, **kwargs)
        assert isinstance(client, cls)
        return client

    async def xread(self, *args: Any, **kwargs: Any) -> Any:
        self.xreads.append(time.monotonic())
        return await super().xread(*args, **kwargs)


async def read_into(frames: AsyncIterator[Frame], seen: list[Frame]) -> None:
    """Append each frame of ``frames`` to ``seen`` as it comes."""
    async for frame in frames:
        seen.append(frame)


# --- the conformance check ---------------------------------------------------------------


class MakeBuffer(Protocol):
    def __call__(self, *, ttl: float = 600.0, max_frames: int = 10_000) -> ReplayBuffer: ...


def item(n: int) -> Frame:
    return Frame("progress", json.dumps({"n": n}), n)


def complete(n: int) -> Frame:
    return Frame("complete", json.dumps({"type": "complete", "items": n - 1}), n)


def error(n: int) -> Frame:
    return Frame("error", json.dumps({"type": "error", "reason": "handler_failed"}), n)


def reason(frame: Frame) -> str | None:
    """The ``reason`` of an ``error`` or ``gap`` frame's JSON."""
    return json.loads(frame.data).get("reason")


async def collect(frames: AsyncIterator[Frame]) -> list[Frame]:
    async def run() -> list[Frame]:
        return [frame async for frame in frames]

    return await asyncio.wait_for(run(), PATIENCE)


async def check_states(make_buffer: MakeBuffer) -> None:
    """UNKNOWN -> RUNNING (not expiring while running) -> DONE -> EXPIRED -> UNKNOWN.

    The states after the end are observed by polling. Time bounds them only from below (no
    state before its ttl ran out), which a loaded machine cannot break: it observes later,
    never earlier. A state may go unobserved only when the polls left a gap longer than its
    window (the ttl), which only a stalled machine does.
    """
    ttl = 0.5
    buffer = make_buffer(ttl=ttl)
    assert await buffer.state("job-a") is JobState.UNKNOWN
    await buffer.open("job-a")
    assert await buffer.state("job-a") is JobState.RUNNING
    await buffer.append("job-a", item(1))
    await asyncio.sleep(ttl * 1.5)  # at least this long: a running job must not expire
    assert await buffer.state("job-a") is JobState.RUNNING
    done_from = time.monotonic()  # the job is done at this moment or later
    await buffer.append("job-a", complete(2))

    observed: list[tuple[float, JobState]] = []  # (when the state was read, the state)
    replays: dict[JobState, tuple[float, list[Frame]]] = {}  # the first replay in each state

    async def forgotten() -> bool:
        state = await buffer.state("job-a")
        observed.append((time.monotonic(), state))
        if state not in replays:
            frames = await collect(buffer.follow("job-a", 0))
            replays[state] = (time.monotonic(), frames)
        return state is JobState.UNKNOWN

    await wait_until_async(forgotten, "job-a to go from DONE through EXPIRED to UNKNOWN")

    order = [JobState.DONE, JobState.EXPIRED, JobState.UNKNOWN]
    states = [state for _, state in observed]
    assert set(states) <= set(order), states
    assert states == sorted(states, key=order.index), f"a state came back: {states}"
    for read_at, state in observed:
        if state is JobState.EXPIRED:
            assert read_at >= done_from + ttl, "expired before its ttl ran out"
        if state is JobState.UNKNOWN:
            assert read_at >= done_from + 2 * ttl, "forgotten before twice its ttl ran out"
    reads = [done_from, *(read_at for read_at, _ in observed)]
    if max(later - earlier for earlier, later in itertools.pairwise(reads)) < ttl:
        assert list(dict.fromkeys(states)) == order, states
    if JobState.DONE in replays:
        replayed_at, frames = replays[JobState.DONE]
        full = [item(1), complete(2)]
        assert frames == full or (frames == [] and replayed_at >= done_from + ttl), frames
    if JobState.EXPIRED in replays:
        assert replays[JobState.EXPIRED][1] == []
    assert await buffer.state("job-b") is JobState.UNKNOWN


async def check_replay_after(make_buffer: MakeBuffer) -> None:
    """Frames after N are replayed in order, from a running and from a finished job."""
    buffer = make_buffer()
    await buffer.open("job")
    for n in range(1, 6):
        await buffer.append("job", item(n))
    reader = asyncio.ensure_future(collect(buffer.follow("job", 2)))
    await buffer.append("job", complete(6))
    assert await reader == [item(3), item(4), item(5), complete(6)]
    assert await collect(buffer.follow("job", 3)) == [item(4), item(5), complete(6)]
    assert await collect(buffer.follow("job", 0)) == [*map(item, range(1, 6)), complete(6)]
    assert await collect(buffer.follow("job", 5)) == [complete(6)]
    # At or past the end of a finished job: the terminal frame again, never an empty stream.
    assert await collect(buffer.follow("job", 6)) == [complete(6)]
    assert await collect(buffer.follow("job", 100)) == [complete(6)]
    # Past the last frame of a running job: nothing until the terminal frame, whatever its id.
    await buffer.open("other")
    await buffer.append("other", item(1))
    waiting = asyncio.ensure_future(collect(buffer.follow("other", 10)))
    await buffer.append("other", item(2))
    await buffer.append("other", complete(3))
    assert await waiting == [complete(3)]


async def check_failed_state(make_buffer: MakeBuffer) -> None:
    """A job whose terminal frame is an ``error`` is FAILED; its replay ends with that frame."""
    buffer = make_buffer()
    await buffer.open("job")
    await buffer.append("job", item(1))
    assert await buffer.state("job") is JobState.RUNNING
    await buffer.append("job", error(2))
    assert await buffer.state("job") is JobState.FAILED
    assert await collect(buffer.follow("job", 0)) == [item(1), error(2)]
    assert await collect(buffer.follow("job", 2)) == [error(2)]


async def check_follow_live(make_buffer: MakeBuffer) -> None:
    """A reader started before any frame gets each frame as it comes, then stops."""
    buffer = make_buffer()
    await buffer.open("job")
    seen: list[Frame] = []
    reader = asyncio.ensure_future(read_into(buffer.follow("job", 0), seen))
    await settle()  # the reader starts, finds nothing and waits: all before the first frame
    assert seen == []
    for n in range(1, 4):
        await buffer.append("job", item(n))
        await wait_until_async(lambda n=n: len(seen) == n, f"the reader to get frame {n}")
        assert not reader.done()
    await buffer.append("job", complete(4))
    await asyncio.wait_for(reader, PATIENCE)
    assert seen == [item(1), item(2), item(3), complete(4)]


async def check_concurrent_readers(make_buffer: MakeBuffer) -> None:
    """Several readers of one job, started before and during the job, each get every frame
    after their id, live (each frame reaches every reader before the next one is written)."""
    buffer = make_buffer()
    await buffer.open("job")
    readers: list[tuple[int, list[Frame], asyncio.Future[None]]] = []

    def follow(after: int) -> None:
        seen: list[Frame] = []
        readers.append(
            (after, seen, asyncio.ensure_future(read_into(buffer.follow("job", after), seen)))
        )

    for after in (0, 0, 1):
        follow(after)
    for n in range(1, 6):
        await buffer.append("job", item(n))
        if n == 3:
            follow(2)
        await wait_until_async(
            lambda n=n: all(len(seen) == max(0, n - after) for after, seen, _ in readers),
            f"every reader to get frame {n}",
        )
    await buffer.append("job", complete(6))
    await asyncio.wait_for(asyncio.gather(*(task for _, _, task in readers)), PATIENCE)
    everything = [*map(item, range(1, 6)), complete(6)]
    assert [seen for _, seen, _ in readers] == [
        everything, everything, everything[1:], everything[2:],
    ]  # fmt: skip


def split_gap(frames: list[Frame]) -> tuple[Frame, int, list[Frame]]:
    """``[gap, first, ...]`` -> (the gap frame, the first kept id, the frames from it)."""
    assert len(frames) >= 2, frames
    first = frames[1].id
    assert first is not None, frames
    return frames[0], first, frames[1:]


async def check_replay_gap(make_buffer: MakeBuffer) -> None:
    """Resuming before the oldest kept frame gives a ``gap`` frame, then every frame kept;
    the last max_frames are kept.

    (Redis trims with ``MAXLEN ~``, which keeps at least max_frames: 500 frames are enough
    for the first ones to be dropped with Redis's default of 100 entries per stream node.)
    """
    buffer = make_buffer(max_frames=5)
    await buffer.open("job")
    for n in range(1, 501):
        await buffer.append("job", item(n))
    await buffer.append("job", complete(501))
    gap, first, kept = split_gap(await collect(buffer.follow("job", 0)))
    assert 1 < first <= 497
    assert gap == gap_frame(first)
    assert reason(gap) == "gap"
    assert kept == [*map(item, range(first, 501)), complete(501)]
    assert await collect(buffer.follow("job", 496)) == [*map(item, range(497, 501)), complete(501)]


async def check_falling_behind(make_buffer: MakeBuffer) -> None:
    """A live reader that falls more than max_frames behind gets a ``gap`` frame where its
    unread frames were dropped and goes on to the end: a slow reader never fails."""
    buffer = make_buffer(max_frames=5)
    await buffer.open("job")
    await buffer.append("job", item(1))
    reader = buffer.follow("job", 0)
    try:
        assert await anext(reader) == item(1)
        for n in range(2, 1000):  # the reader holds still while the writer moves on
            await buffer.append("job", item(n))
        await buffer.append("job", complete(1000))
        gap, first, kept = split_gap(await collect(reader))
    finally:
        await reader.aclose()
    assert 2 < first <= 996
    assert gap == gap_frame(first)
    assert kept == [*map(item, range(first, 1000)), complete(1000)]


async def check_unknown_job(make_buffer: MakeBuffer) -> None:
    """Following an unknown job yields nothing at once; appending to it raises KeyError."""
    buffer = make_buffer()
    assert await collect(buffer.follow("never-opened", 0)) == []
    assert await buffer.state("never-opened") is JobState.UNKNOWN
    with pytest.raises(KeyError):
        await buffer.append("never-opened", item(1))


CHECKS: dict[str, Callable[[MakeBuffer], Awaitable[None]]] = {
    "states": check_states,
    "replay_after": check_replay_after,
    "failed_state": check_failed_state,
    "follow_live": check_follow_live,
    "concurrent_readers": check_concurrent_readers,
    "replay_gap": check_replay_gap,
    "falling_behind": check_falling_behind,
    "unknown_job": check_unknown_job,
}


async def check_replay_buffer(make_buffer: MakeBuffer, only: Iterable[str] | None = None) -> None:
    """Run the behavioural checks every ReplayBuffer must pass (all, or the ``only`` ones).

    ``make_buffer(ttl=..., max_frames=...)`` returns a fresh, empty buffer; the caller closes
    the buffers it made.
    """
    for name in only if only is not None else CHECKS:
        await CHECKS[name](make_buffer)


@pytest.fixture(params=["memory", "redis"])
async def make_buffer(request: pytest.FixtureRequest) -> AsyncIterator[MakeBuffer]:
    made: list[ReplayBuffer] = []
    if request.param == "memory":

        def make(*, ttl: float = 600.0, max_frames: int = 10_000) -> ReplayBuffer:
            made.append(MemoryReplayBuffer(ttl=ttl, max_frames=max_frames))
            return made[-1]

        yield make
        for buffer in made:
            await buffer.aclose()
        return

    if not REDIS_UP:
        pytest.skip(NEEDS_REDIS)
    unique = f"cqrs:test:{uuid.uuid4().hex}:"

    def make_redis(*, ttl: float = 600.0, max_frames: int = 10_000) -> ReplayBuffer:
        buffer = RedisReplayBuffer(
            url=REDIS_URL, prefix=unique, ttl=ttl, max_frames=max_frames, block_ms=500
        )
        made.append(buffer)
        return buffer

    yield make_redis
    for buffer in made:
        await buffer.aclose()
    cleaner = redis.asyncio.Redis.from_url(REDIS_URL)
    try:
        await _delete_keys(cleaner, unique)
    finally:
        await cleaner.aclose()


@pytest.mark.parametrize("check", list(CHECKS))
async def test_conformance(make_buffer: MakeBuffer, check: str) -> None:
    await check_replay_buffer(make_buffer, [check])


# --- Redis specifics ---------------------------------------------------------------------


async def test_entry_ids_are_frame_ids(client: redis.asyncio.Redis, prefix: str) -> None:
    buffer = RedisReplayBuffer(client, prefix=prefix)
    await buffer.open("job")
    assert await client.get(f"{prefix}job:state") == b"running"
    for n in range(1, 3):
        await buffer.append("job", item(n))
    await buffer.append("job", complete(3))
    entries: Any = await client.xrange(f"{prefix}job")
    assert [entry_id for entry_id, _ in entries] == [b"1-0", b"2-0", b"3-0"]
    assert entries[0][1] == {b"event": b"progress", b"data": b'{"n": 1}'}
    assert await client.get(f"{prefix}job:state") == b"done"


async def test_ttls_while_running_and_after_the_end(
    client: redis.asyncio.Redis, prefix: str
) -> None:
    buffer = RedisReplayBuffer(client, prefix=prefix, ttl=30)
    stream, state = f"{prefix}job", f"{prefix}job:state"
    await buffer.open("job")
    assert await client.pttl(state) > 3_000_000  # running: one hour
    await buffer.append("job", item(1))
    assert await client.pttl(stream) > 3_000_000
    assert await client.pttl(state) > 3_000_000
    before = time.monotonic()
    await buffer.append("job", complete(2))
    stream_ttl, state_ttl = await client.pttl(stream), await client.pttl(state)
    since = (time.monotonic() - before) * 1000 + 2  # ms the TTLs may have run down, rounding
    assert 30_000 - since <= stream_ttl <= 30_000
    assert 60_000 - since <= state_ttl <= 60_000
    # Expire the frames by hand: the state key is the tombstone.
    await client.delete(stream)
    assert await buffer.state("job") is JobState.EXPIRED


async def test_gap_boundary_is_the_oldest_kept_entry(
    client: redis.asyncio.Redis, prefix: str
) -> None:
    buffer = RedisReplayBuffer(client, prefix=prefix, max_frames=10)
    await buffer.open("job")
    for n in range(1, 400):
        await buffer.append("job", item(n))
    await buffer.append("job", complete(400))
    first: Any = await client.xrange(f"{prefix}job", count=1)
    [(oldest_id, _)] = first
    oldest = int(oldest_id.split(b"-")[0])
    assert 1 < oldest <= 391  # MAXLEN ~ dropped whole nodes and kept at least 10 frames
    kept = await collect(buffer.follow("job", oldest - 1))
    assert [frame.id for frame in kept] == list(range(oldest, 401))  # no gap frame
    assert await collect(buffer.follow("job", oldest - 2)) == [gap_frame(oldest), *kept]


async def test_id_jumps_are_not_gaps(client: redis.asyncio.Redis, prefix: str) -> None:
    """Ids may skip numbers: only frames that were stored and trimmed make a gap frame."""
    buffer = RedisReplayBuffer(client, prefix=prefix)
    await buffer.open("job")
    for n in (3, 7, 8, 20):
        await buffer.append("job", item(n))
    await buffer.append("job", complete(30))
    everything = [item(3), item(7), item(8), item(20), complete(30)]
    assert await collect(buffer.follow("job", 0)) == everything
    assert await collect(buffer.follow("job", 5)) == everything[1:]
    assert await collect(buffer.follow("job", 12)) == everything[3:]
    # A writer that did not open the job (no local record of the last id) works the same.
    other = RedisReplayBuffer(client, prefix=prefix)
    await buffer.open("shared")
    for n in (2, 5, 6):
        await other.append("shared", item(n))
    await other.append("shared", complete(9))
    assert await collect(buffer.follow("shared", 0)) == [item(2), item(5), item(6), complete(9)]
    assert await collect(buffer.follow("shared", 3)) == [item(5), item(6), complete(9)]


async def test_follow_across_buffer_instances(prefix: str) -> None:
    """Writer and reader share nothing but Redis and the prefix (as two processes would)."""
    reader_client = CountingRedis.connect()
    writer = RedisReplayBuffer(url=REDIS_URL, prefix=prefix)
    reader = RedisReplayBuffer(reader_client, prefix=prefix, block_ms=200)
    try:
        await writer.open("job")
        assert await reader.state("job") is JobState.RUNNING
        seen: list[Frame] = []
        task = asyncio.ensure_future(read_into(reader.follow("job", 0), seen))
        await wait_until_async(
            lambda: len(reader_client.xreads) >= 2,
            "the reader to wait in XREAD a second time (it loops while the job is silent)",
        )
        for n in range(1, 4):
            await writer.append("job", item(n))
            await wait_until_async(lambda n=n: len(seen) == n, f"the reader to get frame {n}")
        await writer.append("job", complete(4))
        await asyncio.wait_for(task, PATIENCE)
        assert seen == [item(1), item(2), item(3), complete(4)]
        assert await reader.state("job") is JobState.DONE
    finally:
        await writer.aclose()
        await reader_client.aclose()


async def test_follow_waits_without_busy_looping(prefix: str) -> None:
    counting = CountingRedis.connect()
    block = 0.2
    buffer = RedisReplayBuffer(counting, prefix=prefix, block_ms=int(block * 1000))
    try:
        await buffer.open("job")
        await buffer.append("job", item(1))
        reader = asyncio.ensure_future(collect(buffer.follow("job", 1)))
        await wait_until_async(
            lambda: len(counting.xreads) >= 4, "the follower to wait in XREAD four times"
        )
        assert not reader.done()
        # Each XREAD BLOCK holds for block_ms (or longer on a busy machine, never shorter); a
        # follower that busy-looped would make these four calls within milliseconds.
        first, fourth = counting.xreads[0], counting.xreads[3]
        assert fourth - first >= 3 * block / 2, counting.xreads
        await buffer.append("job", complete(2))
        assert await reader == [complete(2)]
    finally:
        await counting.aclose()


async def test_keys_lost_while_running_end_the_job_with_an_error_frame(
    client: redis.asyncio.Redis, prefix: str
) -> None:
    """Redis loses a running job's keys (a restart without persistence, an eviction): its
    follower ends with an error frame, the writer's next append raises BufferUnavailable,
    and the buffer stores a failed log that readers coming later get an error frame from."""
    tasks_before = len(asyncio.all_tasks())
    counting = CountingRedis.connect()
    buffer = RedisReplayBuffer(counting, prefix=prefix, block_ms=100)
    try:
        await buffer.open("job")
        await buffer.append("job", item(1))
        seen: list[Frame] = []
        reader = asyncio.ensure_future(read_into(buffer.follow("job", 0), seen))
        await wait_until_async(
            lambda: seen == [item(1)] and counting.xreads,
            "the follower to read frame 1 and wait in XREAD for more",
        )
        await client.delete(f"{prefix}job", f"{prefix}job:state", f"{prefix}job:lease")
        await asyncio.wait_for(reader, PATIENCE)
        assert [(frame.event, frame.id) for frame in seen] == [("progress", 1), ("error", 2)]
        assert reason(seen[-1]) == "buffer_unavailable"

        with pytest.raises(BufferUnavailable, match="lost the frames of job job"):
            await buffer.append("job", item(2))
        with pytest.raises(BufferUnavailable, match="already failed"):
            await buffer.append("job", item(3))

        async def failed() -> bool:
            return await buffer.state("job") is JobState.FAILED

        await wait_until_async(failed, "the buffer to store the failed log of job")
        later = await collect(buffer.follow("job", 0))
        assert [(frame.event, frame.id) for frame in later] == [("gap", 1), ("error", 2)]
        assert reason(later[-1]) == "buffer_unavailable"
        assert await collect(buffer.follow("job", 1)) == later[1:]
        assert len(asyncio.all_tasks()) == tasks_before  # the lease task and the recorder ended
    finally:
        await buffer.aclose()
        await counting.aclose()


async def test_decoded_responses_client(prefix: str) -> None:
    decoded = redis.asyncio.Redis.from_url(REDIS_URL, decode_responses=True)
    buffer = RedisReplayBuffer(decoded, prefix=prefix)
    try:
        await buffer.open("job")
        await buffer.append("job", item(1))
        assert await buffer.state("job") is JobState.RUNNING
        await buffer.append("job", complete(2))
        assert await collect(buffer.follow("job", 0)) == [item(1), complete(2)]
        assert await buffer.state("job") is JobState.DONE
    finally:
        await decoded.aclose()


async def test_append_rules(client: redis.asyncio.Redis, prefix: str) -> None:
    buffer = RedisReplayBuffer(client, prefix=prefix)
    await buffer.open("job")
    with pytest.raises(ValueError, match="integer id"):
        await buffer.append("job", Frame("progress", "{}"))
    await buffer.append("job", item(1))
    with pytest.raises(ValueError, match="ids must increase"):
        await buffer.append("job", Frame("progress", '{"n": "not 1"}', 1))
    await buffer.append("job", item(3))
    with pytest.raises(ValueError, match=r"not after the last stored frame \(3\)"):
        await buffer.append("job", item(2))  # below the last id, never stored
    await buffer.append("job", complete(4))
    await buffer.append("job", Frame("error", "{}", 5))  # after the end: ignored
    await buffer.append("job", Frame("error", "{}", 4))  # after the end: ignored
    assert await collect(buffer.follow("job", 0)) == [item(1), item(3), complete(4)]
    assert await buffer.state("job") is JobState.DONE


async def test_a_retried_append_is_stored_once(client: redis.asyncio.Redis, prefix: str) -> None:
    """Sending an append again (its reply was lost) finds the frame stored: success, no copy."""
    buffer = RedisReplayBuffer(client, prefix=prefix)
    await buffer.open("job")
    for n in (1, 2, 2, 1, 3, 3):  # each frame again right away, and an older one again
        await buffer.append("job", item(n))
    await buffer.append("job", complete(4))
    await buffer.append("job", complete(4))  # the terminal frame too, after the job ended
    entries: Any = await client.xrange(f"{prefix}job")
    assert [entry_id for entry_id, _ in entries] == [b"1-0", b"2-0", b"3-0", b"4-0"]
    assert await collect(buffer.follow("job", 0)) == [item(1), item(2), item(3), complete(4)]
    assert await buffer.state("job") is JobState.DONE


async def test_ids_up_to_max_event_id(client: redis.asyncio.Redis, prefix: str) -> None:
    """The largest ids a client may send (2**53 - 1) work everywhere: stored, replayed, waited
    on with XREAD, resumed past, and as the id the Lua script computes for a writer_lost."""
    top = MAX_EVENT_ID
    writer = RedisReplayBuffer(client, prefix=prefix, lease=0.5, block_ms=200)
    reader = RedisReplayBuffer(client, prefix=prefix, block_ms=200)
    await writer.open("job")
    waiting = asyncio.ensure_future(collect(reader.follow("job", top)))
    await writer.append("job", item(top - 2))
    await writer.append("job", item(top - 1))
    assert await reader.state("job") is JobState.RUNNING
    await writer.aclose()  # stops renewing the lease, as a writer that died would

    async def failed() -> bool:
        return await reader.state("job") is JobState.FAILED

    await wait_until_async(failed, "the job to be declared lost once its 0.5 s lease ran out")
    replay = await collect(reader.follow("job", 0))
    assert [frame.id for frame in replay] == [top - 2, top - 1, top]
    assert replay[:2] == [item(top - 2), item(top - 1)]
    assert reason(replay[-1]) == "writer_lost"
    assert await collect(reader.follow("job", top)) == replay[-1:]
    assert await collect(reader.follow("job", top - 1)) == replay[-1:]
    assert await waiting == replay[-1:]
    entries: Any = await client.xrange(f"{prefix}job")
    assert [entry_id for entry_id, _ in entries] == [
        f"{n}-0".encode() for n in range(top - 2, top + 1)
    ]
    await reader.aclose()


async def test_lease_is_renewed_while_a_quiet_job_runs_and_dropped_at_its_end(
    client: redis.asyncio.Redis, prefix: str
) -> None:
    tasks_before = len(asyncio.all_tasks())
    buffer = RedisReplayBuffer(client, prefix=prefix, lease=3.0)
    lease_key = f"{prefix}job:lease"
    await buffer.open("job")
    assert 0 < await client.pttl(lease_key) <= 3000
    renewals: list[int] = []
    seen = [await client.pttl(lease_key)]

    async def renewed_three_times() -> bool:
        pttl = await client.pttl(lease_key)
        if pttl > seen[-1]:
            renewals.append(pttl)
        seen.append(pttl)
        return len(renewals) >= 3

    await wait_until_async(renewed_three_times, "the writer to renew its lease three times")
    assert min(seen) > 0  # it never ran out
    assert await buffer.state("job") is JobState.RUNNING
    assert len(asyncio.all_tasks()) == tasks_before + 1  # the lease task of the open job
    await buffer.append("job", complete(1))
    assert await client.exists(lease_key) == 0
    assert len(asyncio.all_tasks()) == tasks_before
    await buffer.aclose()


async def test_job_ids_with_a_colon_are_refused(client: redis.asyncio.Redis, prefix: str) -> None:
    buffer = RedisReplayBuffer(client, prefix=prefix)
    await buffer.open("job")
    with pytest.raises(ValueError, match="':'"):
        await buffer.open("job:x")
    # A client-supplied id that names another job's state key is simply unknown.
    assert await buffer.state("job:state") is JobState.UNKNOWN
    assert await collect(buffer.follow("job:state", 0)) == []


async def test_reopening_a_job_id_starts_a_new_log(
    client: redis.asyncio.Redis, prefix: str
) -> None:
    buffer = RedisReplayBuffer(client, prefix=prefix)
    await buffer.open("job")
    await buffer.append("job", item(1))
    await buffer.append("job", complete(2))
    await buffer.open("job")
    assert await buffer.state("job") is JobState.RUNNING
    await buffer.append("job", complete(1))
    assert await collect(buffer.follow("job", 0)) == [complete(1)]


async def _connections_named(client: redis.asyncio.Redis, name: str) -> int:
    return sum(1 for entry in await client.client_list() if entry.get("name") == name)


async def test_aclose_closes_only_a_client_it_created(
    client: redis.asyncio.Redis, prefix: str
) -> None:
    given = RedisReplayBuffer(client, prefix=prefix)
    await given.aclose()
    assert await client.ping()
    name = f"cqrs-test-{uuid.uuid4().hex}"
    owned = RedisReplayBuffer(url=f"{REDIS_URL}?client_name={name}", prefix=prefix)
    await owned.state("job")
    assert await _connections_named(client, name) == 1
    await owned.aclose()

    async def closed() -> bool:
        return await _connections_named(client, name) == 0

    await wait_until_async(closed, f"the buffer's own connection ({name}) to close")


async def test_created_client_outlasts_a_blocking_read(prefix: str) -> None:
    buffer = RedisReplayBuffer(url=REDIS_URL, prefix=prefix, block_ms=7_000)
    try:
        inner: Any = buffer._redis  # redis-py >= 6 would time out reads after 5 s
        assert inner.connection_pool.connection_kwargs["socket_timeout"] == 12.0
    finally:
        await buffer.aclose()


async def test_short_socket_timeout_of_a_given_client_is_tolerated(prefix: str) -> None:
    impatient = CountingRedis.connect(socket_timeout=0.2)
    buffer = RedisReplayBuffer(impatient, prefix=prefix, block_ms=1_000)
    try:
        await buffer.open("job")
        reader = asyncio.ensure_future(collect(buffer.follow("job", 0)))
        # Each XREAD BLOCK 1 s is cut by the 0.2 s socket timeout; the follower waits again.
        await wait_until_async(
            lambda: len(impatient.xreads) >= 3,
            "the follower to wait in XREAD again after two socket timeouts",
        )
        assert not reader.done()
        await buffer.append("job", complete(1))
        assert await reader == [complete(1)]
    finally:
        await impatient.aclose()


async def test_redis_outage_raises_buffer_unavailable_after_the_deadline() -> None:
    """Every call retries for outage_deadline, then raises BufferUnavailable naming Redis,
    its url without the password, and the deadline."""
    deadline = 0.3
    buffer = RedisReplayBuffer(  # nothing listens on port 1
        url="redis://cqrs:s3cret@127.0.0.1:1/0?password=s3cret", outage_deadline=deadline
    )
    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "state": lambda: buffer.state("job"),
        "open": lambda: buffer.open("job"),
        "append": lambda: buffer.append("job", item(1)),
        "follow": lambda: collect(buffer.follow("job", 0)),
    }
    try:
        for name, call in calls.items():
            started = time.monotonic()
            with pytest.raises(BufferUnavailable) as caught:
                await call()
            assert time.monotonic() - started >= deadline, f"{name} gave up before the deadline"
            message = str(caught.value)
            assert "Redis at redis://cqrs@127.0.0.1:1/0 stayed unreachable for 0.3 s" in message
            assert "s3cret" not in message
            assert isinstance(caught.value.__cause__, redis.exceptions.ConnectionError)
    finally:
        await buffer.aclose()


def test_missing_redis_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    with pytest.raises(MissingExtraError, match=r"cqrs-kit\[redis\]"):
        RedisReplayBuffer()


def test_bad_settings_are_refused() -> None:
    for settings in (
        {"ttl": 0},
        {"max_frames": 0},
        {"block_ms": 0},
        {"outage_deadline": 0},
        {"lease": -1},
    ):
        with pytest.raises(ValueError, match="must be"):
            RedisReplayBuffer(**settings)  # type: ignore[arg-type]


# --- StreamJobs across instances ---------------------------------------------------------


class Count(cqrs.Request):
    n: int
    hold_at: int | None = None


class Counted(cqrs.Response):
    i: int


class CountHandler(cqrs.StreamingRequestHandler[Count, Counted]):
    """Counts its runs; with ``hold_at=i`` it stops before item ``i`` until ``release`` is set."""

    runs = 0
    release: asyncio.Event | None = None

    def clear_events(self) -> None:
        pass

    async def handle(self, request: Count) -> AsyncIterator[Counted]:
        CountHandler.runs += 1
        for i in range(request.n):
            if request.hold_at == i and CountHandler.release is not None:
                await CountHandler.release.wait()
            yield Counted(i=i)


def _count_mediator() -> cqrs.StreamingRequestMediator:
    def commands(mapper: cqrs.RequestMap) -> None:
        mapper.bind(Count, CountHandler)

    return bootstrap.bootstrap_streaming(di_container=di.Container(), commands_mapper=commands)


async def test_stream_jobs_resume_from_a_second_instance(prefix: str) -> None:
    CountHandler.runs = 0
    release = CountHandler.release = asyncio.Event()
    async with (
        StreamJobs(_count_mediator(), buffer=RedisReplayBuffer(prefix=prefix)) as first,
        StreamJobs(_count_mediator(), buffer=RedisReplayBuffer(prefix=prefix)) as second,
    ):
        job_id = await first.start(Count(n=6, hold_at=3))  # frames 1-3 (items 0-2), then held
        resumed: list[Frame] = []
        reader = asyncio.ensure_future(read_into(await second.frames(job_id, after=2), resumed))
        await wait_until_async(
            lambda: len(resumed) == 1, "the second instance to replay frame 3 of the held job"
        )
        assert await second.state(job_id) is JobState.RUNNING  # held: it cannot have ended
        assert second.running == 0
        release.set()
        await asyncio.wait_for(reader, PATIENCE)
        assert [frame.id for frame in resumed] == [3, 4, 5, 6, 7]
        assert [frame.event for frame in resumed] == ["progress"] * 4 + ["complete"]
        assert [json.loads(frame.data)["i"] for frame in resumed[:-1]] == [2, 3, 4, 5]
        assert json.loads(resumed[-1].data) == {"type": "complete", "items": 6}
        assert await second.state(job_id) is JobState.DONE
        replay = await collect(await second.frames(job_id, after=0))
        assert [frame.event for frame in replay] == ["start"] + ["progress"] * 6 + ["complete"]
    assert CountHandler.runs == 1


# --- two uvicorn processes ---------------------------------------------------------------


@contextlib.contextmanager
def uvicorn_process(
    env: dict[str, str], log: Path
) -> Generator[tuple[str, subprocess.Popen[bytes]]]:
    """A uvicorn process serving ``redis_jobs_app`` on an inherited loopback socket."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)  # connections queue up until uvicorn accepts them: no port race
    port = listener.getsockname()[1]
    fd = listener.fileno()
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "tests.integration.redis_jobs_app:app",
             "--fd", str(fd), "--app-dir", str(ROOT), "--log-level", "warning"],
            pass_fds=[fd], cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
    listener.close()
    try:
        yield f"http://127.0.0.1:{port}", process
    finally:
        process.terminate()
        try:
            process.wait(PATIENCE)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(PATIENCE)


def wait_ready(http: httpx.Client, base: str, process: subprocess.Popen[bytes], log: Path) -> int:
    """Wait until the uvicorn process at ``base`` answers ``GET /health``; return its pid."""

    def health() -> int:
        if process.poll() is not None:
            raise AssertionError(
                f"uvicorn at {base} exited with code {process.returncode}:\n{log.read_text()}"
            )
        # The listening socket exists from the start: this request waits in its backlog
        # until uvicorn accepts it.
        return int(http.get(f"{base}/health", timeout=10.0).json()["pid"])

    return wait_until(
        health,
        f"uvicorn serving redis_jobs_app at {base} to answer GET /health",
        retry_on=(httpx.HTTPError,),
        details=lambda: f"its log so far:\n{log.read_text()}",
    )


def follower_waits(store: redis.Redis, client_name: str) -> bool:
    """True while a connection named ``client_name`` is blocked in ``XREAD``."""
    return any(
        entry.get("name") == client_name and entry.get("cmd") == "xread" and "b" in entry["flags"]
        for entry in store.client_list()
    )


def sse_events(lines: Iterable[str]) -> Iterator[dict[str, str]]:
    """Parse ``text/event-stream`` lines into {field: value} events (comments skipped)."""
    event: dict[str, str] = {}
    for line in lines:
        if not line:
            if event:
                yield event
            event = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            event[name] = value.removeprefix(" ")
    if event:
        yield event


def test_two_uvicorn_processes_serve_one_job(redis_up: None, tmp_path: Path) -> None:
    """Process A runs the job; process B, joining while A holds the job at item 2, follows it
    live from Redis to the end; every item ran once, in A."""
    unique = f"cqrs:test:{uuid.uuid4().hex}:"
    names = f"cqrs-test-{uuid.uuid4().hex}-"  # the replay buffer's connections: {names}{pid}
    env = {**os.environ, "CQRS_REDIS_JOBS_PREFIX": unique, "CQRS_REDIS_JOBS_CLIENT_NAME": names}
    store = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    n, hold_at = 8, 2
    try:
        with (
            uvicorn_process(env, tmp_path / "a.log") as (base_a, process_a),
            uvicorn_process(env, tmp_path / "b.log") as (base_b, process_b),
            httpx.Client(timeout=PATIENCE) as http,
        ):
            pid_a = wait_ready(http, base_a, process_a, tmp_path / "a.log")
            pid_b = wait_ready(http, base_b, process_b, tmp_path / "b.log")
            assert pid_a != pid_b

            started = http.post(f"{base_a}/jobs/count", json={"n": n, "hold_at": hold_at})
            assert started.status_code == 202, started.text
            job_id = started.json()["job_id"]
            stream_key = f"{unique}{job_id}"
            wait_until(
                lambda: store.xlen(stream_key) == hold_at,
                f"process A to store frames 1-{hold_at} of job {job_id} and hold",
            )
            assert store.get(f"{stream_key}:state") == "running"  # held: B joins a live job

            events: list[dict[str, str]] = []
            with http.stream(
                "GET", f"{base_b}/jobs/{job_id}/events", headers={"Last-Event-ID": str(hold_at)}
            ) as response:
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/event-stream")
                wait_until(
                    lambda: follower_waits(store, f"{names}{pid_b}"),
                    f"process B to follow job {job_id}, waiting in XREAD for frame {hold_at + 1}",
                )
                store.rpush(f"{unique}release", "go")
                for event in sse_events(response.iter_lines()):
                    events.append(event)
                    if event.get("event") == "complete":
                        break

            assert [int(event["id"]) for event in events] == list(range(hold_at + 1, n + 2))
            assert [event["event"] for event in events] == ["progress"] * (n - hold_at) + [
                "complete"
            ]
            items = [json.loads(event["data"]) for event in events[:-1]]
            assert items == [{"i": i} for i in range(hold_at, n)]
            assert json.loads(events[-1]["data"]) == {"type": "complete", "items": n}

            processed = store.lrange(f"{unique}processed", 0, -1)
            assert processed == [f"{pid_a}:{i}" for i in range(n)]  # each item once, in A
            gone = http.get(f"{base_b}/jobs/unknown-job/events")
            assert gone.status_code == 404
    finally:
        keys = list(store.scan_iter(match=f"{unique}*"))
        if keys:
            store.delete(*keys)
        store.close()
