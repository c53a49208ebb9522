"""RedisReplayBuffer and StreamJobs when Redis fails: restarts, blips, lost replies, outages
longer than the deadline, and a writer that dies.

Each test runs its own ``redis-server`` on a free port of 127.0.0.1 (the fixture starts it,
may restart it, and always stops it; the shared Redis on 6379 is never touched), often
behind ``tests/tcp_proxy.py`` to cut connections on cue. The server keeps nothing on disk
(``--save "" --appendonly no``): a restart loses every key. Tests are skipped when the
``redis-server`` binary is missing.

What is guaranteed, and asserted here by counting at the end: every follower gets every item
exactly once and in order followed by ``complete``, or a prefix of the items exactly once and
in order followed by one terminal ``error`` frame that says why (``buffer_unavailable``,
``writer_lost``): never a duplicate, never silence. A fault shorter than
``outage_deadline`` costs nothing but time.

Order is driven by events (a handler holds at an item until the test releases it; the test
waits until each follower has what it should), never by sleeping "long enough".
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
import redis
import redis.asyncio
import redis.exceptions

import cqrs
from cqrs.integrations.fastapi import (
    BufferUnavailable,
    Frame,
    JobState,
    SSESettings,
    StreamJobs,
)
from cqrs.integrations.redis_replay import RedisReplayBuffer
from tests.integration.test_redis_replay import sse_events, uvicorn_process, wait_ready
from tests.support import (
    LONG_TEST_TIMEOUT,
    PATIENCE,
    HoldsEvents,
    RedisServer,
    listening,
    make_streaming,
    private_redis_server,
    wait_until,
    wait_until_async,
)
from tests.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.redis, pytest.mark.timeout(LONG_TEST_TIMEOUT)]

ROOT = Path(__file__).resolve().parents[2]
ITEMS = 80
HOLD_AT = 40  # the handler waits before item 40 (frame 41) until the test releases it


SHARED_URL = "redis://127.0.0.1:6379/0"


def _shared_redis_up() -> bool:
    return listening(6379)


# --- a private redis-server ---------------------------------------------------------------


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server on a free port, stopped at the end whatever happened."""
    yield from private_redis_server(tmp_path)


@pytest.fixture
async def proxy(redis_server: RedisServer) -> AsyncIterator[TcpProxy]:
    """A TCP proxy in front of the private server."""
    async with TcpProxy(redis_server.port) as running:
        yield running


# --- a job whose handler holds on cue -----------------------------------------------------


class Produce(cqrs.Request):
    n: int
    hold_at: int | None = None


class Produced(cqrs.Response):
    i: int


class ProduceHandler(HoldsEvents, cqrs.StreamingRequestHandler[Produce, Produced]):
    """Yields ``n`` items; before item ``hold_at`` it sets ``reached`` and waits for
    ``release``. Records each item it produced and each run of its ``finally``."""

    produced: ClassVar[list[int]] = []
    finally_ran: ClassVar[int] = 0
    reached: ClassVar[asyncio.Event]
    release: ClassVar[asyncio.Event]

    async def handle(self, request: Produce) -> AsyncIterator[Produced]:
        try:
            for i in range(request.n):
                if i == request.hold_at:
                    ProduceHandler.reached.set()
                    await ProduceHandler.release.wait()
                ProduceHandler.produced.append(i)
                yield Produced(i=i)
        finally:
            await asyncio.sleep(0)  # cleanup that awaits
            ProduceHandler.finally_ran += 1


@pytest.fixture(autouse=True)
def _fresh_handler() -> None:
    ProduceHandler.produced = []
    ProduceHandler.finally_ran = 0
    ProduceHandler.reached = asyncio.Event()
    ProduceHandler.release = asyncio.Event()


def make_jobs(buffer: RedisReplayBuffer) -> StreamJobs:
    return StreamJobs(
        make_streaming({Produce: ProduceHandler}),
        buffer=buffer,
        settings=SSESettings(send_start=False),
    )


class Follower:
    """Reads one job's frames into ``frames`` in a task (``StreamJobs.follow`` or a buffer)."""

    def __init__(self, frames: AsyncIterator[Frame]) -> None:
        self.frames: list[Frame] = []
        self.error: BaseException | None = None
        self.task = asyncio.ensure_future(self._read(frames))

    async def _read(self, frames: AsyncIterator[Frame]) -> None:
        try:
            async for frame in frames:
                self.frames.append(frame)
        except Exception as exc:
            self.error = exc

    @property
    def items(self) -> int:
        return sum(1 for frame in self.frames if frame.event == "progress")

    async def done(self) -> list[Frame]:
        await asyncio.wait_for(self.task, PATIENCE)
        return self.frames


def compact(value: object) -> str:
    """JSON as the job engine writes it (pydantic: no spaces)."""
    return json.dumps(value, separators=(",", ":"))


def progress(i: int) -> Frame:
    return Frame("progress", compact({"i": i}), i + 1)


def complete(items: int) -> Frame:
    return Frame("complete", compact({"type": "complete", "items": items}), items + 1)


def reason(frame: Frame) -> str | None:
    return json.loads(frame.data).get("reason")


def assert_every_item_then_complete(frames: list[Frame], n: int = ITEMS) -> None:
    """Items 0..n-1 exactly once, in order (ids 1..n), then ``complete`` (id n+1)."""
    assert frames[:-1] == [progress(i) for i in range(n)], [f.id for f in frames]
    assert frames[-1] == complete(n)


def assert_prefix_then_error(frames: list[Frame], items: int, why: str) -> None:
    """Items 0..items-1 exactly once, in order, then one terminal error frame for ``why``."""
    assert frames[:-1] == [progress(i) for i in range(items)], [(f.event, f.id) for f in frames]
    last = frames[-1]
    assert (last.event, reason(last)) == ("error", why), last
    assert last.id in (items + 1, None), last  # the next id (None: made by StreamJobs.follow)


async def wait_for_items(followers: list[Follower], items: int) -> None:
    await wait_until_async(
        lambda: all(follower.items == items for follower in followers),
        f"every follower to have {items} items",
        details=lambda: str([follower.items for follower in followers]),
    )


async def wait_for_tasks(count: int) -> None:
    """Wait until the event loop holds ``count`` tasks again (connections close lazily)."""
    await wait_until_async(
        lambda: len(asyncio.all_tasks()) <= count,
        f"the tasks to come back to {count}",
        details=lambda: "\n".join(map(repr, asyncio.all_tasks())),
    )
    assert len(asyncio.all_tasks()) == count


def unique_prefix() -> str:
    return f"cqrs:faults:{uuid.uuid4().hex}:"


# --- (a) a restart of Redis while a job runs ---------------------------------------------


async def test_redis_restart_mid_job_ends_it_failed_for_every_follower(
    redis_server: RedisServer,
) -> None:
    """Redis is killed and started again (every key lost) while a job holds at item 40 and 3
    followers have read items 0..39. Guaranteed: each follower gets items 0..39 exactly once,
    in order, then an error frame ``buffer_unavailable`` with id 41; the job is FAILED (a
    reconnect after frame 40 gets that frame too); the handler stopped at its next item and
    its ``finally`` ran once; no task is left."""
    tasks_before = len(asyncio.all_tasks())
    buffer = RedisReplayBuffer(url=redis_server.url, prefix=unique_prefix(), block_ms=200)
    jobs = make_jobs(buffer)
    try:
        job_id = await jobs.start(Produce(n=ITEMS, hold_at=HOLD_AT))
        followers = [Follower(jobs.follow(job_id, 0)) for _ in range(3)]
        await wait_for_items(followers, HOLD_AT)
        await asyncio.wait_for(ProduceHandler.reached.wait(), PATIENCE)

        await asyncio.to_thread(redis_server.kill)
        await asyncio.to_thread(redis_server.start)
        ProduceHandler.release.set()

        for follower in followers:
            assert_prefix_then_error(await follower.done(), HOLD_AT, "buffer_unavailable")
            assert follower.error is None

        async def failed() -> bool:
            return await jobs.state(job_id) is JobState.FAILED

        await wait_until_async(failed, "the job to be stored as failed after the restart")
        again = [frame async for frame in jobs.follow(job_id, HOLD_AT)]
        assert [(frame.event, frame.id, reason(frame)) for frame in again] == [
            ("error", HOLD_AT + 1, "buffer_unavailable")
        ]
        await wait_until_async(lambda: jobs.running == 0, "the job task to end")
        assert ProduceHandler.produced == list(range(HOLD_AT + 1))  # stopped at its next item
        assert ProduceHandler.finally_ran == 1
        assert redis_server.starts == 2
    finally:
        await jobs.aclose()
    await wait_for_tasks(tasks_before)


# --- (b) a 1 s blip ---------------------------------------------------------------------


async def test_a_one_second_blip_costs_nothing(redis_server: RedisServer, proxy: TcpProxy) -> None:
    """Every connection to Redis is cut and new ones are refused for 1 s while the job writes
    and 3 followers wait: all 80 items reach every follower exactly once, in order, then
    ``complete``; the job is DONE and ran each item once."""
    tasks_before = len(asyncio.all_tasks())
    buffer = RedisReplayBuffer(url=proxy.url(), prefix=unique_prefix(), block_ms=200)
    jobs = make_jobs(buffer)
    try:
        job_id = await jobs.start(Produce(n=ITEMS, hold_at=HOLD_AT))
        followers = [Follower(jobs.follow(job_id, 0)) for _ in range(3)]
        await wait_for_items(followers, HOLD_AT)

        began = time.monotonic()
        cut = proxy.refuse()
        ProduceHandler.release.set()
        await wait_until_async(
            lambda: proxy.turned_away >= 3, "the writer and followers to be turned away"
        )
        await asyncio.sleep(max(0.0, began + 1.0 - time.monotonic()))
        proxy.accept()

        for follower in followers:
            assert_every_item_then_complete(await follower.done())
            assert follower.error is None
        assert await jobs.state(job_id) is JobState.DONE
        assert ProduceHandler.produced == list(range(ITEMS))
        assert ProduceHandler.finally_ran == 1
        assert cut >= 3  # at least the 3 followers' connections were open and got cut
        assert proxy.accepted > cut  # everyone reconnected
    finally:
        await jobs.aclose()
    await wait_for_tasks(tasks_before)


# --- (c) a lost reply ---------------------------------------------------------------------


async def test_a_lost_reply_to_an_append_stores_the_frame_once(
    redis_server: RedisServer, proxy: TcpProxy
) -> None:
    """Redis stores frame 41 but its answer never reaches the writer (connection cut): the
    append is sent again, finds the frame stored, and the job goes on: one entry per frame,
    every follower gets each item once, the job is DONE."""
    tasks_before = len(asyncio.all_tasks())
    prefix = unique_prefix()
    buffer = RedisReplayBuffer(url=proxy.url(), prefix=prefix, block_ms=200)
    jobs = make_jobs(buffer)
    direct = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        job_id = await jobs.start(Produce(n=ITEMS, hold_at=HOLD_AT))
        followers = [Follower(jobs.follow(job_id, 0)) for _ in range(3)]
        await wait_for_items(followers, HOLD_AT)
        proxy.lose_next_reply(match=b'{"i":40}')  # the append of item 40 (frame 41)
        ProduceHandler.release.set()
        await asyncio.wait_for(proxy.reply_lost.wait(), PATIENCE)

        for follower in followers:
            assert_every_item_then_complete(await follower.done())
        assert proxy.replies_lost == 1
        entries: Any = await direct.xrange(f"{prefix}{job_id}")
        assert [entry_id for entry_id, _ in entries] == [
            f"{n}-0".encode() for n in range(1, ITEMS + 2)
        ]
        assert await jobs.state(job_id) is JobState.DONE
        assert ProduceHandler.produced == list(range(ITEMS))
    finally:
        await jobs.aclose()
        await direct.aclose()
    await wait_for_tasks(tasks_before)


# --- (d) an outage longer than the deadline -----------------------------------------------


async def test_an_outage_past_the_deadline_ends_the_job_failed(
    redis_server: RedisServer, proxy: TcpProxy
) -> None:
    """Redis stays unreachable longer than outage_deadline (2 s) while the job writes: the
    append gives up, the handler is closed (its ``finally`` ran), and once Redis is back the
    job is FAILED: a follower that connects then gets items 0..39 once, then an error frame
    ``buffer_unavailable``. No task is left."""
    tasks_before = len(asyncio.all_tasks())
    deadline = 2.0
    buffer = RedisReplayBuffer(
        url=proxy.url(), prefix=unique_prefix(), block_ms=200, outage_deadline=deadline, lease=60
    )
    jobs = make_jobs(buffer)
    try:
        job_id = await jobs.start(Produce(n=ITEMS, hold_at=HOLD_AT))
        await asyncio.wait_for(ProduceHandler.reached.wait(), PATIENCE)
        proxy.refuse()
        began = time.monotonic()
        ProduceHandler.release.set()
        await wait_until_async(lambda: jobs.running == 0, "the job to give up and end")
        assert time.monotonic() - began >= deadline  # it retried for the whole deadline
        assert ProduceHandler.finally_ran == 1
        assert ProduceHandler.produced == list(range(HOLD_AT + 1))
        proxy.accept()

        later = Follower(jobs.follow(job_id, 0))
        assert_prefix_then_error(await later.done(), HOLD_AT, "buffer_unavailable")
        assert await jobs.state(job_id) is JobState.FAILED
    finally:
        await jobs.aclose()
    await wait_for_tasks(tasks_before)


async def test_a_follower_cut_off_past_the_deadline_gets_an_error_frame(
    redis_server: RedisServer, proxy: TcpProxy
) -> None:
    """A follower whose Redis stays unreachable past outage_deadline ends with a terminal
    error frame ``buffer_unavailable`` from StreamJobs.follow (never an exception, never a
    hang). Needs StreamJobs.follow to turn a buffer exception into that frame (the job
    engine's side of issue #7)."""
    tasks_before = len(asyncio.all_tasks())
    prefix = unique_prefix()
    writer = RedisReplayBuffer(url=redis_server.url, prefix=prefix, block_ms=200)
    reader = RedisReplayBuffer(url=proxy.url(), prefix=prefix, block_ms=200, outage_deadline=1.0)
    jobs = make_jobs(writer)
    readers = make_jobs(reader)
    try:
        job_id = await jobs.start(Produce(n=ITEMS, hold_at=HOLD_AT))
        follower = Follower(readers.follow(job_id, 0))
        await wait_for_items([follower], HOLD_AT)
        proxy.refuse()
        assert_prefix_then_error(await follower.done(), HOLD_AT, "buffer_unavailable")
        assert follower.error is None
        proxy.accept()
        ProduceHandler.release.set()
        assert_every_item_then_complete(
            await Follower(readers.follow(job_id, 0)).done()
        )  # the job itself never noticed
    finally:
        await jobs.aclose()
        await readers.aclose()
    await wait_for_tasks(tasks_before)


# --- followers survive cuts ---------------------------------------------------------------


async def test_a_follower_reconnects_and_resumes_after_its_last_frame(
    redis_server: RedisServer, proxy: TcpProxy
) -> None:
    """A follower (through the proxy) has its connection cut three times while the writer
    (direct) goes on: it reconnects and yields every frame exactly once, in order."""
    prefix = unique_prefix()
    writer = RedisReplayBuffer(url=redis_server.url, prefix=prefix)
    reader = RedisReplayBuffer(url=proxy.url(), prefix=prefix, block_ms=200)
    try:
        await writer.open("job")
        follower = Follower(reader.follow("job", 0))
        n = 0
        for _ in range(3):
            for _ in range(10):
                n += 1
                await writer.append("job", progress(n - 1))
            await wait_until_async(lambda n=n: follower.items == n, f"the follower at item {n}")
            await wait_until_async(lambda: proxy.drop_all() > 0, "a connection to cut")
            for _ in range(5):  # written while the follower is cut off
                n += 1
                await writer.append("job", progress(n - 1))
        await writer.append("job", complete(n))
        frames = await follower.done()
        assert follower.error is None
        assert frames == [*(progress(i) for i in range(45)), complete(45)]
        assert proxy.dropped >= 3
        assert proxy.accepted >= 4  # the first connection and at least one per cut
    finally:
        await writer.aclose()
        await reader.aclose()


async def test_a_follower_past_the_deadline_raises_buffer_unavailable(
    redis_server: RedisServer, proxy: TcpProxy
) -> None:
    prefix = unique_prefix()
    writer = RedisReplayBuffer(url=redis_server.url, prefix=prefix)
    reader = RedisReplayBuffer(url=proxy.url(), prefix=prefix, block_ms=200, outage_deadline=0.5)
    try:
        await writer.open("job")
        await writer.append("job", progress(0))
        follower = Follower(reader.follow("job", 0))
        await wait_until_async(lambda: follower.items == 1, "the follower to read item 0")
        proxy.refuse()
        await asyncio.wait_for(follower.task, PATIENCE)
        assert follower.frames == [progress(0)]
        assert isinstance(follower.error, BufferUnavailable)
        assert f"Redis at {proxy.url()} stayed unreachable for 0.5 s" in str(follower.error)
        assert proxy.turned_away >= 2  # it did retry
    finally:
        proxy.accept()
        await writer.aclose()
        await reader.aclose()


# --- (3) a writer that dies ---------------------------------------------------------------

WRITER = """
import asyncio, sys
from cqrs.integrations.redis_replay import RedisReplayBuffer
from cqrs.integrations.fastapi import Frame

async def main() -> None:
    buffer = RedisReplayBuffer(url=sys.argv[1], prefix=sys.argv[2], lease=float(sys.argv[3]),
                               ttl=60)
    await buffer.open("job")
    for n in (1, 2, 3):
        await buffer.append("job", Frame("progress", '{"i":%d}' % (n - 1), n))
    print("ready", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_a_dead_writer_is_declared_lost_when_its_lease_runs_out(
    redis_server: RedisServer,
) -> None:
    """The process writing a job is SIGKILLed: once its lease (2 s) runs out, the follower
    ends with a ``writer_lost`` error frame (id 4, after frames 1-3), the job is FAILED and
    its keys take the TTLs of a finished job."""
    prefix, lease, ttl = unique_prefix(), 2.0, 60
    reader = RedisReplayBuffer(url=redis_server.url, prefix=prefix, block_ms=200, ttl=ttl)
    direct = redis.asyncio.Redis.from_url(redis_server.url)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", WRITER, redis_server.url, prefix, str(lease),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), PATIENCE)
        assert line == b"ready\n", line + await process.stdout.read()
        follower = Follower(reader.follow("job", 0))
        await wait_until_async(lambda: follower.items == 3, "the follower to read items 0-2")
        assert await reader.state("job") is JobState.RUNNING  # the writer holds its lease

        process.kill()
        await asyncio.wait_for(process.wait(), PATIENCE)
        frames = await follower.done()  # within lease + PATIENCE
        assert frames[:3] == [progress(0), progress(1), progress(2)]
        assert [(frame.event, frame.id, reason(frame)) for frame in frames[3:]] == [
            ("error", 4, "writer_lost")
        ]
        assert await reader.state("job") is JobState.FAILED
        assert 0 < await direct.pttl(f"{prefix}job") <= ttl * 1000
        assert ttl * 1000 < await direct.pttl(f"{prefix}job:state") <= 2 * ttl * 1000
        assert await direct.exists(f"{prefix}job:lease") == 0
    finally:
        if process.returncode is None:
            process.kill()
            await asyncio.wait_for(process.wait(), PATIENCE)
        await reader.aclose()
        await direct.aclose()


# --- the same restart, seen by a browser through uvicorn -----------------------------------


def test_redis_restart_under_uvicorn_gives_the_browser_a_definite_end(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """A uvicorn process runs a job whose buffer's Redis is restarted (every key lost) while
    the job holds at item 4 and a client streams it. The client's stream ends with an
    ``error`` frame ``buffer_unavailable`` after items 0-3 (no silence, no pings forever); an
    EventSource reconnecting with ``Last-Event-ID: 4`` gets that error frame again and the
    response ends; the handler ran items 0-4 once and its ``finally`` once."""
    if not _shared_redis_up():
        pytest.skip("the app's control lists need the shared Redis on 127.0.0.1:6379")
    prefix = unique_prefix()
    env = {
        **os.environ,
        "CQRS_REDIS_JOBS_PREFIX": prefix,
        "CQRS_REDIS_JOBS_URL": redis_server.url,
    }
    control = redis.Redis.from_url(SHARED_URL, decode_responses=True)
    store = redis.Redis.from_url(redis_server.url, decode_responses=True)
    n, hold_at = 8, 4
    try:
        with (
            uvicorn_process(env, tmp_path / "app.log") as (base, process),
            httpx.Client(timeout=PATIENCE) as http,
        ):
            pid = wait_ready(http, base, process, tmp_path / "app.log")
            started = http.post(f"{base}/jobs/count", json={"n": n, "hold_at": hold_at})
            assert started.status_code == 202, started.text
            job_id = started.json()["job_id"]
            events: list[dict[str, str]] = []
            with http.stream("GET", f"{base}/jobs/{job_id}/events") as response:
                assert response.status_code == 200
                for event in sse_events(response.iter_lines()):
                    events.append(event)
                    if [e.get("event") for e in events].count("progress") == hold_at:
                        redis_server.kill()
                        redis_server.start()
                        control.rpush(f"{prefix}release", "go")
                    if event.get("event") in ("error", "complete"):
                        break
            frames = [e for e in events if e.get("event") != "start"]
            assert [(e["event"], e.get("id")) for e in frames] == [
                *(("progress", str(i)) for i in range(1, hold_at + 1)),
                ("error", str(hold_at + 1)),
            ]
            assert json.loads(frames[-1]["data"])["reason"] == "buffer_unavailable"

            wait_until(
                lambda: store.get(f"{prefix}{job_id}:state") == "failed",
                "the app to store the job as failed in the restarted Redis",
            )
            again = http.get(f"{base}/jobs/{job_id}/events", headers={"Last-Event-ID": "4"})
            assert again.status_code == 200
            resumed = list(sse_events(again.text.splitlines()))
            assert [(e.get("event"), e.get("id")) for e in resumed if "data" in e] == [
                ("error", str(hold_at + 1))
            ]
            wait_until(
                lambda: control.lrange(f"{prefix}finally", 0, -1) == [str(pid)],
                "the handler's finally to run",
            )
            processed = control.lrange(f"{prefix}processed", 0, -1)
            assert processed == [f"{pid}:{i}" for i in range(hold_at + 1)]
    finally:
        for client in (control, store):
            keys = list(client.scan_iter(match=f"{prefix}*"))
            if keys:
                client.delete(*keys)
            client.close()
