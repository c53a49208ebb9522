"""The stream bridge: order, events per item, deterministic close, errors, cancellation."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

import cqrs
from cqrs.errors import ConfigurationError, RequestHandlerDoesNotExist
from cqrs.requests import bootstrap
from tests.conftest import other_tasks
from tests.support import Batch, HoldsEvents, Pong, Tick, collect, make_streaming, settle

LOG: list[str] = []


class TickHandler(cqrs.EventHandler[Tick]):
    async def handle(self, event: Tick) -> None:
        LOG.append(f"event {event.n}")


class SlowTickHandler(cqrs.EventHandler[Tick]):
    async def handle(self, event: Tick) -> None:
        await asyncio.sleep(0.02)
        LOG.append(f"slow event {event.n}")


class BatchHandler(HoldsEvents, cqrs.StreamingRequestHandler[Batch, Pong]):
    async def handle(self, request: Batch) -> AsyncIterator[Pong]:
        try:
            for n in range(request.count):
                LOG.append(f"handler {n}")
                for k in range(request.events_per_item):
                    self._events.append(Tick(n=n * 10 + k))
                if request.fail_at == n:
                    raise RuntimeError(f"failed at {n}")
                yield Pong(n=n)
            for k in range(request.events_after_last):
                self._events.append(Tick(n=1000 + k))
        finally:
            LOG.append("finally")


@pytest.fixture(autouse=True)
def _clear_log() -> None:
    LOG.clear()


def mediator(**kwargs: Any) -> cqrs.StreamingRequestMediator:
    return make_streaming({Batch: BatchHandler}, {Tick: [TickHandler]}, **kwargs)


async def test_items_arrive_in_order_with_events_before_each_item() -> None:
    items = []
    async for item in mediator().stream(Batch(count=3, events_per_item=1)):
        LOG.append(f"got {item.n}")
        items.append(item.n)
    assert items == [0, 1, 2]
    assert LOG == [
        "handler 0", "event 0", "got 0",
        "handler 1", "event 10", "got 1",
        "handler 2", "event 20", "got 2",
        "finally",
    ]  # fmt: skip


async def test_events_after_the_last_yield_are_processed() -> None:
    await collect(mediator().stream(Batch(count=1, events_after_last=2)))
    assert LOG == ["handler 0", "finally", "event 1000", "event 1001"]


async def test_break_closes_the_handler_before_control_returns() -> None:
    async for _item in mediator().stream(Batch(count=5)):
        break
    assert LOG == ["handler 0", "finally"]


async def test_exception_in_consumer_closes_the_handler_at_once() -> None:
    with pytest.raises(ZeroDivisionError):
        async for _item in mediator().stream(Batch(count=5)):
            raise ZeroDivisionError("the consumer failed")
    assert LOG == ["handler 0", "finally"]


async def test_async_with_closes_the_handler_and_awaits_async_cleanup() -> None:
    cleaned: list[str] = []

    class AsyncCleanup(cqrs.StreamingRequestHandler[Batch, Pong]):
        def clear_events(self) -> None:
            pass

        async def handle(self, request: Batch) -> AsyncIterator[Pong]:
            try:
                yield Pong(n=0)
                yield Pong(n=1)
            finally:
                await asyncio.sleep(0.01)
                cleaned.append("done")

    m = make_streaming({Batch: AsyncCleanup})
    async with m.stream(Batch(count=2)) as items:
        async for _ in items:
            break
    assert cleaned == ["done"]


async def test_break_with_async_cleanup_finishes_it_in_the_background() -> None:
    cleaned: list[str] = []

    class AsyncCleanup(cqrs.StreamingRequestHandler[Batch, Pong]):
        def clear_events(self) -> None:
            pass

        async def handle(self, request: Batch) -> AsyncIterator[Pong]:
            try:
                yield Pong(n=0)
            finally:
                cleaned.append("started")
                await asyncio.sleep(0)
                cleaned.append("done")

    async for _ in make_streaming({Batch: AsyncCleanup}).stream(Batch(count=1)):
        break
    assert cleaned == ["started"]
    await settle()
    assert cleaned == ["started", "done"]
    assert not other_tasks()


async def test_cancelling_the_consumer_closes_the_handler_and_leaves_no_task() -> None:
    started = asyncio.Event()

    class Slow(cqrs.StreamingRequestHandler[Batch, Pong]):
        def clear_events(self) -> None:
            pass

        async def handle(self, request: Batch) -> AsyncIterator[Pong]:
            try:
                yield Pong(n=0)
                started.set()
                await asyncio.sleep(10)
                yield Pong(n=1)
            finally:
                LOG.append("finally")

    async def consume() -> None:
        async for _ in make_streaming({Batch: Slow}).stream(Batch(count=2)):
            pass

    task = asyncio.create_task(consume())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert LOG == ["finally"]
    assert not other_tasks()


async def test_handler_exception_propagates_after_its_events_are_processed() -> None:
    got = []
    with pytest.raises(RuntimeError, match="failed at 1"):
        async for item in mediator().stream(Batch(count=3, events_per_item=1, fail_at=1)):
            got.append(item.n)
    assert got == [0]
    assert LOG == ["handler 0", "event 0", "handler 1", "finally", "event 10"]


async def test_none_items_pass_through() -> None:
    class Nones(cqrs.StreamingRequestHandler[Batch, Pong | None]):
        def clear_events(self) -> None:
            pass

        async def handle(self, request: Batch) -> AsyncIterator[Pong | None]:
            yield None
            yield Pong(n=1)
            yield None

    items = await collect(make_streaming({Batch: Nones}).stream(Batch(count=0)))
    assert [None if i is None else i.n for i in items] == [None, 1, None]


async def test_no_handler_raises_at_the_call_and_lists_what_is_bound() -> None:
    class Unbound(cqrs.Request):
        pass

    with pytest.raises(RequestHandlerDoesNotExist) as info:
        mediator().stream(Unbound())
    message = str(info.value)
    assert "Unbound" in message
    assert "Batch" in message
    assert "bind" in message
    assert isinstance(info.value, KeyError)


async def test_streaming_a_unary_handler_is_refused_at_the_call() -> None:
    class Unary(cqrs.RequestHandler[Batch, Pong]):
        async def handle(self, request: Batch) -> Pong:
            return Pong(n=0)

    with pytest.raises(ConfigurationError, match="not a streaming handler"):
        make_streaming({Batch: Unary}).stream(Batch(count=1))


async def test_nothing_runs_before_the_first_item_is_requested() -> None:
    stream = mediator().stream(Batch(count=2))
    await settle()
    assert LOG == []
    await stream.aclose()
    assert LOG == []
    assert await collect(stream) == []


async def test_aclose_after_exhaustion_is_a_no_op() -> None:
    stream = mediator().stream(Batch(count=1))
    assert [p.n for p in await collect(stream)] == [0]
    await stream.aclose()
    assert stream.closed


RELEASE: list[asyncio.Event] = []


class HeldTickHandler(cqrs.EventHandler[Tick]):
    """Finishes only once the test releases it."""

    async def handle(self, event: Tick) -> None:
        await RELEASE[0].wait()
        LOG.append(f"slow event {event.n}")


async def test_concurrent_policy_delivers_items_before_their_events_finish() -> None:
    RELEASE[:] = [asyncio.Event()]
    m = make_streaming(
        {Batch: BatchHandler},
        {Tick: [HeldTickHandler]},
        stream_events="concurrent",
        concurrent_event_handle_enable=True,
        max_concurrent_event_handlers=4,
    )
    async for item in m.stream(Batch(count=3, events_per_item=1)):
        LOG.append(f"got {item.n}")
        if item.n == 2:
            # Every item arrived while no event could finish yet.
            assert not any(e.startswith("slow") for e in LOG)
            RELEASE[0].set()
    assert LOG[:6] == ["handler 0", "got 0", "handler 1", "got 1", "handler 2", "got 2"]
    assert sorted(e for e in LOG if e.startswith("slow")) == [
        "slow event 0", "slow event 10", "slow event 20",
    ]  # fmt: skip
    assert not other_tasks()


async def test_concurrent_policy_respects_the_limit_and_applies_backpressure() -> None:
    running = 0
    peak = 0

    class Counting(cqrs.EventHandler[Tick]):
        async def handle(self, event: Tick) -> None:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.005)
            running -= 1
            LOG.append(f"event {event.n}")

    m = make_streaming(
        {Batch: BatchHandler},
        {Tick: [Counting]},
        stream_events="concurrent",
        concurrent_event_handle_enable=True,
        max_concurrent_event_handlers=2,
    )
    await collect(m.stream(Batch(count=10, events_per_item=3)))
    assert peak == 2
    assert len([e for e in LOG if e.startswith("event")]) == 30


async def test_concurrent_policy_early_close_cancels_in_flight_events_and_logs_them(
    cqrs_logs: pytest.LogCaptureFixture,
) -> None:
    m = make_streaming(
        {Batch: BatchHandler},
        {Tick: [SlowTickHandler]},
        stream_events="concurrent",
        concurrent_event_handle_enable=True,
        max_concurrent_event_handlers=2,
    )
    async with m.stream(Batch(count=5, events_per_item=1)) as items:
        async for _ in items:
            break
    assert not other_tasks()
    assert not [e for e in LOG if e.startswith("slow")]
    warnings = [r for r in cqrs_logs.records if r.levelno == logging.WARNING]
    assert any("cancelled" in r.getMessage() and "Tick" in r.getMessage() for r in warnings)


CLOSED: list[str] = []


class Session:
    pass


async def session_factory() -> AsyncIterator[Session]:
    yield Session()
    CLOSED.append("session closed")


class WithSession(cqrs.StreamingRequestHandler[Batch, Pong]):
    def __init__(self, session: Session) -> None:
        self.session = session

    def clear_events(self) -> None:
        pass

    async def handle(self, request: Batch) -> AsyncIterator[Pong]:
        for n in range(request.count):
            assert not CLOSED, "the session must stay open while the stream runs"
            yield Pong(n=n)


async def test_send_scope_stays_open_for_the_stream_and_is_released_on_break() -> None:
    import di
    from di.dependent import Dependent

    CLOSED.clear()
    container = di.Container()
    container.bind(di.bind_by_type(Dependent(session_factory, scope="request"), Session))

    def commands(mapper: cqrs.RequestMap) -> None:
        mapper.bind(Batch, WithSession)

    m = bootstrap.bootstrap_streaming(
        di_container=container,
        commands_mapper=commands,
        scope_strategy=cqrs.ScopeStrategy.SEND,
    )
    async with m.stream(Batch(count=3)) as items:
        async for item in items:
            if item.n == 1:
                break
    assert CLOSED == ["session closed"]


async def test_stream_middleware_wraps_items_and_per_item_middleware_runs_each_item() -> None:
    seen: list[str] = []

    class Whole:
        async def __call__(self, request: Any, handle: Any) -> Any:
            return await handle(request)

        async def stream(self, request: Any, items: AsyncIterator[Any]) -> AsyncIterator[Any]:
            seen.append("start")
            try:
                async for item in items:
                    yield Pong(n=item.n * 100)
            finally:
                seen.append("end")

    class PerItem:
        async def __call__(self, request: Any, handle: Any) -> Any:
            item = await handle(request)
            seen.append(f"item {item.n}")
            return item

    m = make_streaming({Batch: BatchHandler}, middlewares=[Whole(), PerItem()])
    assert [p.n for p in await collect(m.stream(Batch(count=2)))] == [0, 100]
    assert seen == ["start", "item 0", "item 1", "end"]


async def test_stream_middleware_layers_are_closed_even_without_aclosing() -> None:
    closed: list[str] = []

    class Leaky:
        async def __call__(self, request: Any, handle: Any) -> Any:
            return await handle(request)

        async def stream(self, request: Any, items: AsyncIterator[Any]) -> AsyncIterator[Any]:
            try:
                async for item in items:
                    yield item
            finally:
                closed.append("middleware")

    m = make_streaming({Batch: BatchHandler}, middlewares=[Leaky()])
    async for _ in m.stream(Batch(count=3)):
        break
    assert closed == ["middleware"]
    assert LOG == ["handler 0", "finally"]


async def test_a_mediator_works_across_event_loops() -> None:
    m = make_streaming(
        {Batch: BatchHandler},
        {Tick: [TickHandler]},
        concurrent_event_handle_enable=True,
        max_concurrent_event_handlers=3,
    )

    def run_once() -> list[int]:
        async def main() -> list[int]:
            return [p.n for p in await collect(m.stream(Batch(count=2, events_per_item=2)))]

        return asyncio.run(main())

    result = await asyncio.to_thread(lambda: (run_once(), run_once()))
    assert result == ([0, 1], [0, 1])


async def test_cancelling_while_item_events_run_stops_events_and_handler() -> None:
    started = asyncio.Event()
    finished: list[str] = []

    class Forever(cqrs.EventHandler[Tick]):
        async def handle(self, event: Tick) -> None:
            started.set()
            try:
                await asyncio.sleep(10)
            finally:
                finished.append(f"event {event.n} stopped")

    m = make_streaming(
        {Batch: BatchHandler},
        {Tick: [Forever]},
        concurrent_event_handle_enable=True,
        max_concurrent_event_handlers=3,
    )

    async def consume() -> None:
        async for _ in m.stream(Batch(count=3, events_per_item=2)):
            pass

    task = asyncio.create_task(consume())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sorted(finished) == ["event 0 stopped", "event 1 stopped"]
    assert LOG == ["handler 0", "finally"]
    assert not other_tasks()


HANDLER_SCOPES: list[str] = []


class Resource:
    pass


async def resource_factory() -> AsyncIterator[Resource]:
    HANDLER_SCOPES.append("open")
    yield Resource()
    HANDLER_SCOPES.append("close")


class UsesResource(cqrs.StreamingRequestHandler[Batch, Pong]):
    def __init__(self, resource: Resource) -> None:
        self.resource = resource
        self._events: list[cqrs.Event] = []

    @property
    def events(self) -> list[cqrs.Event]:
        return self._events.copy()

    def clear_events(self) -> None:
        self._events.clear()

    async def handle(self, request: Batch) -> AsyncIterator[Pong]:
        for n in range(request.count):
            HANDLER_SCOPES.append(f"item {n}")
            self._events.append(Tick(n=n))
            yield Pong(n=n)


class TickUsesResource(cqrs.EventHandler[Tick]):
    def __init__(self, resource: Resource) -> None:
        self.resource = resource

    async def handle(self, event: Tick) -> None:
        HANDLER_SCOPES.append(f"event {event.n}")


async def test_handler_strategy_gives_the_stream_and_each_event_handler_a_scope() -> None:
    import di
    from di.dependent import Dependent

    HANDLER_SCOPES.clear()
    container = di.Container()
    container.bind(di.bind_by_type(Dependent(resource_factory, scope="request"), Resource))

    def commands(mapper: cqrs.RequestMap) -> None:
        mapper.bind(Batch, UsesResource)

    def events(mapper: cqrs.EventMap) -> None:
        mapper.bind(Tick, TickUsesResource)

    m = bootstrap.bootstrap_streaming(
        di_container=container,
        commands_mapper=commands,
        domain_events_mapper=events,
        scope_strategy=cqrs.ScopeStrategy.HANDLER,
    )
    await collect(m.stream(Batch(count=2)))
    assert HANDLER_SCOPES == [
        "open", "item 0", "open", "event 0", "close",
        "item 1", "open", "event 1", "close", "close",
    ]  # fmt: skip


async def test_dropping_a_stream_with_a_send_scope_releases_it_at_once() -> None:
    import di
    from di.dependent import Dependent

    CLOSED.clear()
    container = di.Container()
    container.bind(di.bind_by_type(Dependent(session_factory, scope="request"), Session))

    def commands(mapper: cqrs.RequestMap) -> None:
        mapper.bind(Batch, WithSession)

    m = bootstrap.bootstrap_streaming(
        di_container=container,
        commands_mapper=commands,
        scope_strategy=cqrs.ScopeStrategy.SEND,
    )
    async for _ in m.stream(Batch(count=3)):
        break
    await settle()
    assert CLOSED == ["session closed"]
    assert not other_tasks()
