"""``python -m benchmarks [--quick] [--json PATH]``: run every row and print the table.

A row that misses its target is reported as MISS; the exit status is non-zero only when a
row could not be measured (an exception), or for bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from benchmarks import (
    brokers,
    brokers_faststream,
    brokers_kafka,
    brokers_nats,
    jobs_scale,
    latency,
    memory,
    redis_jobs,
    sse,
    startup,
    throughput,
)
from benchmarks.brokers_redis import broker_rows_redis
from benchmarks.inbox import inbox_rows
from benchmarks.outbox import outbox_rows
from benchmarks.relay import relay_rows
from benchmarks.report import Row, failed_row, format_table, write_json
from benchmarks.settings import FULL, QUICK, Settings

AsyncCase = Callable[[Settings], Awaitable[Row | list[Row]]]

ASYNC_CASES: tuple[tuple[str, AsyncCase], ...] = (
    ("send, no events", throughput.send_no_events),
    ("send, 1 domain event, 1 handler", throughput.send_one_event),
    ("send, 1 event, emitter's own emit", throughput.send_one_event_own_emit),
    ("stream item, no events", throughput.stream_no_events),
    ("stream item, 2 events", throughput.stream_two_events),
    ("bootstrap_streaming, seen config", throughput.bootstrap_again),
    ("first item latency", latency.first_item_rows),
    ("memory", memory.memory_rows),
    ("jobs at scale", jobs_scale.jobs_scale_rows),
    ("redis jobs", redis_jobs.redis_jobs_rows),
    ("rabbitmq", brokers.broker_rows),
    ("redis", broker_rows_redis),
    ("nats", brokers_nats.broker_rows_nats),
    ("kafka", brokers_kafka.broker_rows_kafka),
    ("faststream", brokers_faststream.broker_rows_faststream),
    ("outbox write", outbox_rows),
    ("inbox", inbox_rows),
    ("outbox relay", relay_rows),
)


async def run_async_cases(settings: Settings) -> list[Row]:
    """Rows 1-5 and memory, all on this one event loop; a failing case becomes an ERROR row."""
    rows: list[Row] = []
    for name, case in ASYNC_CASES:
        try:
            result = await case(settings)
        except Exception as exc:  # reported as an ERROR row
            rows.append(failed_row(name, exc))
            continue
        rows.extend(result if isinstance(result, list) else [result])
    return rows


def run_suite(settings: Settings) -> list[Row]:
    """Every row: the async ones inside one ``asyncio.run``, then the SSE rows against a
    uvicorn subprocess (they make their own ERROR rows), then the import rows."""
    rows = asyncio.run(run_async_cases(settings))
    rows.extend(sse.sse_rows(settings))
    try:
        rows.extend(startup.import_rows(settings.import_runs))
    except Exception as exc:  # reported as an ERROR row
        rows.append(failed_row("import cqrs", exc))
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, run the suite, print the table; 1 if a row failed, else 0."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="fewer iterations (a smoke run, ~10 s or less)"
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results here")
    args = parser.parse_args(argv)
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:  # "µs" on a non-UTF-8 terminal must not be an error
        reconfigure(errors="replace")
    settings = QUICK if args.quick else FULL
    started = time.perf_counter()
    rows = run_suite(settings)
    seconds = time.perf_counter() - started
    print(format_table(rows))
    print(f"\n{'quick' if args.quick else 'full'} run, {seconds:.1f} s")
    if args.json is not None:
        write_json(args.json, rows, args.quick, seconds)
    return 1 if any(row.error is not None for row in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
