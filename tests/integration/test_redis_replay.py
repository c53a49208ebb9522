"""RedisReplayBuffer against a real Redis on 127.0.0.1:6379, plus a conformance check that
every replay buffer (MemoryReplayBuffer included) must pass.

Every Redis test uses its own key prefix and deletes its keys afterwards. Tests that need
Redis are skipped when nothing listens on 127.0.0.1:6379.
"""

from __future__ import annotations

import asyncio
import contextlib
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
from cqrs.integrations.fastapi import (
    Frame,
    JobState,
    MemoryReplayBuffer,
    ReplayBuffer,
    ReplayGap,
    StreamJobs,
)
from cqrs.integrations.redis_replay import RedisReplayBuffer
from cqrs.requests import bootstrap

pytestmark = pytest.mark.redis

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
REDIS_URL = f"redis://{REDIS_HOST}:{REDIS_PORT}/0"
ROOT = Path(__file__).resolve().parents[2]
WAIT = 10.0  # bound of every wait in this module, in seconds


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


# --- the conformance check ---------------------------------------------------------------


class MakeBuffer(Protocol):
    def __call__(self, *, ttl: float = 600.0, max_frames: int = 10_000) -> ReplayBuffer: ...


def item(n: int) -> Frame:
    return Frame("progress", json.dumps({"n": n}), n)


def complete(n: int) -> Frame:
    return Frame("complete", json.dumps({"type": "complete", "items": n - 1}), n)


async def collect(frames: AsyncIterator[Frame]) -> list[Frame]:
    async def run() -> list[Frame]:
        return [frame async for frame in frames]

    return await asyncio.wait_for(run(), WAIT)


async def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def sleep_until(moment: float) -> None:
    await asyncio.sleep(max(0.0, moment - time.monotonic()))


async def check_states(make_buffer: MakeBuffer) -> None:
    """UNKNOWN -> RUNNING (not expiring while running) -> DONE -> EXPIRED -> UNKNOWN."""
    ttl = 0.3
    buffer = make_buffer(ttl=ttl)
    assert await buffer.state("job-a") is JobState.UNKNOWN
    await buffer.open("job-a")
    assert await buffer.state("job-a") is JobState.RUNNING
    await buffer.append("job-a", item(1))
    await asyncio.sleep(ttl * 1.5)  # longer than ttl: a running job must not expire
    assert await buffer.state("job-a") is JobState.RUNNING
    await buffer.append("job-a", complete(2))
    done_at = time.monotonic()
    assert await buffer.state("job-a") is JobState.DONE
    assert await collect(buffer.follow("job-a", 0)) == [item(1), complete(2)]
    await sleep_until(done_at + ttl * 1.5)
    assert await buffer.state("job-a") is JobState.EXPIRED
    assert await collect(buffer.follow("job-a", 0)) == []
    await sleep_until(done_at + ttl * 3.2)
    assert await buffer.state("job-a") is JobState.UNKNOWN
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
    assert await collect(buffer.follow("job", 6)) == []


async def check_follow_live(make_buffer: MakeBuffer) -> None:
    """A reader started before any frame gets each frame as it comes, then stops."""
    buffer = make_buffer()
    await buffer.open("job")
    seen: list[Frame] = []

    async def read() -> None:
        async for frame in buffer.follow("job", 0):
            seen.append(frame)

    reader = asyncio.ensure_future(read())
    await asyncio.sleep(0.05)
    assert seen == []
    for n in range(1, 4):
        await buffer.append("job", item(n))
        await wait_until(lambda n=n: len(seen) == n, f"frame {n}")
        assert not reader.done()
    await buffer.append("job", complete(4))
    await asyncio.wait_for(reader, WAIT)
    assert seen == [item(1), item(2), item(3), complete(4)]


async def check_concurrent_readers(make_buffer: MakeBuffer) -> None:
    """Several readers of one job, started before and during the job, all get their frames."""
    buffer = make_buffer()
    await buffer.open("job")
    early = [asyncio.ensure_future(collect(buffer.follow("job", after))) for after in (0, 0, 1)]
    await asyncio.sleep(0.05)
    late: list[asyncio.Future[list[Frame]]] = []
    for n in range(1, 6):
        await buffer.append("job", item(n))
        if n == 3:
            late.append(asyncio.ensure_future(collect(buffer.follow("job", 2))))
        await asyncio.sleep(0.01)
    await buffer.append("job", complete(6))
    everything = [*map(item, range(1, 6)), complete(6)]
    results = await asyncio.gather(*early, *late)
    assert results == [everything, everything, everything[1:], everything[2:]]


async def check_replay_gap(make_buffer: MakeBuffer) -> None:
    """Resuming before the oldest kept frame raises ReplayGap; the last max_frames are kept.

    (Redis trims with ``MAXLEN ~``, which keeps at least max_frames: 500 frames are enough
    for the first ones to be dropped with Redis's default of 100 entries per stream node.)
    """
    buffer = make_buffer(max_frames=5)
    await buffer.open("job")
    for n in range(1, 501):
        await buffer.append("job", item(n))
    await buffer.append("job", complete(501))
    with pytest.raises(ReplayGap):
        await collect(buffer.follow("job", 0))
    assert await collect(buffer.follow("job", 496)) == [*map(item, range(497, 501)), complete(501)]


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
    "follow_live": check_follow_live,
    "concurrent_readers": check_concurrent_readers,
    "replay_gap": check_replay_gap,
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
    entries = await client.xrange(f"{prefix}job")
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
    await buffer.append("job", complete(2))
    assert 29_000 < await client.pttl(stream) <= 30_000
    assert 59_000 < await client.pttl(state) <= 60_000
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
    [(oldest_id, _)] = await client.xrange(f"{prefix}job", count=1)
    oldest = int(oldest_id.split(b"-")[0])
    assert 1 < oldest <= 391  # MAXLEN ~ dropped whole nodes and kept at least 10 frames
    kept = await collect(buffer.follow("job", oldest - 1))
    assert [frame.id for frame in kept] == list(range(oldest, 401))
    with pytest.raises(ReplayGap, match=f"oldest kept is {oldest}"):
        await collect(buffer.follow("job", oldest - 2))


async def test_reader_falling_behind_the_trimming_gets_a_gap(
    client: redis.asyncio.Redis, prefix: str
) -> None:
    buffer = RedisReplayBuffer(client, prefix=prefix, max_frames=5)
    await buffer.open("job")
    for n in range(1, 11):
        await buffer.append("job", item(n))
    reader = buffer.follow("job", 0)
    assert await anext(reader) == item(1)
    for n in range(11, 1000):  # the reader holds still while the writer moves on
        await buffer.append("job", item(n))
    with pytest.raises(ReplayGap):
        await collect(reader)


async def test_follow_across_buffer_instances(client: redis.asyncio.Redis, prefix: str) -> None:
    """Writer and reader share nothing but Redis and the prefix (as two processes would)."""
    writer = RedisReplayBuffer(url=REDIS_URL, prefix=prefix)
    reader = RedisReplayBuffer(url=REDIS_URL, prefix=prefix, block_ms=200)
    try:
        await writer.open("job")
        assert await reader.state("job") is JobState.RUNNING
        seen: list[Frame] = []

        async def read() -> None:
            async for frame in reader.follow("job", 0):
                seen.append(frame)

        task = asyncio.ensure_future(read())
        await asyncio.sleep(0.3)  # longer than block_ms: the reader loops while it waits
        for n in range(1, 4):
            await writer.append("job", item(n))
            await wait_until(lambda n=n: len(seen) == n, f"frame {n}")
        await writer.append("job", complete(4))
        await asyncio.wait_for(task, WAIT)
        assert seen == [item(1), item(2), item(3), complete(4)]
        assert await reader.state("job") is JobState.DONE
    finally:
        await writer.aclose()
        await reader.aclose()


async def _xread_calls(client: redis.asyncio.Redis) -> int:
    stats = await client.info("commandstats")
    return int(stats.get("cmdstat_xread", {}).get("calls", 0))


async def test_follow_waits_without_busy_looping(client: redis.asyncio.Redis, prefix: str) -> None:
    buffer = RedisReplayBuffer(client, prefix=prefix, block_ms=200)
    await buffer.open("job")
    await buffer.append("job", item(1))
    before = await _xread_calls(client)
    reader = asyncio.ensure_future(collect(buffer.follow("job", 1)))
    await asyncio.sleep(1.0)
    calls = await _xread_calls(client) - before
    assert not reader.done()
    assert 2 <= calls <= 15, calls  # about one XREAD per block_ms
    await buffer.append("job", complete(2))
    assert await reader == [complete(2)]


async def test_follower_stops_when_the_job_keys_vanish(
    client: redis.asyncio.Redis, prefix: str
) -> None:
    """A running job whose writer died expires after running_ttl; followers then stop."""
    buffer = RedisReplayBuffer(client, prefix=prefix, block_ms=100)
    await buffer.open("job")
    await buffer.append("job", item(1))
    reader = asyncio.ensure_future(collect(buffer.follow("job", 0)))
    await asyncio.sleep(0.2)
    await client.delete(f"{prefix}job", f"{prefix}job:state")  # what the expiry does
    assert await reader == [item(1)]
    assert await buffer.state("job") is JobState.UNKNOWN


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
    with pytest.raises(redis.exceptions.ResponseError):
        await buffer.append("job", item(1))  # ids must increase
    await buffer.append("job", complete(2))
    await buffer.append("job", Frame("error", "{}", 3))  # after the end: ignored
    assert await collect(buffer.follow("job", 0)) == [item(1), complete(2)]


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
    deadline = time.monotonic() + WAIT
    while await _connections_named(client, name):
        assert time.monotonic() < deadline, "the buffer's own connection stayed open"
        await asyncio.sleep(0.01)


async def test_created_client_outlasts_a_blocking_read(prefix: str) -> None:
    buffer = RedisReplayBuffer(url=REDIS_URL, prefix=prefix, block_ms=7_000)
    try:
        inner: Any = buffer._redis  # redis-py >= 6 would time out reads after 5 s
        assert inner.connection_pool.connection_kwargs["socket_timeout"] == 12.0
    finally:
        await buffer.aclose()


async def test_short_socket_timeout_of_a_given_client_is_tolerated(prefix: str) -> None:
    impatient = redis.asyncio.Redis.from_url(REDIS_URL, socket_timeout=0.2)
    buffer = RedisReplayBuffer(impatient, prefix=prefix, block_ms=1_000)
    try:
        await buffer.open("job")
        reader = asyncio.ensure_future(collect(buffer.follow("job", 0)))
        await asyncio.sleep(0.7)  # several read timeouts while XREAD blocks
        assert not reader.done()
        await buffer.append("job", complete(1))
        assert await reader == [complete(1)]
    finally:
        await impatient.aclose()


async def test_redis_outage_raises_connection_error() -> None:
    buffer = RedisReplayBuffer(url="redis://127.0.0.1:1/0")  # nothing listens on port 1
    try:
        with pytest.raises(redis.exceptions.ConnectionError):
            await buffer.state("job")
        with pytest.raises(redis.exceptions.ConnectionError):
            await buffer.open("job")
        with pytest.raises(redis.exceptions.ConnectionError):
            await collect(buffer.follow("job", 0))
    finally:
        await buffer.aclose()


def test_missing_redis_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    with pytest.raises(MissingExtraError, match=r"cqrs-kit\[redis\]"):
        RedisReplayBuffer()


def test_bad_settings_are_refused() -> None:
    for settings in ({"ttl": 0}, {"max_frames": 0}, {"block_ms": 0}):
        with pytest.raises(ValueError, match="must be"):
            RedisReplayBuffer(**settings)  # type: ignore[arg-type]


# --- StreamJobs across instances ---------------------------------------------------------


class Count(cqrs.Request):
    n: int
    delay: float = 0.05


class Counted(cqrs.Response):
    i: int


class CountHandler(cqrs.StreamingRequestHandler[Count, Counted]):
    runs = 0

    def clear_events(self) -> None:
        pass

    async def handle(self, request: Count) -> AsyncIterator[Counted]:
        CountHandler.runs += 1
        for i in range(request.n):
            await asyncio.sleep(request.delay)
            yield Counted(i=i)


def _count_mediator() -> cqrs.StreamingRequestMediator:
    def commands(mapper: cqrs.RequestMap) -> None:
        mapper.bind(Count, CountHandler)

    return bootstrap.bootstrap_streaming(di_container=di.Container(), commands_mapper=commands)


async def test_stream_jobs_resume_from_a_second_instance(prefix: str) -> None:
    CountHandler.runs = 0
    async with (
        StreamJobs(_count_mediator(), buffer=RedisReplayBuffer(prefix=prefix)) as first,
        StreamJobs(_count_mediator(), buffer=RedisReplayBuffer(prefix=prefix)) as second,
    ):
        job_id = await first.start(Count(n=6))
        assert await second.state(job_id) is JobState.RUNNING
        assert second.running == 0
        resumed = await collect(await second.frames(job_id, after=2))
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
            process.wait(WAIT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(WAIT)


def wait_ready(http: httpx.Client, base: str, process: subprocess.Popen[bytes], log: Path) -> int:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"uvicorn exited:\n{log.read_text()}")
        try:
            return int(http.get(f"{base}/health", timeout=1.0).json()["pid"])
        except httpx.HTTPError:
            time.sleep(0.05)
    raise AssertionError(f"uvicorn did not answer within {WAIT}s:\n{log.read_text()}")


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
    unique = f"cqrs:test:{uuid.uuid4().hex}:"
    env = {**os.environ, "CQRS_REDIS_JOBS_PREFIX": unique}
    store = redis.Redis.from_url(REDIS_URL)
    n = 8
    try:
        with (
            uvicorn_process(env, tmp_path / "a.log") as (base_a, process_a),
            uvicorn_process(env, tmp_path / "b.log") as (base_b, process_b),
            httpx.Client(timeout=WAIT) as http,
        ):
            pid_a = wait_ready(http, base_a, process_a, tmp_path / "a.log")
            pid_b = wait_ready(http, base_b, process_b, tmp_path / "b.log")
            assert pid_a != pid_b

            started = http.post(f"{base_a}/jobs/count", json={"n": n, "delay": 0.2})
            assert started.status_code == 202, started.text
            job_id = started.json()["job_id"]
            stream_key = f"{unique}{job_id}"
            deadline = time.monotonic() + WAIT
            while store.xlen(stream_key) < 2:
                assert time.monotonic() < deadline, "process A did not produce 2 frames"
                time.sleep(0.02)
            assert store.get(f"{stream_key}:state") == b"running"  # B joins a live job

            events: list[dict[str, str]] = []
            with http.stream(
                "GET", f"{base_b}/jobs/{job_id}/events", headers={"Last-Event-ID": "2"}
            ) as response:
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/event-stream")
                for event in sse_events(response.iter_lines()):
                    events.append(event)
                    if event.get("event") == "complete":
                        break
                    assert time.monotonic() < deadline + WAIT, "the stream did not end"

            assert [int(event["id"]) for event in events] == list(range(3, n + 2))
            assert [event["event"] for event in events] == ["progress"] * (n - 2) + ["complete"]
            items = [json.loads(event["data"]) for event in events[:-1]]
            assert items == [{"i": i} for i in range(2, n)]
            assert json.loads(events[-1]["data"]) == {"type": "complete", "items": n}

            processed = [value.decode() for value in store.lrange(f"{unique}processed", 0, -1)]
            assert processed == [f"{pid_a}:{i}" for i in range(n)]  # each item once, in A
            gone = http.get(f"{base_b}/jobs/unknown-job/events")
            assert gone.status_code == 404
    finally:
        keys = list(store.scan_iter(match=f"{unique}*"))
        if keys:
            store.delete(*keys)
        store.close()
