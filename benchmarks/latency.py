"""Row 5: time from ``stream()`` to the first item when events take 10 ms.

Under the ``concurrent`` policy an item is delivered at once and its events run in the
background, so the first item should arrive in well under a millisecond; under the default
``before_item`` policy it waits for its two 10 ms events (run concurrently: ≈ 10 ms).
Every stream is consumed to its end (which waits for all its events) and closed.
"""

from __future__ import annotations

import statistics
from collections.abc import Awaitable, Callable

from benchmarks import model
from benchmarks.report import Row, Target
from benchmarks.settings import Settings
from benchmarks.timing import now_ns, sample


def _stream_first_item(policy: str, items: list[model.ItemResult]) -> Callable[[], Awaitable[int]]:
    mediator = model.streaming_mediator(policy)
    request = model.SlowStream(items=items)

    async def run_once() -> int:
        start = now_ns()
        async with mediator.stream(request) as stream:
            await anext(stream)
            elapsed = now_ns() - start
            async for _ in stream:
                pass
        return elapsed

    return run_once


async def _plain_first_item(items: list[model.ItemResult]) -> int:
    start = now_ns()
    agen = model.plain_agen(items)
    try:
        await anext(agen)
        elapsed = now_ns() - start
        async for _ in agen:
            pass
    finally:
        await agen.aclose()
    return elapsed


async def first_item_rows(settings: Settings) -> list[Row]:
    """Row 5 (``concurrent`` policy) and its contrast (the default ``before_item``)."""
    items = model.make_items(settings.latency_items)
    runs = settings.latency_runs

    async def plain_once() -> int:
        return await _plain_first_item(items)

    rows: list[Row] = []
    for policy, name, target, note in (
        (
            "concurrent",
            "concurrent policy, first item latency",
            Target("ours", 1000.0, strict=True),
            "",
        ),
        (
            "before_item",
            "before_item policy, first item latency",
            None,
            "contrast: the first item waits for its two 10 ms events (≈ 10 ms expected)",
        ),
    ):
        baseline = await sample(plain_once, runs)
        before = model.events_handled()
        ours = await sample(_stream_first_item(policy, items), runs)
        expected = (runs + 1) * len(items) * 2  # one warmup stream, then ``runs``
        if model.events_handled() - before != expected:
            raise RuntimeError(
                f"{policy}: {model.events_handled() - before} events handled, expected {expected}"
            )
        rows.append(
            Row(
                name=name,
                unit="µs",
                ours=statistics.median(ours),
                baseline=statistics.median(baseline),
                target=target,
                note=note
                or f"median of {runs} streams of {len(items)} items, 2 events of 10 ms per item",
                details={"ours_samples_us": ours, "baseline_samples_us": baseline},
            )
        )
    return rows
