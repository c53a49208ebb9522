"""Jobs at scale: the cost of a job beside many kept jobs, and the memory a kept job holds.

* ``jobs: start+state+first frame, N kept``: CPU µs of ``StreamJobs.start()``, then
  ``state()``, then ``follow()`` up to the job's first frame, on a ``MemoryReplayBuffer``
  that already keeps N finished 10-frame jobs (10; 1,000; 100,000). The buffer's
  ``max_total_frames`` is N * 10, so it stays full: every new job evicts the oldest one, the
  steady state of a busy server. The baseline is the same measurement with 10 kept jobs, in
  the same run, alternating; the target is a flat cost (ratio <= 2x at 100,000). The job's
  handler yields 9 prebuilt items without awaiting, so the job runs to its end before the
  follower resumes: the time covers the whole 10-frame job. Each job is then read to its end
  (untimed), and before the row is reported the run checks that every job gave 10 frames
  and that the buffer still keeps exactly N jobs.
* ``memory per kept finished job (10 frames)``: bytes still traced (``tracemalloc``) per
  finished job kept, frames built as ``StreamJobs`` builds them (pydantic JSON, distinct
  strings, 22-character random ids), beside the buffer's own estimate of the same jobs (what
  it counts towards ``max_bytes``).
"""

from __future__ import annotations

import gc
import secrets
import tracemalloc
from dataclasses import dataclass

from benchmarks import model
from benchmarks.report import Row, Target
from benchmarks.settings import QUICK, Settings
from benchmarks.timing import compare, cpu_ns
from cqrs.integrations.fastapi import Frame, MemoryReplayBuffer, SSESettings, StreamJobs

FRAMES_PER_JOB = 10
KEPT = (10, 1_000, 100_000)


@dataclass(frozen=True)
class Sizes:
    """Operations of one run of this module."""

    ops: int
    """Jobs started per measurement."""
    repeats: int
    memory_jobs: int
    """Finished jobs kept while tracemalloc measures."""


FULL_SIZES = Sizes(ops=300, repeats=7, memory_jobs=20_000)
QUICK_SIZES = Sizes(ops=60, repeats=3, memory_jobs=3_000)

_SETTINGS = SSESettings(send_start=False, heartbeat=None)
_ITEMS = model.make_items(FRAMES_PER_JOB - 1)


def job_frames(settings: SSESettings = _SETTINGS) -> list[Frame]:
    """The 10 frames of one job, as ``StreamJobs`` stores them (fresh strings each call)."""
    frames = [settings.item(item, n) for n, item in enumerate(_ITEMS, start=1)]
    frames.append(settings.complete(len(_ITEMS), FRAMES_PER_JOB))
    return frames


async def fill(buffer: MemoryReplayBuffer, jobs: int, frames: list[Frame] | None = None) -> None:
    """Keep ``jobs`` finished jobs in ``buffer`` (sharing ``frames`` if given)."""
    for _ in range(jobs):
        job_id = secrets.token_urlsafe(16)
        await buffer.open(job_id)
        for frame in frames if frames is not None else job_frames():
            await buffer.append(job_id, frame)


class _Scale:
    """A ``StreamJobs`` over a full buffer of ``kept`` jobs, and its timed loop."""

    def __init__(self, kept: int) -> None:
        self.kept = kept
        self.buffer = MemoryReplayBuffer(
            max_total_frames=kept * FRAMES_PER_JOB, max_bytes=2**62, max_tombstones=kept
        )
        self.jobs = StreamJobs(model.streaming_mediator(), buffer=self.buffer, settings=_SETTINGS)
        self.request = model.PlainStream(items=_ITEMS)
        self.bad_jobs = 0

    async def loop(self, ops: int) -> int:
        """``ops`` jobs; returns the CPU ns of their start/state/first-frame parts."""
        jobs, request = self.jobs, self.request
        total = 0
        for _ in range(ops):
            start = cpu_ns()
            job_id = await jobs.start(request)
            await jobs.state(job_id)
            follower = jobs.follow(job_id, 0)
            await anext(follower)
            total += cpu_ns() - start
            rest = [frame async for frame in follower]
            if len(rest) != FRAMES_PER_JOB - 1 or not rest[-1].terminal:
                self.bad_jobs += 1
        return total

    def verify(self) -> None:
        """Raise ``RuntimeError`` if a job lost frames or the buffer is not full."""
        if self.bad_jobs:
            raise RuntimeError(f"{self.bad_jobs} jobs did not give {FRAMES_PER_JOB} frames")
        if self.buffer.kept_jobs != self.kept:
            raise RuntimeError(f"the buffer keeps {self.buffer.kept_jobs} jobs, not {self.kept}")


async def latency_rows(sizes: Sizes) -> list[Row]:
    """One row per kept-jobs figure; ours beside the 10-kept figure."""
    shared = job_frames()
    scales: dict[int, _Scale] = {}
    for kept in KEPT:
        scale = scales[kept] = _Scale(kept)
        await fill(scale.buffer, kept, shared)
    base = scales[KEPT[0]]
    rows: list[Row] = []
    for kept in KEPT:
        scale = scales[kept]
        result = await compare(
            scale.loop, base.loop, ops=sizes.ops, repeats=sizes.repeats, warmup_ops=sizes.ops
        )
        scale.verify()
        base.verify()
        rows.append(
            Row(
                name=f"jobs: start+state+first frame, {kept:,} kept",
                unit="µs",
                ours=result.ours,
                baseline=result.baseline,
                target=Target("ratio", 2.0) if kept == KEPT[-1] else None,
                note=(
                    f"MemoryReplayBuffer full at {kept:,} finished 10-frame jobs (each new job "
                    f"evicts the oldest); baseline: the same with {KEPT[0]} kept; CPU µs per "
                    "job, the whole 10-frame job included"
                ),
                details={
                    "ops_per_repeat": sizes.ops,
                    "ours_samples_us": result.ours_us,
                    "baseline_samples_us": result.baseline_us,
                },
            )
        )
    for scale in scales.values():
        await scale.jobs.aclose()
    return rows


async def memory_row(sizes: Sizes) -> Row:
    """Bytes traced per kept finished job, beside the buffer's own estimate."""
    count = sizes.memory_jobs
    buffer = MemoryReplayBuffer(max_total_frames=2**62, max_bytes=2**62)
    await fill(buffer, 10)  # warm up: one-time allocations (dict growth steps aside)
    gc.collect()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        await fill(buffer, count)
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    if buffer.kept_jobs != count + 10:
        raise RuntimeError(f"the buffer keeps {buffer.kept_jobs} jobs, not {count + 10}")
    estimate = buffer.kept_bytes / buffer.kept_jobs
    measured = (after - before) / count
    payload = sum(len(f.event) + len(f.data) for f in job_frames())
    await buffer.aclose()
    return Row(
        name="memory per kept finished job (10 frames)",
        unit="B",
        ours=measured,
        baseline=estimate,
        note=(
            f"tracemalloc bytes per job over {count:,} jobs of {FRAMES_PER_JOB} frames "
            f"({payload} characters of event+data per job); baseline: the buffer's estimate "
            "counted towards max_bytes"
        ),
        details={"jobs": count, "payload_chars_per_job": payload},
    )


async def jobs_scale_rows(settings: Settings) -> list[Row]:
    """The latency rows for 10, 1,000 and 100,000 kept jobs, then the memory row."""
    sizes = QUICK_SIZES if settings == QUICK else FULL_SIZES
    rows = await latency_rows(sizes)
    rows.append(await memory_row(sizes))
    return rows


if __name__ == "__main__":
    import asyncio
    import sys
    import time

    from benchmarks.report import format_table
    from benchmarks.settings import FULL

    chosen = QUICK if "--quick" in sys.argv[1:] else FULL
    started = time.process_time()
    table = asyncio.run(jobs_scale_rows(chosen))
    print(format_table(table))
    print(f"\nCPU {time.process_time() - started:.1f} s")
