"""Peak traced memory while streaming items with two domain events each (no target).

Measured with ``tracemalloc`` after a warmup stream (so that one-time caches such as the DI
plans are not counted): the peak is relative to the traced memory just before the stream
starts. The baseline is the plain async generator awaiting both event handlers directly.
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Awaitable, Callable

import cqrs
from benchmarks import model
from benchmarks.report import Row
from benchmarks.settings import Settings


async def _peak_kib(run: Callable[[], Awaitable[None]]) -> float:
    await run()
    gc.collect()
    tracemalloc.start()
    try:
        start, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        await run()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return (peak - start) / 1024


async def memory_rows(settings: Settings) -> list[Row]:
    """Peak KiB for the ``before_item`` (seed) and the ``concurrent`` policies."""
    items = model.make_items(settings.memory_items)
    request = model.SeedStream(items=items)
    first, second = model.OrderProcessedHandler(), model.OrderAnalyticsHandler()

    async def baseline() -> None:
        async for _ in model.plain_agen(items):
            await first.handle(model.ORDER_PROCESSED)
            await second.handle(model.ORDER_ANALYTICS)

    base_kib = await _peak_kib(baseline)
    rows: list[Row] = []
    for policy in ("before_item", "concurrent"):
        mediator = model.streaming_mediator(policy)

        async def ours(mediator: cqrs.StreamingRequestMediator = mediator) -> None:
            async with mediator.stream(request) as stream:
                async for _ in stream:
                    pass

        rows.append(
            Row(
                name=f"memory: stream, 2 events, {policy}",
                unit="KiB",
                ours=await _peak_kib(ours),
                baseline=base_kib,
                note=f"peak tracemalloc during one stream of {len(items)} items, minus the memory "
                "traced before it",
            )
        )
    return rows
