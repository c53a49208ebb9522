"""Profile ours of a throughput row: ``python -m benchmarks.profiling ROW [--top N]``.

ROW is one of ``send``, ``send-event``, ``stream``, ``stream-events``. The row's own loop runs
under ``cProfile`` (after a warmup) and the functions with the most internal time are
printed. ``sse`` and ``sse-raw`` profile the uvicorn server of the SSE row instead (inside
its process) while it serves ``/ours`` or ``/raw``. cProfile adds roughly 0.1-0.3 µs per
Python call, so read the call counts and the split between functions, not the absolute
times; asyncio counts each resume of a coroutine as one more call.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
from collections.abc import Callable, Sequence

from benchmarks import sse
from benchmarks.settings import FULL
from benchmarks.throughput import Case, send_case, stream_case

CASES: dict[str, Callable[[], Case]] = {
    "send": lambda: send_case(FULL, with_event=False),
    "send-event": lambda: send_case(FULL, with_event=True),
    "stream": lambda: stream_case(FULL, with_events=False),
    "stream-events": lambda: stream_case(FULL, with_events=True),
}

SERVER_PATHS: dict[str, str] = {"sse": "/ours", "sse-raw": "/raw"}
"""Rows profiled inside the uvicorn process: the path the client requests."""


async def profile_case(case: Case, repeats: int) -> cProfile.Profile:
    """Warm ``case.ours`` up, then run it ``repeats`` times under a fresh profiler."""
    await case.ours(case.ops)
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(repeats):
        await case.ours(case.ops)
    profiler.disable()
    return profiler


def main(argv: Sequence[str] | None = None) -> int:
    """Profile the chosen row and print the top functions by internal time."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profiling", description=__doc__)
    parser.add_argument("row", choices=sorted([*CASES, *SERVER_PATHS]))
    parser.add_argument("--top", type=int, default=25, help="how many functions to print")
    parser.add_argument("--repeats", type=int, default=3, help="loops of the row to profile")
    args = parser.parse_args(argv)
    if args.row in SERVER_PATHS:
        sse.profile_server(SERVER_PATHS[args.row], FULL, args.top)
        return 0
    case = CASES[args.row]()
    profiler = asyncio.run(profile_case(case, args.repeats))
    print(f"{args.row}: {args.repeats} x {case.ops} ops under cProfile")
    pstats.Stats(profiler).strip_dirs().sort_stats("tottime").print_stats(args.top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
