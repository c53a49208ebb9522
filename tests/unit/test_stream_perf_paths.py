"""The fast paths of streams and of ``send`` keep every promise of the general ones.

A stream's items come from one generator per stream (what ``__aiter__`` returns), which runs
the events of each item in its own frame while each event has one handler. These tests pin
what that must not change: a kept stream can be iterated again after a ``break``, dropping
it closes it at once, ``aclose`` works before, between and after items, the loop's
async-generator hooks are left as they were, changes made while a stream runs (a handler
bound, ``emit`` patched, a publisher or emitter replaced) apply from the next item, a handler
that cannot be built is named, and the events of each delivered item run exactly once.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

import cqrs
from cqrs.events import SequentialPublisher
from tests.conftest import other_tasks
from tests.support import (
    HoldsEvents,
    Ping,
    collect,
    make_mediator,
    make_streaming,
    settle,
    wait_until_async,
)

LOG: list[str] = []


@pytest.fixture(autouse=True)
def _clear() -> None:
    LOG.clear()


class Happened(cqrs.DomainEvent, frozen=True):
    n: int


class Noted(cqrs.DomainEvent, frozen=True):
    n: int


class OnHappened(cqrs.EventHandler[Happened]):
    async def handle(self, event: Happened) -> None:
        LOG.append(f"event {event.n}")


class AlsoOnHappened(cqrs.EventHandler[Happened]):
    async def handle(self, event: Happened) -> None:
        LOG.append(f"also {event.n}")


class OnNoted(cqrs.EventHandler[Noted]):
    async def handle(self, event: Noted) -> None:
        LOG.append(f"noted {event.n}")


class Item(cqrs.Response):
    n: int


class Emitting(HoldsEvents, cqrs.StreamingRequestHandler[Ping, Item]):
    """Per item: two events (one handler each), then the item."""

    async def handle(self, request: Ping) -> AsyncIterator[Item]:
        try:
            for n in range(request.n):
                self._events.append(Happened(n=n))
                self._events.append(Noted(n=n))
                LOG.append(f"yield {n}")
                yield Item(n=n)
        finally:
            LOG.append("finally")


class Silent(cqrs.StreamingRequestHandler[Ping, Item]):
    """Keeps the base ``events``: cannot emit events."""

    def clear_events(self) -> None:
        pass

    async def handle(self, request: Ping) -> AsyncIterator[Item]:
        try:
            for n in range(request.n):
                LOG.append(f"yield {n}")
                yield Item(n=n)
        finally:
            LOG.append("finally")


class PerItem:
    """A plain middleware: on a stream it runs once per item."""

    async def __call__(self, request: Any, handle: Any) -> Any:
        return await handle(request)


EVENTS: dict[type[Any], list[type[Any]]] = {Happened: [OnHappened], Noted: [OnNoted]}

# The three ways a stream runs its items: the handler's items as they are, each item after
# its events (in the stream's own frame), and through a middleware layer / the concurrent
# pipeline.
MODES = ["silent", "events", "middleware", "concurrent"]


def _streaming(mode: str, **kwargs: Any) -> cqrs.StreamingRequestMediator:
    handler = Silent if mode == "silent" else Emitting
    if mode == "middleware":
        kwargs["middlewares"] = [PerItem()]
    if mode == "concurrent":
        kwargs["stream_events"] = "concurrent"
    return make_streaming({Ping: handler}, EVENTS, **kwargs)


def _event_lines(n: int) -> list[str]:
    return [f"event {n}", f"noted {n}"]


@pytest.mark.parametrize("mode", MODES)
async def test_a_kept_stream_goes_on_after_a_break_and_runs_each_items_events_once(
    mode: str,
) -> None:
    stream = _streaming(mode).stream(Ping(n=4))
    seen = []
    async for item in stream:
        seen.append(item.n)
        if item.n == 1:
            break
    assert "finally" not in LOG
    assert not stream.closed
    async for item in stream:
        seen.append(item.n)
    assert seen == [0, 1, 2, 3]
    assert stream.closed
    assert LOG.count("finally") == 1
    if mode != "silent":
        for n in range(4):
            assert LOG.count(f"event {n}") == 1
            assert LOG.count(f"noted {n}") == 1
    if mode in ("events", "middleware"):
        # before_item: an item's events are done before the next item is produced.
        assert LOG.index("event 1") < LOG.index("yield 2")
        assert LOG.index("noted 1") < LOG.index("yield 2")


@pytest.mark.parametrize("mode", MODES)
async def test_dropping_a_kept_stream_after_a_break_closes_it_at_once(mode: str) -> None:
    start = len(asyncio.all_tasks())
    stream = _streaming(mode).stream(Ping(n=5))
    async for item in stream:
        if item.n == 1:
            break
    assert "finally" not in LOG
    del stream
    assert LOG[-1] == "finally"
    assert LOG.count("finally") == 1
    await settle()
    assert len(asyncio.all_tasks()) == start


@pytest.mark.parametrize("mode", MODES)
async def test_anext_and_async_for_share_one_sequence(mode: str) -> None:
    stream = _streaming(mode).stream(Ping(n=4))
    first = await anext(stream)
    rest = [item.n async for item in stream]
    assert [first.n, *rest] == [0, 1, 2, 3]
    with pytest.raises(StopAsyncIteration):
        await anext(stream)
    assert LOG.count("finally") == 1


@pytest.mark.parametrize("mode", MODES)
async def test_aclose_before_the_first_item_starts_nothing(mode: str) -> None:
    stream = _streaming(mode).stream(Ping(n=3))
    await stream.aclose()
    assert stream.closed
    assert await collect(stream) == []
    assert LOG == []


@pytest.mark.parametrize("mode", MODES)
async def test_aclose_between_items_closes_the_handler_and_leaves_no_task(mode: str) -> None:
    start = len(asyncio.all_tasks())
    stream = _streaming(mode).stream(Ping(n=5))
    assert (await anext(stream)).n == 0
    assert (await anext(stream)).n == 1
    await stream.aclose()
    assert stream.closed
    assert LOG[-1] == "finally"
    with pytest.raises(StopAsyncIteration):
        await anext(stream)
    await stream.aclose()
    assert LOG.count("finally") == 1
    assert len(asyncio.all_tasks()) == start


@pytest.mark.parametrize("mode", MODES)
async def test_streams_leave_the_event_loops_async_generator_hooks_as_they_were(
    mode: str,
) -> None:
    before = sys.get_asyncgen_hooks()
    assert before.finalizer is not None  # asyncio's own
    stream = _streaming(mode).stream(Ping(n=3))
    iterator = aiter(stream)
    assert sys.get_asyncgen_hooks() == before
    assert (await anext(iterator)).n == 0
    assert sys.get_asyncgen_hooks() == before
    assert [item.n async for item in stream] == [1, 2]
    assert sys.get_asyncgen_hooks() == before


@pytest.mark.parametrize("mode", MODES)
async def test_the_consumer_failing_with_the_stream_kept_closes_it_when_dropped(mode: str) -> None:
    stream = _streaming(mode).stream(Ping(n=5))
    with pytest.raises(ZeroDivisionError):
        async for item in stream:
            if item.n == 2:
                raise ZeroDivisionError("the consumer failed")
    assert "finally" not in LOG
    del stream
    assert LOG[-1] == "finally"


GATE: list[asyncio.Event] = []


class WaitsForGate(cqrs.EventHandler[Noted]):
    async def handle(self, event: Noted) -> None:
        LOG.append(f"waiting {event.n}")
        try:
            await GATE[0].wait()
        finally:
            await asyncio.sleep(0)
            LOG.append(f"waited {event.n}")


@pytest.mark.parametrize("mode", ["events", "middleware"])
async def test_aclose_from_another_task_while_an_items_events_run(mode: str) -> None:
    # The consumer's task is inside the stream (an event handler of item 0 waits): closing
    # from elsewhere closes the handler at once and returns; the consumer then gets the item
    # whose events were running, and the end.
    GATE[:] = [asyncio.Event()]
    kwargs: dict[str, Any] = {"middlewares": [PerItem()]} if mode == "middleware" else {}
    m = make_streaming({Ping: Emitting}, {Happened: [OnHappened], Noted: [WaitsForGate]}, **kwargs)
    stream = m.stream(Ping(n=3))
    got: list[int] = []

    async def consume() -> None:
        async for item in stream:
            got.append(item.n)

    start = len(asyncio.all_tasks())
    task = asyncio.create_task(consume())
    await wait_until_async(lambda: "waiting 0" in LOG, "item 0's event handler waits")
    await stream.aclose()
    assert stream.closed
    assert LOG[-1] == "finally"
    GATE[0].set()
    await task
    assert got == [0]
    assert LOG == ["yield 0", "event 0", "waiting 0", "finally", "waited 0"]
    await settle()
    assert len(asyncio.all_tasks()) == start


class EventsFail(HoldsEvents, cqrs.StreamingRequestHandler[Ping, Item]):
    """Its ``events`` property raises on the second item."""

    async def handle(self, request: Ping) -> AsyncIterator[Item]:
        try:
            for n in range(request.n):
                self._events.append(Happened(n=n))
                yield Item(n=n)
        finally:
            LOG.append("finally")

    @property
    def events(self) -> list[cqrs.Event]:
        if self._events and self._events[0] == Happened(n=1):
            raise LookupError("events cannot be read")
        return self._events.copy()


async def test_a_handler_whose_events_cannot_be_read_fails_the_stream_and_is_closed() -> None:
    stream = make_streaming({Ping: EventsFail}, EVENTS).stream(Ping(n=4))
    seen = []
    with pytest.raises(LookupError, match="events cannot be read"):
        async for item in stream:
            seen.append(item.n)
    assert seen == [0]
    assert stream.closed
    # Not a failure of the handler's own items: what it emitted is not processed again.
    assert LOG == ["event 0", "finally"]


# -- changes made while a stream runs apply from the next item -----------------------------------


async def test_a_handler_bound_while_a_stream_runs_takes_the_next_items_events() -> None:
    m = make_streaming({Ping: Emitting}, EVENTS)
    emitter = m.event_processor.event_emitter
    async with m.stream(Ping(n=4)) as stream:
        async for item in stream:
            if item.n == 1:
                emitter.event_map.bind(Happened, AlsoOnHappened)
    assert [line for line in LOG if line.startswith(("event", "also"))] == [
        "event 0",
        "event 1",
        "event 2",
        "also 2",
        "event 3",
        "also 3",
    ]


async def test_an_emit_patched_while_a_stream_runs_sees_the_next_items_events() -> None:
    m = make_streaming({Ping: Emitting}, EVENTS)
    emitter = m.event_processor.event_emitter
    original = emitter.emit
    seen: list[str] = []

    async def traced(event: cqrs.IEvent) -> Sequence[cqrs.IEvent]:
        seen.append(f"{type(event).__name__} {event.n}")  # type: ignore[attr-defined]
        return await original(event)

    async with m.stream(Ping(n=5)) as stream:
        async for item in stream:
            if item.n == 1:
                emitter.emit = traced  # type: ignore[method-assign]
            if item.n == 3:
                del emitter.emit
    assert seen == ["Happened 2", "Noted 2", "Happened 3", "Noted 3"]
    for n in range(5):
        assert LOG.count(f"event {n}") == 1
        assert LOG.count(f"noted {n}") == 1


async def test_a_publisher_or_emitter_replaced_while_a_stream_runs_applies_next_item(
    caplog: pytest.LogCaptureFixture,
) -> None:
    batches: list[int] = []

    class Counting:
        async def publish(self, jobs: Sequence[Any], execute: Any) -> None:
            batches.append(len(jobs))
            await SequentialPublisher().publish(jobs, execute)

    m = make_streaming({Ping: Emitting}, EVENTS)
    processor = m.event_processor
    emitter = processor.event_emitter
    with caplog.at_level(logging.WARNING, logger="cqrs"):
        async with m.stream(Ping(n=6)) as stream:
            async for item in stream:
                if item.n == 1:
                    processor.publisher = Counting()
                if item.n == 2:
                    processor.publisher = SequentialPublisher()
                if item.n == 3:
                    processor.event_emitter = None
                if item.n == 4:
                    processor.event_emitter = emitter
    # Item 2's batch through the counting publisher; item 4's events dropped, with a warning.
    assert batches == [2]
    for n in (0, 1, 2, 3, 5):
        assert LOG.count(f"event {n}") == 1
    assert "event 4" not in LOG
    dropped = [r for r in caplog.records if "no event emitter" in r.getMessage()]
    assert len(dropped) == 1


# -- a handler that cannot be built is named, on the fast paths too ------------------------------


class Unreachable:
    def __init__(self) -> None:
        raise ConnectionError("the service is down")


class NeedsService(cqrs.EventHandler[Noted]):
    def __init__(self, service: Unreachable) -> None:
        self.service = service

    async def handle(self, event: Noted) -> None:
        LOG.append("never")


class EmitsNoted(HoldsEvents, cqrs.RequestHandler[Ping, None]):
    async def handle(self, request: Ping) -> None:
        self._events.append(Noted(n=request.n))


NOTE = "while resolving NeedsService for event Noted"


async def test_send_names_an_event_handler_that_cannot_be_built() -> None:
    m = make_mediator({Ping: EmitsNoted}, {Noted: [NeedsService]}, event_failure_policy="raise")
    for n in range(3):  # the first batch plans the fast path; the next ones take it
        with pytest.raises(ConnectionError) as caught:
            await m.send(Ping(n=n))
        assert NOTE in caught.value.__notes__


async def test_send_logs_an_event_handler_that_cannot_be_built(
    caplog: pytest.LogCaptureFixture,
) -> None:
    m = make_mediator({Ping: EmitsNoted}, {Noted: [NeedsService]})
    with caplog.at_level(logging.ERROR, logger="cqrs"):
        for n in range(3):
            await m.send(Ping(n=n))
    failures = [r for r in caplog.records if r.exc_info is not None]
    assert len(failures) == 3
    assert all(NOTE in getattr(r.exc_info[1], "__notes__", []) for r in failures)  # type: ignore[index]


async def test_a_stream_names_an_event_handler_that_cannot_be_built() -> None:
    events = {Happened: [OnHappened], Noted: [NeedsService]}
    m = make_streaming({Ping: Emitting}, events, event_failure_policy="raise")
    for _ in range(3):
        stream = m.stream(Ping(n=3))
        with pytest.raises(ConnectionError) as caught:
            await collect(stream)
        assert NOTE in caught.value.__notes__
        assert stream.closed
    # Each stream failed on its first item, after that item's other event ran.
    assert LOG == ["yield 0", "event 0", "finally"] * 3


async def test_a_stream_logs_an_event_handler_that_cannot_be_built_and_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    events = {Happened: [OnHappened], Noted: [NeedsService]}
    m = make_streaming({Ping: Emitting}, events)
    with caplog.at_level(logging.ERROR, logger="cqrs"):
        assert [item.n for item in await collect(m.stream(Ping(n=4)))] == [0, 1, 2, 3]
    failures = [r for r in caplog.records if r.exc_info is not None]
    assert len(failures) == 4
    assert all(NOTE in getattr(r.exc_info[1], "__notes__", []) for r in failures)  # type: ignore[index]
    assert [line for line in LOG if line.startswith("event")] == [f"event {n}" for n in range(4)]


# -- nothing is left behind ---------------------------------------------------------------------


async def test_no_task_is_left_after_many_streams_with_events() -> None:
    start = other_tasks()
    m = make_streaming({Ping: Emitting}, EVENTS, max_concurrent_event_handlers=3)
    for _ in range(20):
        assert len(await collect(m.stream(Ping(n=3)))) == 3
    for _ in range(20):
        async for _item in m.stream(Ping(n=3)):
            break
    await settle()
    assert other_tasks() == start
    assert LOG.count("finally") == 40


# -- the event map's change count: an EventMap, a subclass, a mapping that does not count -------


class EmitsHappened(HoldsEvents, cqrs.RequestHandler[Ping, None]):
    async def handle(self, request: Ping) -> None:
        self._events.append(Happened(n=request.n))


class CountingMap(cqrs.EventMap):
    """An ``EventMap`` subclass: its changes are read as an attribute."""


def _over(event_map: Any) -> cqrs.RequestMediator:
    import di

    from cqrs.container.di import DIContainer
    from cqrs.events import EventEmitter
    from cqrs.requests import bootstrap

    container = DIContainer()
    container.attach_external_container(di.Container())

    def commands(mapper: cqrs.RequestMap) -> None:
        mapper.bind(Ping, EmitsHappened)

    emitter = EventEmitter(event_map, container)
    return bootstrap.setup_mediator(emitter, container, [], commands_mapper=commands)


@pytest.mark.parametrize("kind", ["EventMap", "subclass"])
async def test_a_handler_bound_between_sends_runs_from_the_next_send(kind: str) -> None:
    event_map = cqrs.EventMap() if kind == "EventMap" else CountingMap()
    assert event_map.changes == 0  # nothing bound yet: compiled targets read 0
    m = _over(event_map)
    await m.send(Ping(n=0))  # nothing bound: skipped (with a warning)
    event_map.bind(Happened, OnHappened)
    for n in (1, 2):
        await m.send(Ping(n=n))
    event_map.bind(Happened, AlsoOnHappened)
    for n in (3, 4):
        await m.send(Ping(n=n))
    assert LOG == ["event 1", "event 2", "event 3", "also 3", "event 4", "also 4"]


async def test_a_mapping_that_does_not_count_changes_is_compiled_once() -> None:
    # A plain dict has no change count: what was compiled at the first event stays (as the
    # emitter always did for such a mapping).
    event_map: dict[type[Any], list[type[Any]]] = {Happened: [OnHappened]}
    m = _over(event_map)
    for n in range(3):
        await m.send(Ping(n=n))
    event_map[Happened].append(AlsoOnHappened)
    await m.send(Ping(n=3))
    assert LOG == ["event 0", "event 1", "event 2", "event 3"]
