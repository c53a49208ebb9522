"""The core under hostile handlers, middlewares and callers (issue 6, §2.1-2.2, §3.1-3.2,
§3.4, §4.1-4.4): every test counts what ran and what is left at the end."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import typing
from collections.abc import AsyncIterator, Sequence
from typing import Any

import di
import pytest

import cqrs
from cqrs.events import bootstrap as events_bootstrap
from cqrs.events.event_processor import EventProcessor
from tests.conftest import other_tasks
from tests.support import (
    LONG_TEST_TIMEOUT,
    PATIENCE,
    HoldsEvents,
    collect,
    make_mediator,
    make_streaming,
)

pytestmark = pytest.mark.timeout(LONG_TEST_TIMEOUT)

RUNS: dict[str, int] = {}
STARTED: list[str] = []
FINISHED: list[str] = []


@pytest.fixture(autouse=True)
def _clear() -> None:
    RUNS.clear()
    STARTED.clear()
    FINISHED.clear()
    PROGRESS[:] = [asyncio.Event()]


class Go(cqrs.Request):
    n: int = 3


class Out(cqrs.Response):
    n: int


class Slow(cqrs.DomainEvent, frozen=True):
    n: int


class Ping(cqrs.DomainEvent, frozen=True):
    n: int = 0


class Pong(cqrs.DomainEvent, frozen=True):
    n: int = 0


class Boom(cqrs.DomainEvent, frozen=True):
    n: int = 0


def _count(name: str) -> None:
    RUNS[name] = RUNS.get(name, 0) + 1


class Emits(HoldsEvents, cqrs.RequestHandler[Go, Any]):
    """Emits ``n`` events of the class named by ``EVENT``."""

    EVENT: typing.ClassVar[type[cqrs.DomainEvent]] = Slow

    async def handle(self, request: Go) -> str:
        self._events.extend(self.EVENT(n=i) for i in range(request.n))  # type: ignore[call-arg]
        return "ok"


class EmitsPing(Emits):
    EVENT = Ping


class EmitsBoom(Emits):
    EVENT = Boom


class StreamsSlow(HoldsEvents, cqrs.StreamingRequestHandler[Go, Out]):
    async def handle(self, request: Go) -> typing.AsyncIterator[Out]:
        for i in range(request.n):
            self._events.append(Slow(n=i))
            yield Out(n=i)


class HangsWithAwaitingCleanup(cqrs.EventHandler[Slow]):
    """Never returns by itself; its ``finally`` awaits before it records the end."""

    async def handle(self, event: Slow) -> None:
        STARTED.append(f"slow {event.n}")
        PROGRESS[0].set()
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0.01)
            await asyncio.sleep(0)
            FINISHED.append(f"slow {event.n}")


# -- §2.1 cancelling send waits for its event handlers ---------------------------------------


PROGRESS: list[asyncio.Event] = []


async def _wait_for(predicate: typing.Callable[[], bool], what: str) -> None:
    """Wait (PATIENCE at most) until ``predicate()`` holds; handlers signal PROGRESS."""
    progress = PROGRESS[0]
    try:
        async with asyncio.timeout(PATIENCE):
            while not predicate():
                progress.clear()
                await progress.wait()
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


@pytest.mark.parametrize("limit", [1, 3])
async def test_cancelling_send_waits_for_every_event_handler_cleanup(limit: int) -> None:
    m = make_mediator(
        {Go: Emits},
        {Slow: [HangsWithAwaitingCleanup]},
        concurrent_event_handle_enable=limit > 1,
        max_concurrent_event_handlers=limit,
    )
    before = other_tasks()
    task = asyncio.create_task(m.send(Go(n=3)))
    await _wait_for(lambda: len(STARTED) == limit, f"{limit} handlers started")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # Every handler that started has finished its awaiting cleanup before send raised.
    assert sorted(FINISHED) == sorted(STARTED)
    assert len(FINISHED) == limit
    assert other_tasks() - before == set()


@pytest.mark.parametrize("policy", ["before_item", "concurrent"])
async def test_closing_a_stream_early_waits_for_event_handler_cleanup(policy: str) -> None:
    m = make_streaming(
        {Go: StreamsSlow},
        {Slow: [HangsWithAwaitingCleanup]},
        concurrent_event_handle_enable=True,
        max_concurrent_event_handlers=3,
        stream_events=policy,
    )
    before = other_tasks()

    async def consume() -> None:
        async with m.stream(Go(n=3)) as items:
            async for _ in items:
                pass

    task = asyncio.create_task(consume())
    await _wait_for(lambda: len(STARTED) >= 1, "a handler started")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sorted(FINISHED) == sorted(STARTED)
    assert other_tasks() - before == set()


async def test_cancelling_send_twice_still_waits_for_cleanup() -> None:
    m = make_mediator(
        {Go: Emits},
        {Slow: [HangsWithAwaitingCleanup]},
        concurrent_event_handle_enable=True,
        max_concurrent_event_handlers=3,
    )
    before = other_tasks()
    task = asyncio.create_task(m.send(Go(n=3)))
    await _wait_for(lambda: len(STARTED) == 3, "3 handlers started")
    task.cancel()
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The first job runs inline in send's own task, so the second cancel interrupts its
    # cleanup as it would any plain await; the helper tasks' cleanups all finished.
    assert {"slow 1", "slow 2"} <= set(FINISHED)
    assert other_tasks() - before == set()


# -- §2.2 the concurrent stream policy honours a custom publisher ----------------------------


class CountingPublisher:
    """A user's publisher: runs jobs one by one, counting calls and jobs."""

    def __init__(self) -> None:
        self.calls = 0
        self.jobs = 0

    async def publish(self, jobs: Sequence[Any], execute: Any) -> None:
        self.calls += 1
        queue = list(jobs)
        while queue:
            self.jobs += 1
            queue.extend(await execute(queue.pop(0)))


class QuickSlow(cqrs.EventHandler[Slow]):
    async def handle(self, event: Slow) -> None:
        await asyncio.sleep(0)
        _count(f"slow {event.n}")


@pytest.mark.parametrize("policy", ["before_item", "concurrent"])
async def test_a_custom_publisher_runs_the_events_of_every_item(policy: str) -> None:
    publisher = CountingPublisher()
    m = make_streaming(
        {Go: StreamsSlow},
        {Slow: [QuickSlow]},
        stream_events=policy,
        event_publisher=publisher,
    )
    items = await collect(m.stream(Go(n=3)))
    assert [i.n for i in items] == [0, 1, 2]
    assert publisher.calls == 3
    assert publisher.jobs == 3
    assert RUNS == {"slow 0": 1, "slow 1": 1, "slow 2": 1}


def test_the_publisher_protocol_and_stock_publishers_have_a_public_path() -> None:
    from cqrs.events import ConcurrentPublisher, EventPublisher, SequentialPublisher

    assert isinstance(ConcurrentPublisher(2).limit, int)
    assert callable(SequentialPublisher().publish)
    assert EventPublisher is not None
    processor = EventProcessor(max_concurrent_event_handlers=4)
    assert isinstance(processor.publisher, ConcurrentPublisher)


# -- §4.2 follow-up cycles -----------------------------------------------------------------


class PingToPong(HoldsEvents, cqrs.EventHandler[Ping]):
    async def handle(self, event: Ping) -> None:
        _count("ping")
        self._events.append(Pong(n=event.n + 1))


class PongToPing(HoldsEvents, cqrs.EventHandler[Pong]):
    async def handle(self, event: Pong) -> None:
        _count("pong")
        self._events.append(Ping(n=event.n + 1))


@pytest.mark.parametrize("limit", [1, 3])
async def test_a_follow_up_cycle_stops_with_the_chain_named(limit: int) -> None:
    m = make_mediator(
        {Go: EmitsPing},
        {Ping: [PingToPong], Pong: [PongToPing]},
        concurrent_event_handle_enable=limit > 1,
        max_concurrent_event_handlers=limit,
        max_event_depth=6,
    )
    with pytest.raises(cqrs.errors.EventCycleError) as caught:
        await asyncio.wait_for(m.send(Go(n=1)), PATIENCE)
    assert "Ping -> Pong -> Ping -> Pong -> Ping -> Pong -> Ping -> Pong" in str(caught.value)
    assert "max_event_depth=6" in str(caught.value)
    # Depth 0..6 ran, seven handler runs in all, and nothing more.
    assert RUNS == {"ping": 4, "pong": 3}


async def test_a_follow_up_cycle_in_a_stream_and_in_the_event_mediator_stops() -> None:
    class StreamsPing(StreamsSlow):
        async def handle(self, request: Go) -> typing.AsyncIterator[Out]:
            self._events.append(Ping())
            yield Out(n=0)

    m = make_streaming({Go: StreamsPing}, {Ping: [PingToPong], Pong: [PongToPing]})
    with pytest.raises(cqrs.errors.EventCycleError, match="Ping -> Pong -> Ping"):
        await collect(m.stream(Go()))
    assert RUNS["ping"] + RUNS["pong"] == 33  # default max_event_depth=32, depths 0..32

    RUNS.clear()

    def events(mapper: cqrs.EventMap) -> None:
        mapper.bind(Ping, PingToPong)
        mapper.bind(Pong, PongToPing)

    consumer = events_bootstrap.bootstrap(di_container=di.Container(), events_mapper=events)
    with pytest.raises(cqrs.errors.EventCycleError, match="Ping -> Pong -> Ping"):
        await consumer.send(Ping())
    assert RUNS["ping"] + RUNS["pong"] == 33


class Fork(HoldsEvents, cqrs.EventHandler[Ping]):
    """Never awaits; each run emits two follow-ups: a tree of 2**depth jobs."""

    async def handle(self, event: Ping) -> None:
        if event.n == 0 and WAIT_FIRST:
            await asyncio.sleep(0)  # the first job waits once: helper tasks start
        _count("fork")
        self._events.extend((Ping(n=event.n + 1), Ping(n=event.n + 1)))


WAIT_FIRST: list[bool] = []


@pytest.mark.parametrize(("limit", "wait_first"), [(1, False), (4, False), (4, True)])
async def test_a_huge_fan_out_of_handlers_that_never_wait_lets_timeouts_fire(
    limit: int, wait_first: bool
) -> None:
    WAIT_FIRST[:] = [True] if wait_first else []
    m = make_mediator(
        {Go: EmitsPing},
        {Ping: [Fork]},
        concurrent_event_handle_enable=limit > 1,
        max_concurrent_event_handlers=limit,
        max_event_depth=60,
    )
    ticks = 0
    loop = asyncio.get_running_loop()

    async def ticker(deadline: asyncio.Timeout) -> None:
        # Runs only if the fan-out lets the loop run; then it makes the send's timeout fire.
        nonlocal ticks
        while not (ticks >= 10 and RUNS.get("fork", 0) > 100):
            ticks += 1
            await asyncio.sleep(0)
        deadline.reschedule(loop.time())

    with pytest.raises(TimeoutError):
        async with asyncio.timeout(None) as deadline:
            beside = asyncio.create_task(ticker(deadline))
            try:
                await m.send(Go(n=2 if wait_first else 1))
            finally:
                beside.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await beside
    assert RUNS["fork"] > 100  # it did run...
    assert ticks >= 10  # ...and other tasks ran beside it, so the loop was not frozen


# -- §4.3 a handler that raises CancelledError by itself ---------------------------------------


class CancelsItself(cqrs.EventHandler[Boom]):
    async def handle(self, event: Boom) -> None:
        _count("boom")
        if event.n == 1:
            raise asyncio.CancelledError("handler gave up")
        await asyncio.sleep(0)


@pytest.mark.parametrize("limit", [1, 3])
async def test_a_stray_cancelled_error_is_that_handlers_failure(
    limit: int, caplog: pytest.LogCaptureFixture
) -> None:
    failures: list[tuple[str, type[BaseException]]] = []

    def hook(event: cqrs.IEvent, handler: Any, exc: BaseException) -> None:
        failures.append((handler.__name__, type(exc)))

    m = make_mediator(
        {Go: EmitsBoom},
        {Boom: [CancelsItself]},
        concurrent_event_handle_enable=limit > 1,
        max_concurrent_event_handlers=limit,
        on_event_error=hook,
    )
    with caplog.at_level(logging.ERROR, logger="cqrs"):
        assert await m.send(Go(n=3)) == "ok"
    assert RUNS == {"boom": 3}  # the other events still ran
    assert failures == [("CancelsItself", cqrs.errors.EventHandlerCancelled)]
    assert sum("CancelsItself failed" in r.getMessage() for r in caplog.records) == 1

    raising = make_mediator(
        {Go: EmitsBoom},
        {Boom: [CancelsItself]},
        concurrent_event_handle_enable=limit > 1,
        max_concurrent_event_handlers=limit,
        event_failure_policy="raise",
    )
    RUNS.clear()
    with pytest.raises(cqrs.errors.EventHandlerCancelled) as caught:
        await raising.send(Go(n=3))
    assert isinstance(caught.value.__cause__, asyncio.CancelledError)
    assert RUNS == {"boom": 3}


async def test_a_stray_cancelled_error_in_a_concurrent_stream_is_not_lost() -> None:
    class StreamsBoom(StreamsSlow):
        async def handle(self, request: Go) -> typing.AsyncIterator[Out]:
            for i in range(request.n):
                self._events.append(Boom(n=i))
                yield Out(n=i)

    failures: list[BaseException] = []
    m = make_streaming(
        {Go: StreamsBoom},
        {Boom: [CancelsItself]},
        stream_events="concurrent",
        concurrent_event_handle_enable=True,
        max_concurrent_event_handlers=3,
        on_event_error=lambda e, h, exc: failures.append(exc),
    )
    assert len(await collect(m.stream(Go(n=3)))) == 3
    assert RUNS == {"boom": 3}
    assert [type(f) for f in failures] == [cqrs.errors.EventHandlerCancelled]


async def test_an_event_mediator_handler_that_cancels_itself_fails_clearly() -> None:
    def events(mapper: cqrs.EventMap) -> None:
        mapper.bind(Boom, CancelsItself)

    consumer = events_bootstrap.bootstrap(di_container=di.Container(), events_mapper=events)
    with pytest.raises(cqrs.errors.EventHandlerCancelled):
        await consumer.send(Boom(n=1))


# -- §4.1 a 4.x middleware never changes a stream's length -----------------------------------


class ShortCircuits:
    async def __call__(self, request: Any, handle: Any) -> Any:
        return None


class SwallowsErrors:
    def __init__(self) -> None:
        self.caught: list[str] = []

    async def __call__(self, request: Any, handle: Any) -> Any:
        try:
            return await handle(request)
        except Exception as exc:
            self.caught.append(str(exc))
            return None


class ReadsTheItem:
    """Written for send: touches the response after handle()."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    async def __call__(self, request: Any, handle: Any) -> Any:
        response = await handle(request)
        self.seen.append(response.n)
        return response


class CallsTwice:
    async def __call__(self, request: Any, handle: Any) -> Any:
        await handle(request)
        return await handle(request)


class Two(cqrs.StreamingRequestHandler[Go, Out]):
    def clear_events(self) -> None:
        pass

    async def handle(self, request: Go) -> AsyncIterator[Out]:
        for i in range(request.n):
            if i == 1 and request.n == 99:
                raise ValueError("item 1 failed")
            yield Out(n=i)


async def test_a_short_circuiting_middleware_keeps_the_stream_length() -> None:
    m = make_streaming({Go: Two}, middlewares=[ShortCircuits()])
    items = await asyncio.wait_for(collect(m.stream(Go(n=2))), PATIENCE)
    assert items == [None, None]


async def test_a_middleware_that_catches_exception_keeps_the_stream_finite() -> None:
    swallow = SwallowsErrors()
    m = make_streaming({Go: Two}, middlewares=[swallow])
    assert [i.n for i in await asyncio.wait_for(collect(m.stream(Go(n=2))), PATIENCE)] == [0, 1]
    assert swallow.caught == []
    # A real handler error passes through it; swallowed, the stream ends after it.
    items = await asyncio.wait_for(collect(m.stream(Go(n=99))), PATIENCE)
    assert [getattr(i, "n", None) for i in items] == [0, None]
    assert swallow.caught == ["item 1 failed"]


async def test_a_send_middleware_that_reads_the_response_never_sees_the_end() -> None:
    reader = ReadsTheItem()
    m = make_streaming({Go: Two}, middlewares=[reader])
    assert len(await collect(m.stream(Go(n=3)))) == 3
    assert reader.seen == [0, 1, 2]


async def test_handle_called_twice_for_one_item_is_a_stream_state_error() -> None:
    m = make_streaming({Go: Two}, middlewares=[CallsTwice()])
    with pytest.raises(cqrs.errors.StreamStateError, match="twice"):
        await collect(m.stream(Go(n=3)))


async def test_entering_a_stream_twice_is_a_stream_state_error() -> None:
    m = make_streaming({Go: Two})
    stream = m.stream(Go(n=1))
    async with stream:
        with pytest.raises(cqrs.errors.StreamStateError, match="already entered"):
            async with stream:
                pass


# -- §4.4 events that are not a sequence; §3.2 what is not a request; §3.1 DI errors ---------


class OneEventNotAList(cqrs.RequestHandler[Go, None]):
    @property
    def events(self) -> Any:
        return Slow(n=0)

    async def handle(self, request: Go) -> None:
        pass


async def test_events_returning_one_event_instead_of_a_list_is_a_clear_error() -> None:
    m = make_mediator({Go: OneEventNotAList}, {Slow: [QuickSlow]})
    with pytest.raises(cqrs.errors.ConfigurationError, match=r"returned one Slow .*\[event\]"):
        await m.send(Go())
    assert RUNS == {}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"n": 1}, r"take a request .*got dict"),
        (Go, r"got the class Go; call them with Go\(\.\.\.\)"),
        (Slow(n=1), r"Slow is an event, not a request"),
    ],
)
async def test_sending_something_that_is_not_a_request_says_so(value: Any, expected: str) -> None:
    m = make_mediator({Go: Emits})
    with pytest.raises(cqrs.errors.ConfigurationError, match=expected):
        await m.send(value)
    s = make_streaming({Go: StreamsSlow})
    with pytest.raises(cqrs.errors.ConfigurationError, match=expected):
        s.stream(value)


class Database:
    def __init__(self) -> None:
        raise ConnectionError("database is down")


class NeedsDatabase(cqrs.RequestHandler[Go, None]):
    def __init__(self, db: Database) -> None:
        self.db = db

    async def handle(self, request: Go) -> None:
        pass


@pytest.mark.parametrize("strategy", list(cqrs.ScopeStrategy))
async def test_a_dependency_that_cannot_be_built_names_the_handler_and_request(
    strategy: cqrs.ScopeStrategy,
) -> None:
    m = make_mediator({Go: NeedsDatabase}, scope_strategy=strategy)
    with pytest.raises(ConnectionError) as caught:  # the error keeps its type
        await m.send(Go())
    assert "while resolving NeedsDatabase for request Go" in caught.value.__notes__
