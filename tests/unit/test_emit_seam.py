"""Every event goes through ``EventEmitter.emit`` when a user made ``emit`` their own (§1.1-1.3,
1.6 of issue 6), under ``send``, both stream policies, and in the 4.x order."""

from __future__ import annotations

import typing
from collections.abc import Sequence
from typing import Any
from unittest import mock

import di
import pytest

import cqrs
from cqrs.container.di import DIContainer
from cqrs.events import EventEmitter
from cqrs.message_brokers import devnull
from cqrs.requests import bootstrap
from tests.support import HoldsEvents, collect


class Start(cqrs.Request):
    n: int = 3


class Item(cqrs.Response):
    n: int


class A(cqrs.DomainEvent, frozen=True):
    n: int


class B(cqrs.DomainEvent, frozen=True):
    n: int


class Orphan(cqrs.DomainEvent, frozen=True):
    n: int


class Note(cqrs.NotificationEvent[dict[str, int]], frozen=True):
    pass


HANDLED: list[str] = []


@pytest.fixture(autouse=True)
def _clear() -> None:
    HANDLED.clear()


class EmitsA(HoldsEvents, cqrs.RequestHandler[Start, None]):
    async def handle(self, request: Start) -> None:
        self._events.extend(A(n=i) for i in range(request.n))


class StreamsA(HoldsEvents, cqrs.StreamingRequestHandler[Start, Item]):
    async def handle(self, request: Start) -> typing.AsyncIterator[Item]:
        for i in range(request.n):
            self._events.append(A(n=i))
            yield Item(n=i)


class OnA(HoldsEvents, cqrs.EventHandler[A]):
    """Handles A and emits a follow-up B."""

    async def handle(self, event: A) -> None:
        HANDLED.append(f"A{event.n}")
        self._events.append(B(n=event.n))


class OnB(cqrs.EventHandler[B]):
    async def handle(self, event: B) -> None:
        HANDLED.append(f"B{event.n}")


def events_mapper(mapper: cqrs.EventMap) -> None:
    mapper.bind(A, OnA)
    mapper.bind(B, OnB)


class Tracing(EventEmitter):
    """An emitter subclass that records every event it is asked to emit."""

    seen: typing.ClassVar[list[str]] = []

    async def emit(self, event: cqrs.IEvent) -> Sequence[cqrs.IEvent]:
        Tracing.seen.append(f"{type(event).__name__}{getattr(event, 'n', '')}")
        return await super().emit(event)


def _emitter(cls: type[EventEmitter] = EventEmitter) -> EventEmitter:
    event_map = cqrs.EventMap()
    events_mapper(event_map)
    return cls(event_map, di_container())


def _request_mediator(emitter: Any, **kwargs: Any) -> cqrs.RequestMediator:
    request_map = cqrs.RequestMap()
    request_map.bind(Start, EmitsA)
    return cqrs.RequestMediator(request_map, di_container(), emitter, **kwargs)


def _streaming_mediator(emitter: Any, **kwargs: Any) -> cqrs.StreamingRequestMediator:
    request_map = cqrs.RequestMap()
    request_map.bind(Start, StreamsA)
    return cqrs.StreamingRequestMediator(request_map, di_container(), emitter, **kwargs)


def di_container() -> DIContainer:
    container = DIContainer()
    container.attach_external_container(di.Container())
    return container


MODES = ["send", "before_item", "concurrent"]


async def _run(mode: str, emitter: Any, n: int = 3) -> None:
    if mode == "send":
        await _request_mediator(emitter).send(Start(n=n))
    else:
        m = _streaming_mediator(emitter, stream_events=mode, max_concurrent_event_handlers=3)
        assert len(await collect(m.stream(Start(n=n)))) == n


@pytest.mark.parametrize("mode", MODES)
async def test_a_subclass_that_overrides_emit_sees_every_event_and_follow_up(mode: str) -> None:
    Tracing.seen = []
    await _run(mode, _emitter(Tracing))
    # Three events and their three follow-ups, each through emit exactly once.
    assert sorted(Tracing.seen) == ["A0", "A1", "A2", "B0", "B1", "B2"]
    assert sorted(HANDLED) == ["A0", "A1", "A2", "B0", "B1", "B2"]


async def test_emit_order_under_send_is_the_4x_breadth_first_order() -> None:
    Tracing.seen = []
    await _run("send", _emitter(Tracing))
    assert Tracing.seen == ["A0", "A1", "A2", "B0", "B1", "B2"]


@pytest.mark.parametrize("mode", MODES)
async def test_an_instance_patch_of_emit_is_honoured(mode: str) -> None:
    emitter = _emitter()
    original = emitter.emit
    calls: list[str] = []

    async def tracked(event: cqrs.IEvent) -> Sequence[cqrs.IEvent]:
        calls.append(type(event).__name__)
        return await original(event)

    emitter.emit = tracked  # type: ignore[method-assign]
    await _run(mode, emitter)
    assert sorted(calls) == ["A", "A", "A", "B", "B", "B"]
    del emitter.emit  # back to the stock fast path
    calls.clear()
    HANDLED.clear()
    await _run(mode, emitter)
    assert calls == []
    assert len(HANDLED) == 6


@pytest.mark.parametrize("mode", MODES)
async def test_a_spec_mock_emitter_is_called_once_per_event(mode: str) -> None:
    emitter = mock.AsyncMock(spec=EventEmitter)
    emitter.emit.return_value = []
    await _run(mode, emitter)
    assert emitter.emit.await_count == 3
    assert [c.args[0].n for c in emitter.emit.await_args_list] == [0, 1, 2]
    assert HANDLED == []


@pytest.mark.parametrize("mode", MODES)
async def test_a_duck_typed_emitter_works(mode: str) -> None:
    seen: list[str] = []

    class Duck:
        async def emit(self, event: cqrs.IEvent) -> list[cqrs.IEvent]:
            seen.append(type(event).__name__)
            return [B(n=0)] if isinstance(event, A) and event.n == 0 else []

    await _run(mode, Duck())
    assert sorted(seen) == ["A", "A", "A", "B"]


async def test_a_failing_own_emit_reaches_the_caller_after_the_others() -> None:
    class Failing(EventEmitter):
        async def emit(self, event: cqrs.IEvent) -> Sequence[cqrs.IEvent]:
            if getattr(event, "n", None) == 1:
                raise RuntimeError("emit failed")
            return await super().emit(event)

    with pytest.raises(RuntimeError, match="emit failed"):
        await _run("send", _emitter(Failing))
    assert sorted(HANDLED) == ["A0", "A2", "B0", "B2"]


# -- emit() returns the follow-ups themselves, once each (§1.2) ---------------------------


class OnAEmitsOrphan(HoldsEvents, cqrs.EventHandler[A]):
    async def handle(self, event: A) -> None:
        self._events.append(Orphan(n=event.n))


class OnB1(cqrs.EventHandler[B]):
    async def handle(self, event: B) -> None:
        HANDLED.append("b1")


class OnB2(cqrs.EventHandler[B]):
    async def handle(self, event: B) -> None:
        HANDLED.append("b2")


async def test_emit_returns_each_follow_up_once_even_with_two_handlers_of_its_type() -> None:
    event_map = cqrs.EventMap()
    event_map.bind(A, OnA)
    event_map.bind(B, OnB1)
    event_map.bind(B, OnB2)
    emitter = EventEmitter(event_map, di_container())
    follow = await emitter.emit(A(n=1))
    assert follow == [B(n=1)]
    assert HANDLED == ["A1"]  # emit runs this event's handlers only


async def test_emit_returns_a_follow_up_that_nothing_handles() -> None:
    event_map = cqrs.EventMap()
    event_map.bind(A, OnAEmitsOrphan)
    emitter = EventEmitter(event_map, di_container())
    assert await emitter.emit(A(n=7)) == [Orphan(n=7)]


# -- setup_event_emitter without a broker (§1.3); the mapper once (§1.6) --------------------


class Notifies(cqrs.RequestHandler[Start, Any]):
    @property
    def events(self) -> list[cqrs.Event]:
        return [Note(event_name="noted", payload={"n": 1})]

    async def handle(self, request: Start) -> str:
        return "done"


async def test_setup_event_emitter_without_a_broker_uses_devnull() -> None:
    container = di_container()
    emitter = bootstrap.setup_event_emitter(container)
    assert isinstance(emitter.message_broker, devnull.DevnullMessageBroker)

    def commands(mapper: cqrs.RequestMap) -> None:
        mapper.bind(Start, Notifies)

    m = bootstrap.setup_mediator(emitter, container, [], commands_mapper=commands)
    assert await m.send(Start()) == "done"


def test_setup_streaming_mediator_calls_the_domain_events_mapper_once() -> None:
    calls: list[cqrs.EventMap] = []

    def mapper(event_map: cqrs.EventMap) -> None:
        calls.append(event_map)
        event_map.bind(A, OnA)

    container = di_container()
    emitter = bootstrap.setup_event_emitter(container)
    m = bootstrap.setup_streaming_mediator(emitter, container, [], domain_events_mapper=mapper)
    assert len(calls) == 1
    assert m.event_processor.event_map is calls[0]
    assert calls[0][A] == [OnA]


# -- bindings changed after the first dispatch take effect ----------------------------------


class AlsoOnA(cqrs.EventHandler[A]):
    async def handle(self, event: A) -> None:
        HANDLED.append(f"also A{event.n}")


async def test_a_handler_bound_after_the_first_send_runs_and_a_removed_one_does_not() -> None:
    emitter = _emitter()
    m = _request_mediator(emitter)
    await m.send(Start(n=1))
    assert HANDLED == ["A0", "B0"]
    HANDLED.clear()
    emitter.event_map.bind(A, AlsoOnA)
    await m.send(Start(n=1))
    assert sorted(HANDLED) == ["A0", "B0", "also A0"]
    HANDLED.clear()
    emitter.event_map[A].remove(OnA)
    await m.send(Start(n=1))
    assert HANDLED == ["also A0"]


async def test_the_event_mediator_sees_handlers_bound_after_its_first_event() -> None:
    from cqrs.events import bootstrap as events_bootstrap

    event_map_holder: list[cqrs.EventMap] = []

    def mapper(event_map: cqrs.EventMap) -> None:
        event_map.bind(A, OnA)
        event_map_holder.append(event_map)

    consumer = events_bootstrap.bootstrap(di_container=di.Container(), events_mapper=mapper)
    await consumer.send(A(n=1))
    event_map_holder[0].bind(A, AlsoOnA)
    await consumer.send(A(n=2))
    assert HANDLED == ["A1", "A2", "also A2"]


async def test_building_other_maps_keeps_this_emitters_compiled_handlers() -> None:
    # The seed's FastAPI pattern bootstraps per request: other mediators' binds must not make
    # this one compile its handlers (and solve their DI graphs) again.
    emitter = _emitter()
    m = _request_mediator(emitter)
    await m.send(Start(n=1))
    compiled = emitter.targets_of(A)
    for _ in range(3):
        other = _emitter()
        other.event_map.bind(A, AlsoOnA)
        await _request_mediator(other).send(Start(n=1))
    assert emitter.targets_of(A) is compiled
    emitter.event_map.bind(A, AlsoOnA)
    assert emitter.targets_of(A) is not compiled


class StreamsALiveList(StreamsA):
    """4.x shape without the copy: ``events`` returns the handler's own list."""

    @property
    def events(self) -> list[cqrs.Event]:
        return self._events


@pytest.mark.parametrize("policy", list(cqrs.StreamEvents))
async def test_a_stream_handler_whose_events_is_its_own_list_loses_no_event(
    policy: cqrs.StreamEvents,
) -> None:
    # 4.x copies the events before clear_events(); clearing the very list that is about to be
    # processed would drop every event.
    event_map = cqrs.EventMap()
    events_mapper(event_map)
    request_map = cqrs.RequestMap()
    request_map.bind(Start, StreamsALiveList)
    m = cqrs.StreamingRequestMediator(
        request_map,
        di_container(),
        EventEmitter(event_map, di_container()),
        stream_events=policy,
        max_concurrent_event_handlers=3,
    )
    assert len(await collect(m.stream(Start(n=3)))) == 3
    assert sorted(HANDLED) == ["A0", "A1", "A2", "B0", "B1", "B2"]
