"""Rows 1-4: ``send`` and per-item streaming costs beside their raw baselines.

Each row is a :class:`Case`: two loops (ours, the baseline) over the same operations.
:mod:`benchmarks.profiling` runs the same loops under a profiler.
"""

from __future__ import annotations

from dataclasses import dataclass

import di

import cqrs
from benchmarks import model
from benchmarks.report import Row, Target
from benchmarks.settings import Settings
from benchmarks.timing import Loop, compare, cpu_ns
from cqrs.requests import bootstrap


@dataclass(frozen=True)
class Case:
    """Ours and its baseline, each a loop over ``ops`` operations."""

    ours: Loop
    baseline: Loop
    ops: int
    repeats: int
    events_per_op: int
    """Events each operation must hand to an event handler (checked before timing)."""

    async def verify(self) -> None:
        """Run each loop once and check that it handled every event it should have.

        Raises ``RuntimeError`` otherwise: a benchmark that silently skips work would report
        a meaningless time.
        """
        for label, loop in (("ours", self.ours), ("baseline", self.baseline)):
            before = model.events_handled()
            await loop(self.ops)
            handled = model.events_handled() - before
            if handled != self.ops * self.events_per_op:
                raise RuntimeError(
                    f"{label} handled {handled} events over {self.ops} operations, expected "
                    f"{self.ops * self.events_per_op}"
                )


def send_case(settings: Settings, *, with_event: bool, own_emit: bool = False) -> Case:
    """Rows 1-2: ``await mediator.send(req)`` vs the handler (and event handler) awaited by hand.

    Baseline: ``await handler.handle(req)`` on a prebuilt handler, plus
    ``await event_handler.handle(event)`` when the command emits an event.
    """
    mediator = model.request_mediator(with_events=with_event, own_emit=own_emit)
    send = mediator.send
    if with_event:
        request: model.PlainCommand | model.EventCommand = model.EventCommand(order_id="o-1")
    else:
        request = model.PlainCommand(order_id="o-1")
    handler = model.EventCommandHandler() if with_event else model.PlainCommandHandler()
    handle = handler.handle
    handle_event = model.OrderPlacedHandler().handle
    event = model.ORDER_PLACED

    async def ours(ops: int) -> int:
        start = cpu_ns()
        for _ in range(ops):
            await send(request)
        return cpu_ns() - start

    async def baseline(ops: int) -> int:
        start = cpu_ns()
        for _ in range(ops):
            await handle(request)
        return cpu_ns() - start

    async def baseline_with_event(ops: int) -> int:
        start = cpu_ns()
        for _ in range(ops):
            await handle(request)
            await handle_event(event)
        elapsed = cpu_ns() - start
        if isinstance(handler, model.EventCommandHandler):
            handler.reset()
        return elapsed

    return Case(
        ours,
        baseline_with_event if with_event else baseline,
        settings.send_ops,
        settings.send_repeats,
        1 if with_event else 0,
    )


def stream_case(settings: Settings, *, with_events: bool) -> Case:
    """Rows 3-4: one whole stream per repeat; ops = items per stream.

    Ours: ``async with mediator.stream(req)`` consumed with ``async for``, seed configuration.
    Baseline: a plain async generator over the same prebuilt items, awaiting the two event
    handlers directly after each item when the row has events.
    """
    mediator = model.streaming_mediator()
    items = model.make_items(settings.stream_items)
    request = model.SeedStream(items=items) if with_events else model.PlainStream(items=items)
    handle_first = model.OrderProcessedHandler().handle
    handle_second = model.OrderAnalyticsHandler().handle
    first_event, second_event = model.ORDER_PROCESSED, model.ORDER_ANALYTICS

    async def ours(ops: int) -> int:
        start = cpu_ns()
        async with mediator.stream(request) as stream:
            async for _ in stream:
                pass
        return cpu_ns() - start

    async def baseline(ops: int) -> int:
        start = cpu_ns()
        async for _ in model.plain_agen(items):
            pass
        return cpu_ns() - start

    async def baseline_with_events(ops: int) -> int:
        start = cpu_ns()
        async for _ in model.plain_agen(items):
            await handle_first(first_event)
            await handle_second(second_event)
        return cpu_ns() - start

    return Case(
        ours,
        baseline_with_events if with_events else baseline,
        len(items),
        settings.stream_repeats,
        2 if with_events else 0,
    )


async def _measure(name: str, case: Case, target: Target | None, note: str = "") -> Row:
    await case.verify()
    result = await compare(
        case.ours, case.baseline, ops=case.ops, repeats=case.repeats, warmup_ops=case.ops
    )
    return Row(
        name=name,
        unit="µs",
        ours=result.ours,
        baseline=result.baseline,
        target=target,
        note=note,
        details={
            "ops_per_repeat": case.ops,
            "ours_samples_us": result.ours_us,
            "baseline_samples_us": result.baseline_us,
            "ours_min_us": min(result.ours_us),
            "baseline_min_us": min(result.baseline_us),
        },
    )


async def send_no_events(settings: Settings) -> Row:
    """Row 1: ``send``, no events; target ≤ 5x the raw call."""
    case = send_case(settings, with_event=False)
    return await _measure("send, no events", case, Target("ratio", 5.0))


async def send_one_event(settings: Settings) -> Row:
    """Row 2: ``send`` whose handler emits one domain event with one handler; ≤ 5x the pair."""
    case = send_case(settings, with_event=True)
    return await _measure("send, 1 domain event, 1 handler", case, Target("ratio", 5.0))


async def send_one_event_own_emit(settings: Settings) -> Row:
    """Info row: row 2 with an ``EventEmitter`` subclass that overrides ``emit`` (every event
    then goes through ``emit``); the price of the routing beside row 2's baseline."""
    case = send_case(settings, with_event=True, own_emit=True)
    note = "an EventEmitter subclass overriding emit (calls super().emit); baseline as row 2"
    return await _measure("send, 1 event, emitter's own emit", case, None, note)


async def stream_no_events(settings: Settings) -> Row:
    """Row 3: per-item cost of a stream without events; ≤ 3x the plain generator."""
    case = stream_case(settings, with_events=False)
    note = f"{case.ops} items per stream; µs per item = stream time / items"
    return await _measure("stream item, no events", case, Target("ratio", 3.0), note)


async def stream_two_events(settings: Settings) -> Row:
    """Row 4: per-item cost with two domain events per item (seed configuration); ≤ 5x."""
    case = stream_case(settings, with_events=True)
    note = "before_item policy, concurrent_event_handle_enable=True, max 3 handlers"
    return await _measure("stream item, 2 events", case, Target("ratio", 5.0), note)


def bootstrap_case(settings: Settings) -> Case:
    """The seed's FastAPI pattern bootstraps on every request: ``bootstrap_streaming`` of a
    configuration already seen, beside building the same two maps by hand (``bind`` calls)."""
    container = di.Container()

    def hand_built_maps() -> None:
        request_map = cqrs.RequestMap()
        model.stream_commands(request_map)
        event_map = cqrs.EventMap()
        model.stream_events(event_map)

    async def ours(ops: int) -> int:
        start = cpu_ns()
        for _ in range(ops):
            bootstrap.bootstrap_streaming(
                di_container=container,
                commands_mapper=model.stream_commands,
                domain_events_mapper=model.stream_events,
                max_concurrent_event_handlers=3,
                concurrent_event_handle_enable=True,
            )
        return cpu_ns() - start

    async def baseline(ops: int) -> int:
        start = cpu_ns()
        for _ in range(ops):
            hand_built_maps()
        return cpu_ns() - start

    ops = max(100, settings.send_ops // 20)
    return Case(ours, baseline, ops, settings.send_repeats, 0)


async def bootstrap_again(settings: Settings) -> Row:
    """Row 5: ``bootstrap_streaming`` of a configuration already seen; ≤ 2x the maps by hand."""
    note = "3 requests, 4 events; di.Container; binding checks cached per (message, handler)"
    return await _measure(
        "bootstrap_streaming, seen config", bootstrap_case(settings), Target("ratio", 2.0), note
    )
