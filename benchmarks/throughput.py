"""Rows 1-4: ``send`` and per-item streaming costs beside their raw baselines.

Each row is a :class:`Case`: two loops (ours, the baseline) over the same operations.
:mod:`benchmarks.profiling` runs the same loops under a profiler.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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


def send_case(
    settings: Settings, *, with_event: bool, own_emit: bool = False, prebuilt: bool = False
) -> Case:
    """Rows 1-2: ``await mediator.send(req)`` vs the same work written by hand.

    The mediator resolves a new handler per ``send`` (the seed's ``di.Container``, no scope:
    one instance per resolve), reads its ``events`` and resolves a new handler per event. The
    baseline does that by hand: ``await Handler().handle(req)``, and with an event
    ``for event in handler.events: await EventHandler().handle(event)``. With ``prebuilt``,
    the baseline is a prebuilt handler's ``handle`` (and a prebuilt event handler's) instead:
    the raw calls alone, without the handler objects the mediator must build.
    """
    mediator = model.request_mediator(with_events=with_event, own_emit=own_emit)
    send = mediator.send
    # Any: the rows share these loops over two request types.
    request: Any = (
        model.EventCommand(order_id="o-1") if with_event else model.PlainCommand(order_id="o-1")
    )
    command_handler: Any = model.EventCommandHandler if with_event else model.PlainCommandHandler
    event_handler = model.OrderPlacedHandler
    handle = command_handler().handle
    handle_event = event_handler().handle
    event = model.ORDER_PLACED

    async def ours(ops: int) -> int:
        start = cpu_ns()
        for _ in range(ops):
            await send(request)
        return cpu_ns() - start

    async def by_hand(ops: int) -> int:
        start = cpu_ns()
        for _ in range(ops):
            await command_handler().handle(request)
        return cpu_ns() - start

    async def by_hand_with_event(ops: int) -> int:
        start = cpu_ns()
        for _ in range(ops):
            handler = command_handler()
            await handler.handle(request)
            for emitted in handler.events:
                await event_handler().handle(emitted)
        return cpu_ns() - start

    async def prebuilt_calls(ops: int) -> int:
        start = cpu_ns()
        for _ in range(ops):
            await handle(request)
        return cpu_ns() - start

    async def prebuilt_calls_with_event(ops: int) -> int:
        start = cpu_ns()
        for _ in range(ops):
            await handle(request)
            await handle_event(event)
        return cpu_ns() - start

    if prebuilt:
        baseline = prebuilt_calls_with_event if with_event else prebuilt_calls
    else:
        baseline = by_hand_with_event if with_event else by_hand
    return Case(ours, baseline, settings.send_ops, settings.send_repeats, 1 if with_event else 0)


def stream_case(settings: Settings, *, with_events: bool, prebuilt: bool = False) -> Case:
    """Rows 3-4: one whole stream per repeat; ops = items per stream.

    Ours: ``async with mediator.stream(req)`` consumed with ``async for``, seed configuration.
    Baseline without events: a plain async generator over the same prebuilt items. With
    events, the same work by hand: the seed-shaped handler's own generator; after each item
    its ``events`` are taken, ``clear_events()`` is called and each event goes to a new
    instance of its handler (as the mediator resolves one per event). With ``prebuilt``: the
    plain generator, awaiting two prebuilt event handlers after each item (the raw calls
    alone: no events taken from the handler, no handler objects built).
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

    async def by_hand_with_events(ops: int) -> int:
        start = cpu_ns()
        handler = model.SeedStreamHandler()
        async for _ in handler.handle(request):
            first, second = handler.events
            handler.clear_events()
            await model.OrderProcessedHandler().handle(first)
            await model.OrderAnalyticsHandler().handle(second)
        return cpu_ns() - start

    async def prebuilt_calls_with_events(ops: int) -> int:
        start = cpu_ns()
        async for _ in model.plain_agen(items):
            await handle_first(first_event)
            await handle_second(second_event)
        return cpu_ns() - start

    if not with_events:
        chosen = baseline
    else:
        chosen = prebuilt_calls_with_events if prebuilt else by_hand_with_events
    return Case(ours, chosen, len(items), settings.stream_repeats, 2 if with_events else 0)


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


SAME_WORK_NOTE = (
    "info: the same ours beside that work written by hand (a new handler per call and per "
    "event, as di resolves without a scope; the handler's events read)"
)


async def send_no_events(settings: Settings) -> list[Row]:
    """Row 1: ``send``, no events; target ≤ 5x a raw ``await handler.handle(req)`` on a
    prebuilt handler (ARCHITECTURE §6). An info row compares with the same work by hand."""
    raw = send_case(settings, with_event=False, prebuilt=True)
    note = "baseline: await handler.handle(req) on a prebuilt handler"
    row = await _measure("send, no events", raw, Target("ratio", 5.0), note)
    case = send_case(settings, with_event=False)
    info = await _measure("send, no events (same work by hand)", case, None, SAME_WORK_NOTE)
    return [row, info]


async def send_one_event(settings: Settings) -> list[Row]:
    """Row 2: ``send`` whose handler emits one domain event with one handler; ≤ 5x the two
    prebuilt handlers' raw calls. An info row compares with the same work by hand."""
    raw = send_case(settings, with_event=True, prebuilt=True)
    note = "baseline: await handler.handle(req) + await event_handler.handle(event), prebuilt"
    row = await _measure("send, 1 domain event, 1 handler", raw, Target("ratio", 5.0), note)
    case = send_case(settings, with_event=True)
    info = await _measure("send, 1 event (same work by hand)", case, None, SAME_WORK_NOTE)
    return [row, info]


async def send_one_event_own_emit(settings: Settings) -> Row:
    """Info row: row 2 with an ``EventEmitter`` subclass that overrides ``emit`` (every event
    then goes through ``emit``); the price of the routing beside row 2's baseline."""
    case = send_case(settings, with_event=True, own_emit=True, prebuilt=True)
    note = "an EventEmitter subclass overriding emit (calls super().emit); baseline as row 2"
    return await _measure("send, 1 event, emitter's own emit", case, None, note)


async def stream_no_events(settings: Settings) -> Row:
    """Row 3: per-item cost of a stream without events; ≤ 3x the plain generator."""
    case = stream_case(settings, with_events=False)
    note = f"{case.ops} items per stream; µs per item = stream time / items"
    return await _measure("stream item, no events", case, Target("ratio", 3.0), note)


async def stream_two_events(settings: Settings) -> list[Row]:
    """Row 4: per-item cost with two domain events per item (seed configuration); ≤ 5x a
    plain generator awaiting two prebuilt event handlers after each item. An info row compares
    with the same work by hand."""
    case = stream_case(settings, with_events=True)
    note = (
        "before_item policy, concurrent_event_handle_enable=True, max 3 handlers; baseline: "
        "a plain generator awaiting two prebuilt event handlers after each item"
    )
    raw = stream_case(settings, with_events=True, prebuilt=True)
    row = await _measure("stream item, 2 events", raw, Target("ratio", 5.0), note)
    info = await _measure("stream item, 2 events (same work by hand)", case, None, SAME_WORK_NOTE)
    return [row, info]


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
