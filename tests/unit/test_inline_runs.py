"""The fast paths run exactly what the general ones run.

With a stock emitter under a stock publisher, the emitter runs a batch of events itself
(``EventEmitter.run_events``) instead of making one job per handler. The differential tests
run the same batches through it and through the general job path (a publisher the processor
does not know as stock, delegating to the stock one) and assert the same handlers ran, in
the same order, with the same failures. The other tests cover the per-call checks that the
fast paths of ``send`` and of streams replace.
"""

from __future__ import annotations

import asyncio
import logging
import typing
from collections.abc import AsyncIterator, Sequence
from typing import Any
from unittest import mock

import pytest

import cqrs
from cqrs.events import ConcurrentPublisher, EventPublisher, SequentialPublisher
from cqrs.message_brokers import MessageBroker
from tests.support import HoldsEvents, Ping, collect, make_mediator, make_streaming

LOG: list[str] = []


@pytest.fixture(autouse=True)
def _clear() -> None:
    LOG.clear()


class Ev(cqrs.DomainEvent, frozen=True):
    """``wait``: the handler awaits once (so that a concurrent publisher starts helpers)."""

    n: int
    wait: bool = False


class A(Ev, frozen=True):
    """Two handlers."""


class B(Ev, frozen=True):
    """One handler that emits a ``Later`` follow-up."""


class C(Ev, frozen=True):
    """One handler that fails."""


class D(Ev, frozen=True):
    """One handler."""


class Later(Ev, frozen=True):
    """A follow-up."""


class Unbound(Ev, frozen=True):
    """No handler."""


class Note(cqrs.NotificationEvent[dict[str, int]], frozen=True):
    pass


async def _record(name: str, event: Ev) -> None:
    LOG.append(f"{name} {event.n} start")
    if event.wait:
        await asyncio.sleep(0)
    LOG.append(f"{name} {event.n} end")


class OnA1(cqrs.EventHandler[A]):
    async def handle(self, event: A) -> None:
        await _record("a1", event)


class OnA2(cqrs.EventHandler[A]):
    async def handle(self, event: A) -> None:
        await _record("a2", event)


class OnB(HoldsEvents, cqrs.EventHandler[B]):
    async def handle(self, event: B) -> None:
        await _record("b", event)
        self._events.append(Later(n=event.n * 10, wait=event.wait))


class FailsC(cqrs.EventHandler[C]):
    async def handle(self, event: C) -> None:
        await _record("c", event)
        raise ValueError(f"c {event.n} failed")


class OnD(cqrs.EventHandler[D]):
    async def handle(self, event: D) -> None:
        await _record("d", event)


class OnLater(cqrs.EventHandler[Later]):
    async def handle(self, event: Later) -> None:
        await _record("later", event)


EVENT_HANDLERS: dict[type[Any], list[type[Any]]] = {
    A: [OnA1, OnA2],
    B: [OnB],
    C: [FailsC],
    D: [OnD],
    Later: [OnLater],
}

BATCHES: dict[str, list[cqrs.Event]] = {
    "one job": [D(n=1)],
    "one job, follow-up": [B(n=1)],
    "one job, fails": [C(n=1)],
    "solo handlers": [D(n=1), D(n=2), B(n=3), D(n=4)],
    # One handler each, then an event that is not: the rest of the batch after it.
    "solo, then two handlers": [D(n=1), D(n=2), A(n=3), D(n=4)],
    "solo, then a follow-up": [D(n=1), B(n=2), D(n=3)],
    "solo, then a failure": [D(n=1), C(n=2), D(n=3)],
    "solo, then a publish": [D(n=1), Note(event_name="note", payload={"n": 2}), D(n=3)],
    "solo, then unbound": [D(n=1), Unbound(n=2), D(n=3)],
    "mixed": [
        A(n=1),
        B(n=2),
        Note(event_name="note", payload={"n": 3}),
        C(n=4),
        Unbound(n=5),
        D(n=6),
        B(n=7),
    ],
}

WAITS = {
    "none": lambda i: False,
    "first": lambda i: i == 0,
    "second": lambda i: i == 1,
    "all": lambda i: True,
}


def _batch(name: str, wait: str) -> list[cqrs.Event]:
    chosen = WAITS[wait]
    return [
        e.model_copy(update={"wait": chosen(i)}) if isinstance(e, Ev) else e
        for i, e in enumerate(BATCHES[name])
    ]


class Emits(cqrs.RequestHandler[Ping, None]):
    batch: typing.ClassVar[list[cqrs.Event]] = []

    @property
    def events(self) -> list[cqrs.Event]:
        return list(Emits.batch)

    async def handle(self, request: Ping) -> None:
        LOG.append("command")


class Item(cqrs.Response):
    n: int


class StreamsBatches(HoldsEvents, cqrs.StreamingRequestHandler[Ping, Item]):
    async def handle(self, request: Ping) -> AsyncIterator[Item]:
        for n in range(request.n):
            self._events.extend(Emits.batch)
            LOG.append(f"yield {n}")
            yield Item(n=n)


class Recording(MessageBroker):
    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send_message(self, message: Any) -> None:
        LOG.append(f"publish {message.message_name}")
        self.sent.append(message.message_name)


class Delegating:
    """A publisher the processor does not know as stock: events then go through the
    general job path, scheduled by the stock publisher it wraps."""

    def __init__(self, inner: EventPublisher) -> None:
        self.inner = inner

    async def publish(self, jobs: Sequence[Any], execute: Any) -> None:
        await self.inner.publish(jobs, execute)


def _stock(limit: int) -> EventPublisher:
    return ConcurrentPublisher(limit) if limit > 1 else SequentialPublisher()


async def _outcome(run: typing.Callable[[], typing.Awaitable[object]]) -> tuple[Any, ...]:
    LOG.clear()
    failures: list[str] = []
    try:
        await run()
    except Exception as exc:
        group = exc.exceptions if isinstance(exc, ExceptionGroup) else (exc,)
        failures = sorted(f"{type(e).__name__}: {e}" for e in group)
    return (tuple(LOG), tuple(failures))


@pytest.mark.parametrize("limit", [1, 3])
@pytest.mark.parametrize("policy", ["log", "raise"])
@pytest.mark.parametrize("wait", list(WAITS))
@pytest.mark.parametrize("batch", list(BATCHES))
async def test_send_runs_a_batch_as_the_stock_publisher_runs_its_jobs(
    batch: str, wait: str, policy: str, limit: int
) -> None:
    Emits.batch = _batch(batch, wait)
    outcomes = []
    for publisher in (_stock(limit), Delegating(_stock(limit))):
        m = make_mediator(
            {Ping: Emits},
            EVENT_HANDLERS,
            message_broker=Recording(),
            event_failure_policy=policy,
            concurrent_event_handle_enable=limit > 1,
            max_concurrent_event_handlers=limit,
            event_publisher=publisher,
        )
        # The first batch of a mediator plans how it runs events; later ones take the plan
        # (one event with one handler: run in send's own frame).
        for _ in range(3):
            outcomes.append(await _outcome(lambda m=m: m.send(Ping())))
    inline, general = outcomes[:3], outcomes[3:]
    assert inline == general
    assert inline[0] == inline[1] == inline[2]
    log, failures = inline[2]
    # Every handler ran exactly once for each of its events: two log lines per run.
    assert sum(line.endswith(" end") for line in log) == _expected_runs(Emits.batch)
    assert sum(line.startswith("publish") for line in log) == sum(
        isinstance(e, Note) for e in Emits.batch
    )
    assert failures == (_expected_failures(Emits.batch) if policy == "raise" else ())


def _expected_runs(batch: list[cqrs.Event]) -> int:
    """Handler runs for one batch: each bound handler once per event, plus B's follow-up."""
    return sum(
        len(EVENT_HANDLERS.get(type(e), [])) + (1 if isinstance(e, B) else 0)
        for e in batch
        if isinstance(e, Ev)
    )


def _expected_failures(batch: list[cqrs.Event]) -> tuple[str, ...]:
    return tuple(sorted(f"ValueError: c {e.n} failed" for e in batch if isinstance(e, C)))


@pytest.mark.parametrize("limit", [1, 3])
@pytest.mark.parametrize("policy", ["log", "raise"])
@pytest.mark.parametrize("wait", list(WAITS))
@pytest.mark.parametrize("batch", list(BATCHES))
async def test_a_before_item_stream_runs_each_batch_as_the_stock_publisher_does(
    batch: str, wait: str, policy: str, limit: int
) -> None:
    # The stream runs a batch of events whose handlers are one per event in its own frame and
    # hands the rest over where one is not, waits, fails or emits: the same runs, in the
    # same order, with the same failures, as the stock publisher through the job path.
    Emits.batch = _batch(batch, wait)
    outcomes = []
    for publisher in (_stock(limit), Delegating(_stock(limit))):
        m = make_streaming(
            {Ping: StreamsBatches},
            EVENT_HANDLERS,
            message_broker=Recording(),
            event_failure_policy=policy,
            concurrent_event_handle_enable=limit > 1,
            max_concurrent_event_handlers=limit,
            event_publisher=publisher,
        )
        outcomes.append(await _outcome(lambda m=m: collect(m.stream(Ping(n=2)))))
    inline, general = outcomes
    assert inline == general
    log, failures = inline
    runs = _expected_runs(Emits.batch)
    publishes = sum(isinstance(e, Note) for e in Emits.batch)
    if policy == "raise" and _expected_failures(Emits.batch):
        # The first item's events fail: the stream raises before delivering it.
        assert failures == _expected_failures(Emits.batch)
        assert "yield 1" not in log
        assert sum(line.endswith(" end") for line in log) == runs
        return
    assert failures == ()
    # Each item's events (and their follow-ups) are done before the next item.
    second = log.index("yield 1")
    assert sum(line.endswith(" end") for line in log[:second]) == runs
    assert sum(line.endswith(" end") for line in log) == 2 * runs
    assert sum(line.startswith("publish") for line in log) == 2 * publishes


@pytest.mark.parametrize("limit", [1, 3])
@pytest.mark.parametrize("size", [63, 64, 65, 300])
async def test_a_stream_item_with_a_long_batch_lets_other_tasks_run_as_send_does(
    size: int, limit: int
) -> None:
    SeesTicks.ticks[0] = 0
    Emits.batch = [D(n=i) for i in range(size)]
    orders = []
    for publisher in (_stock(limit), Delegating(_stock(limit))):
        m = make_streaming(
            {Ping: StreamsBatches},
            {D: [SeesTicks]},
            concurrent_event_handle_enable=limit > 1,
            max_concurrent_event_handlers=limit,
            event_publisher=publisher,
        )

        async def ticker() -> None:
            while True:
                SeesTicks.ticks[0] += 1
                await asyncio.sleep(0)

        LOG.clear()
        beside = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        try:
            assert len(await collect(m.stream(Ping(n=1)))) == 1
        finally:
            beside.cancel()
            await asyncio.gather(beside, return_exceptions=True)
        seen = [int(x) for x in LOG[1:]]
        assert len(seen) == size
        # The loop ran at least once every 64 handlers, and not before the 64th.
        assert seen[-1] - seen[0] >= size // 64
        if size < 64:
            assert seen[-1] == seen[0]
        orders.append([x - seen[0] for x in seen])
    assert orders[0] == orders[1]


# -- a job that waits hands the rest of the batch to helper tasks -------------------------------


class Peak(cqrs.EventHandler[D]):
    running: typing.ClassVar[list[int]] = [0, 0]

    async def handle(self, event: D) -> None:
        Peak.running[0] += 1
        Peak.running[1] = max(Peak.running)
        await asyncio.sleep(0.001)
        Peak.running[0] -= 1
        LOG.append(f"peak {event.n}")


@pytest.mark.parametrize("limit", [1, 2, 3, 5])
async def test_one_handler_per_event_still_runs_up_to_the_limit_at_once(limit: int) -> None:
    Peak.running[:] = [0, 0]
    Emits.batch = [D(n=i) for i in range(6)]
    m = make_mediator(
        {Ping: Emits},
        {D: [Peak]},
        concurrent_event_handle_enable=limit > 1,
        max_concurrent_event_handlers=limit,
    )
    await m.send(Ping())
    assert Peak.running == [0, min(limit, 6)]
    assert sorted(LOG) == sorted(["command", *(f"peak {i}" for i in range(6))])


# -- a long batch of handlers that never wait lets the event loop run ---------------------------


class SeesTicks(cqrs.EventHandler[D]):
    ticks: typing.ClassVar[list[int]] = [0]

    async def handle(self, event: D) -> None:
        LOG.append(str(SeesTicks.ticks[0]))


@pytest.mark.parametrize("limit", [1, 3])
async def test_a_long_batch_of_handlers_that_never_wait_lets_other_tasks_run(limit: int) -> None:
    SeesTicks.ticks[0] = 0
    Emits.batch = [D(n=i) for i in range(300)]
    m = make_mediator(
        {Ping: Emits},
        {D: [SeesTicks]},
        concurrent_event_handle_enable=limit > 1,
        max_concurrent_event_handlers=limit,
    )

    async def ticker() -> None:
        while True:
            SeesTicks.ticks[0] += 1
            await asyncio.sleep(0)

    beside = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    try:
        await m.send(Ping())
    finally:
        beside.cancel()
        await asyncio.gather(beside, return_exceptions=True)
    seen = [int(x) for x in LOG[1:]]
    assert len(seen) == 300
    # The loop ran between handlers: at least once every 64 handlers.
    assert seen[-1] - seen[0] >= 300 // 64


# -- send: middleware switched on after the first calls, proxies, a publisher set later --------


async def test_debug_switched_on_after_the_first_sends_brings_the_logging_middleware_in(
    caplog: pytest.LogCaptureFixture,
) -> None:
    m = make_mediator({Ping: Emits})
    Emits.batch = []
    logger = logging.getLogger("cqrs")
    logger.setLevel(logging.INFO)
    try:
        with caplog.at_level(logging.DEBUG, logger="cqrs"):
            logger.setLevel(logging.INFO)
            for _ in range(3):
                await m.send(Ping())
            assert [r for r in caplog.records if r.getMessage() == "Handle Ping request"] == []
            logger.setLevel(logging.DEBUG)
            for _ in range(2):
                await m.send(Ping())
            logger.setLevel(logging.INFO)
            await m.send(Ping())
        handled = [r for r in caplog.records if r.getMessage() == "Handle Ping request"]
        assert len(handled) == 2
    finally:
        logger.setLevel(logging.NOTSET)


async def test_a_spec_mock_of_a_request_goes_to_the_handler_of_its_class() -> None:
    Emits.batch = [D(n=1)]
    m = make_mediator({Ping: Emits}, EVENT_HANDLERS)
    for _ in range(2):
        await m.send(mock.Mock(spec=Ping))
    assert LOG == ["command", "d 1 start", "d 1 end"] * 2


async def test_a_publisher_set_on_the_processor_later_is_used() -> None:
    calls: list[int] = []

    class Counting:
        async def publish(self, jobs: Sequence[Any], execute: Any) -> None:
            calls.append(len(jobs))
            await SequentialPublisher().publish(jobs, execute)

    Emits.batch = [D(n=1), D(n=2)]
    m = make_mediator({Ping: Emits}, EVENT_HANDLERS)
    await m.send(Ping())
    assert calls == []
    m.event_processor.publisher = Counting()
    await m.send(Ping())
    assert calls == [2]
    m.event_processor.publisher = SequentialPublisher()
    await m.send(Ping())
    assert calls == [2]
    assert LOG.count("d 2 end") == 3


# -- streams whose items need no work pass the handler's items through ------------------------


class Silent(cqrs.StreamingRequestHandler[Ping, Item]):
    """Keeps the base ``events`` (it can emit none)."""

    def clear_events(self) -> None:
        pass

    async def handle(self, request: Ping) -> AsyncIterator[Item]:
        try:
            for n in range(request.n):
                if n == 99:
                    raise RuntimeError("the handler failed at 99")
                LOG.append(f"yield {n}")
                yield Item(n=n)
        finally:
            LOG.append("finally")


async def test_a_silent_stream_delivers_every_item_then_is_closed() -> None:
    stream = make_streaming({Ping: Silent}).stream(Ping(n=4))
    seen = []
    async for item in stream:
        seen.append(item.n)
        assert not stream.closed
    assert seen == [0, 1, 2, 3]
    assert stream.closed
    assert LOG == ["yield 0", "yield 1", "yield 2", "yield 3", "finally"]
    await stream.aclose()
    assert await collect(stream) == []
    assert LOG.count("finally") == 1


async def test_breaking_out_of_a_silent_stream_runs_the_handlers_finally_at_once() -> None:
    async for item in make_streaming({Ping: Silent}).stream(Ping(n=5)):
        if item.n == 2:
            break
    assert LOG == ["yield 0", "yield 1", "yield 2", "finally"]


async def test_a_silent_stream_raises_the_handlers_error_and_ends() -> None:
    stream = make_streaming({Ping: Silent}).stream(Ping(n=200))
    seen = []
    with pytest.raises(RuntimeError, match="failed at 99"):
        async for item in stream:
            seen.append(item.n)
    assert seen == list(range(99))
    assert stream.closed
    assert LOG[-1] == "finally"
    assert await collect(stream) == []
