"""Redis-backed jobs: ``StreamJobs`` + ``RedisReplayBuffer`` against raw ``XADD``.

* **Ours**: one job of ``N`` items (a streaming handler yielding pydantic responses) run by
  ``StreamJobs`` over a ``RedisReplayBuffer``: the engine renders each frame and appends it
  (one Lua script per frame: idempotency check, ``XADD ... MAXLEN ~``, TTLs), then the
  ``complete`` frame; timed from ``start`` until the job's task has ended.
* **Baseline**: the same ``N + 1`` frames, rendered beforehand, written with redis-py's
  ``XADD`` (entry id = frame id, fields ``event`` and ``data``) to a fresh stream.

Both are sequential (each write awaited before the next), against the same Redis, in this
process and this event loop, alternating baseline and ours after a warmup of each; medians of
``rounds`` runs are reported. CPU is this process's CPU time (``time.process_time_ns``: the
client side; Redis's own CPU is not counted) per item; wall is items per second. The Redis
url is ``CQRS_BENCH_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``); keys live under a
random prefix and are deleted afterwards. Without a reachable Redis the rows say "skipped".

``python -m benchmarks.redis_jobs [--quick]`` prints the rows alone.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any, cast

import di

import cqrs
from benchmarks.report import Row, failed_row, format_table
from benchmarks.settings import FULL, QUICK, Settings
from benchmarks.timing import cpu_ns, now_ns
from cqrs.integrations.fastapi import Frame, SSESettings, StreamJobs
from cqrs.integrations.redis_replay import RedisReplayBuffer
from cqrs.requests import bootstrap

REDIS_URL = os.environ.get("CQRS_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
CPU_ROW = "Redis job: CPU per item"
WALL_ROW = "Redis job: items/s (wall)"


class Produce(cqrs.Request):
    n: int


class Produced(cqrs.Response):
    i: int
    label: str


class ProduceHandler(cqrs.StreamingRequestHandler[Produce, Produced]):
    def clear_events(self) -> None:
        pass

    async def handle(self, request: Produce) -> AsyncIterator[Produced]:
        for i in range(request.n):
            yield Produced(i=i, label="item")


def _mediator() -> cqrs.StreamingRequestMediator:
    def commands(mapper: cqrs.RequestMap) -> None:
        mapper.bind(Produce, ProduceHandler)

    return bootstrap.bootstrap_streaming(di_container=di.Container(), commands_mapper=commands)


def _frames(n: int, settings: SSESettings) -> list[Frame]:
    """The frames the job engine stores for ``n`` items: the items, then ``complete``."""
    items = [settings.item(Produced(i=i, label="item"), i + 1) for i in range(n)]
    return [*items, settings.complete(n, n + 1)]


async def _job_run(jobs: StreamJobs, n: int) -> tuple[int, int]:
    """Run one job of ``n`` items to its end; (CPU ns, wall ns)."""
    gc.collect()
    cpu, wall = cpu_ns(), now_ns()
    job_id = await jobs.start(Produce(n=n))
    task = next(t for t in asyncio.all_tasks() if t.get_name() == f"cqrs job {job_id}")
    await task
    return cpu_ns() - cpu, now_ns() - wall


async def _xadd_run(client: Any, key: str, frames: list[Frame]) -> tuple[int, int]:
    """XADD ``frames`` one by one to ``key``; (CPU ns, wall ns)."""
    gc.collect()
    cpu, wall = cpu_ns(), now_ns()
    for frame in frames:
        await client.xadd(key, {"event": frame.event, "data": frame.data}, id=f"{frame.id}-0")
    return cpu_ns() - cpu, now_ns() - wall


async def _reachable(url: str) -> str | None:
    """None if Redis answers PING at ``url``, else why not."""
    import redis.asyncio

    client: Any = cast(Any, redis.asyncio.Redis).from_url(
        url, socket_connect_timeout=2, socket_timeout=2
    )
    try:
        await client.ping()
        return None
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        await client.aclose()


async def redis_jobs_rows(settings: Settings) -> list[Row]:
    """The CPU-per-item and wall-throughput rows of Redis-backed jobs against raw XADD.

    Redis unreachable: two rows that say "skipped" (no values, no error). A failure while
    measuring becomes ERROR rows.
    """
    why = await _reachable(REDIS_URL)
    if why is not None:
        note = f"skipped: no Redis at {REDIS_URL} ({why}); set CQRS_BENCH_REDIS_URL"
        return [
            Row(name=CPU_ROW, unit="µs", note=note),
            Row(name=WALL_ROW, unit="items/s", note=note),
        ]
    try:
        return await _measure(settings)
    except Exception as exc:  # reported as ERROR rows
        return [failed_row(CPU_ROW, exc), failed_row(WALL_ROW, exc)]


async def _measure(settings: Settings) -> list[Row]:
    import redis.asyncio

    n, rounds = settings.sse_items, settings.sse_rounds
    prefix = f"cqrs:bench:{uuid.uuid4().hex}:"
    render = SSESettings(send_start=False)
    frames = _frames(n, render)
    raw: Any = cast(Any, redis.asyncio.Redis).from_url(REDIS_URL)
    buffer = RedisReplayBuffer(url=REDIS_URL, prefix=prefix, max_frames=max(10_000, n + 1))
    jobs = StreamJobs(_mediator(), buffer=buffer, settings=render)
    ours_cpu: list[float] = []
    ours_wall: list[float] = []
    raw_cpu: list[float] = []
    raw_wall: list[float] = []
    try:
        await _xadd_run(raw, f"{prefix}warmup", frames)
        await _job_run(jobs, n)
        for round_ in range(rounds):
            cpu, wall = await _xadd_run(raw, f"{prefix}raw{round_}", frames)
            raw_cpu.append(cpu / n / 1000)
            raw_wall.append(n / (wall / 1e9))
            cpu, wall = await _job_run(jobs, n)
            ours_cpu.append(cpu / n / 1000)
            ours_wall.append(n / (wall / 1e9))
    finally:
        await jobs.aclose()
        keys = [key async for key in raw.scan_iter(match=f"{prefix}*")]
        if keys:
            await raw.delete(*keys)
        await raw.aclose()
    shape = f"{rounds} runs of {n} items, medians; Redis at {REDIS_URL}"
    details = {
        "items": n,
        "rounds": rounds,
        "ours_cpu_us": ours_cpu,
        "raw_cpu_us": raw_cpu,
        "ours_items_per_s": ours_wall,
        "raw_items_per_s": raw_wall,
    }
    return [
        Row(
            name=CPU_ROW,
            unit="µs",
            ours=statistics.median(ours_cpu),
            baseline=statistics.median(raw_cpu),
            note=(
                "this process's CPU per item: StreamJobs + RedisReplayBuffer (Lua append) vs "
                f"raw XADD of the same bytes with redis-py; {shape}"
            ),
            details=details,
        ),
        Row(
            name=WALL_ROW,
            unit="items/s",
            ours=statistics.median(ours_wall),
            baseline=statistics.median(raw_wall),
            note=f"sequential, one round trip per item in both; {shape}",
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    """Print the rows (``--quick``: the quick sizes); 1 if a row is an ERROR."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.redis_jobs")
    parser.add_argument("--quick", action="store_true", help="fewer items and runs")
    args = parser.parse_args(argv)
    rows = asyncio.run(redis_jobs_rows(QUICK if args.quick else FULL))
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(errors="replace")
    print(format_table(rows))
    return 1 if any(row.error is not None for row in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
