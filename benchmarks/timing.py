"""Timing helpers: warm up, collect garbage, then time ours and the baseline alternately.

A *loop* is an async callable ``loop(ops) -> elapsed_ns`` that performs ``ops`` operations and
times them itself (so that the loop's setup is not counted): throughput loops with
:data:`cpu_ns`, the CPU time of this process, which other work on a shared machine does not
inflate; latency loops, whose handlers sleep, with :data:`now_ns`, the wall clock.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

Loop = Callable[[int], Awaitable[int]]

now_ns = time.perf_counter_ns
cpu_ns = time.process_time_ns


@dataclass(frozen=True)
class Comparison:
    """Per-op times in µs of ours and the baseline, one sample per repeat."""

    ours_us: tuple[float, ...]
    baseline_us: tuple[float, ...]

    @property
    def ours(self) -> float:
        """Median per-op time of ours, µs."""
        return statistics.median(self.ours_us)

    @property
    def baseline(self) -> float:
        """Median per-op time of the baseline, µs."""
        return statistics.median(self.baseline_us)


async def compare(
    ours: Loop, baseline: Loop, *, ops: int, repeats: int, warmup_ops: int
) -> Comparison:
    """Time ``ours`` and ``baseline`` over ``ops`` operations, ``repeats`` times each.

    Both are warmed up first; the two alternate (baseline, ours, baseline, ...) so that drift
    of the machine affects both alike; ``gc.collect()`` runs before every measurement.
    """
    await baseline(warmup_ops)
    await ours(warmup_ops)
    ours_us: list[float] = []
    baseline_us: list[float] = []
    for _ in range(repeats):
        gc.collect()
        baseline_us.append(await baseline(ops) / ops / 1000)
        gc.collect()
        ours_us.append(await ours(ops) / ops / 1000)
    return Comparison(tuple(ours_us), tuple(baseline_us))


async def sample(run_once: Callable[[], Awaitable[int]], runs: int) -> tuple[float, ...]:
    """Call ``run_once`` (which returns nanoseconds) ``runs`` times after one warmup; µs."""
    await run_once()
    samples: list[float] = []
    for _ in range(runs):
        gc.collect()
        samples.append(await run_once() / 1000)
    return tuple(samples)
