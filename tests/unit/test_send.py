"""RequestMediator.send and EventMediator.send."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import di
import pytest

import cqrs
from cqrs.errors import ConfigurationError, RequestHandlerDoesNotExist
from cqrs.events import bootstrap as events_bootstrap
from cqrs.requests import bootstrap
from cqrs.requests.cor_request_handler import CORRequestHandler
from cqrs.testing import InMemoryMessageBroker
from tests.support import HoldsEvents, Ping, Pong, Tick, make_mediator

SEEN: list[str] = []


@pytest.fixture(autouse=True)
def _clear() -> None:
    SEEN.clear()


class PingHandler(HoldsEvents, cqrs.RequestHandler[Ping, Pong]):
    async def handle(self, request: Ping) -> Pong:
        SEEN.append(f"ping {request.n}")
        self._events.append(Tick(n=request.n))
        return Pong(n=request.n + 1)


class TickHandler(cqrs.EventHandler[Tick]):
    async def handle(self, event: Tick) -> None:
        SEEN.append(f"tick {event.n}")


async def test_send_returns_the_result_after_processing_events() -> None:
    result = await make_mediator({Ping: PingHandler}, {Tick: [TickHandler]}).send(Ping(n=1))
    assert result == Pong(n=2)
    assert SEEN == ["ping 1", "tick 1"]


async def test_send_without_binding_raises_with_the_bound_types() -> None:
    class Other(cqrs.Request):
        pass

    with pytest.raises(RequestHandlerDoesNotExist, match=r"Other.*Ping"):
        await make_mediator({Ping: PingHandler}).send(Other())


async def test_send_to_a_streaming_handler_is_refused_clearly() -> None:
    class Streamer(cqrs.StreamingRequestHandler[Ping, Pong]):
        def clear_events(self) -> None:
            pass

        async def handle(self, request: Ping) -> AsyncIterator[Pong]:
            yield Pong(n=0)

    with pytest.raises(ConfigurationError, match=r"streaming handler.*stream\(\)"):
        await make_mediator({Ping: Streamer}).send(Ping())


async def test_a_subclass_of_a_bound_request_goes_to_the_base_handler() -> None:
    class LoudPing(Ping):
        pass

    assert await make_mediator({Ping: PingHandler}).send(LoudPing(n=4)) == Pong(n=5)


async def test_handler_exception_propagates_and_no_event_is_processed() -> None:
    class Failing(cqrs.RequestHandler[Ping, Pong]):
        @property
        def events(self) -> list[cqrs.Event]:
            return [Tick(n=9)]

        async def handle(self, request: Ping) -> Pong:
            raise LookupError("nope")

    with pytest.raises(LookupError, match="nope"):
        await make_mediator({Ping: Failing}, {Tick: [TickHandler]}).send(Ping())
    assert SEEN == []


async def test_middlewares_run_in_order_around_the_handler() -> None:
    class Named:
        def __init__(self, name: str) -> None:
            self.name = name

        async def __call__(self, request: Any, handle: Any) -> Any:
            SEEN.append(f"{self.name} in")
            result = await handle(request)
            SEEN.append(f"{self.name} out")
            return result

    m = make_mediator({Ping: PingHandler}, middlewares=[Named("a"), Named("b")])
    await m.send(Ping(n=0))
    assert SEEN == ["a in", "b in", "ping 0", "b out", "a out"]


async def test_logging_middleware_logs_request_and_response_at_debug(
    cqrs_logs: pytest.LogCaptureFixture,
) -> None:
    await make_mediator({Ping: PingHandler}).send(Ping(n=3))
    messages = [r.getMessage() for r in cqrs_logs.records]
    assert "Handle Ping request" in messages
    assert "Request Ping handled" in messages


async def test_notification_events_go_to_the_broker_as_messages() -> None:
    class Payload(cqrs.Response):
        order_id: str

    class Placed(cqrs.RequestHandler[Ping, None]):
        @property
        def events(self) -> list[cqrs.Event]:
            return [
                cqrs.NotificationEvent[Payload](
                    event_name="OrderPlaced", topic="orders", payload=Payload(order_id="o1")
                )
            ]

        async def handle(self, request: Ping) -> None:
            return None

    broker = InMemoryMessageBroker()
    await make_mediator({Ping: Placed}, message_broker=broker).send(Ping())
    [message] = broker.published(topic="orders")
    assert message.payload["event_name"] == "OrderPlaced"
    assert message.payload["payload"] == {"order_id": "o1"}
    assert isinstance(message.message_id, uuid.UUID)
    assert message.payload_bytes is not None
    assert b'"order_id":"o1"' in message.payload_bytes


async def test_broker_outage_reaches_the_caller_after_the_other_events(
    cqrs_logs: pytest.LogCaptureFixture,
) -> None:
    class Payload(cqrs.Response):
        n: int

    class Mixed(cqrs.RequestHandler[Ping, None]):
        @property
        def events(self) -> list[cqrs.Event]:
            return [
                cqrs.NotificationEvent[Payload](event_name="N", payload=Payload(n=1)),
                Tick(n=2),
            ]

        async def handle(self, request: Ping) -> None:
            return None

    broker = InMemoryMessageBroker()
    broker.fail_with = ConnectionError("broker down")
    m = make_mediator({Ping: Mixed}, {Tick: [TickHandler]}, message_broker=broker)
    with pytest.raises(ConnectionError, match="broker down"):
        await m.send(Ping())
    assert SEEN == ["tick 2"]


async def test_chain_of_responsibility_runs_until_a_link_answers_and_keeps_all_events() -> None:
    class First(CORRequestHandler[Ping, Pong]):
        def __init__(self) -> None:
            self._events: list[cqrs.Event] = []

        @property
        def events(self) -> list[cqrs.Event]:
            return self._events

        async def handle(self, request: Ping) -> Pong | None:
            self._events.append(Tick(n=1))
            if request.n == 0:
                return Pong(n=100)
            return await self.next(request)

    class Second(CORRequestHandler[Ping, Pong]):
        def __init__(self) -> None:
            self._events: list[cqrs.Event] = []

        @property
        def events(self) -> list[cqrs.Event]:
            return self._events

        async def handle(self, request: Ping) -> Pong | None:
            self._events.append(Tick(n=2))
            return Pong(n=200)

    m = make_mediator({Ping: [First, Second]}, {Tick: [TickHandler]})  # type: ignore[dict-item]
    assert await m.send(Ping(n=0)) == Pong(n=100)
    assert SEEN == ["tick 1"]
    SEEN.clear()
    assert await m.send(Ping(n=1)) == Pong(n=200)
    assert SEEN == ["tick 1", "tick 2"]


async def test_event_mediator_dispatches_follow_ups_depth_first_through_middlewares() -> None:
    class Chained(cqrs.EventHandler[Tick]):
        def __init__(self) -> None:
            self._follow: list[cqrs.Event] = []

        @property
        def events(self) -> list[cqrs.Event]:
            return self._follow

        async def handle(self, event: Tick) -> None:
            SEEN.append(f"chained {event.n}")
            if event.n > 0:
                self._follow.append(Tick(n=event.n - 1))

    class Spy:
        async def __call__(self, request: Any, handle: Any) -> Any:
            SEEN.append(f"mw {request.n}")
            return await handle(request)

    def mapper(m: cqrs.EventMap) -> None:
        m.bind(Tick, Chained)

    mediator = events_bootstrap.bootstrap(
        di_container=di.Container(), events_mapper=mapper, middlewares=[Spy()]
    )
    await mediator.send(Tick(n=2))
    assert SEEN == ["mw 2", "chained 2", "mw 1", "chained 1", "mw 0", "chained 0"]


async def test_event_mediator_warns_on_unbound_event_and_propagates_errors(
    cqrs_logs: pytest.LogCaptureFixture,
) -> None:
    class Failing(cqrs.EventHandler[Tick]):
        async def handle(self, event: Tick) -> None:
            raise ValueError("bad tick")

    def mapper(m: cqrs.EventMap) -> None:
        m.bind(Tick, Failing)

    mediator = events_bootstrap.bootstrap(di_container=di.Container(), events_mapper=mapper)

    class Unbound(cqrs.DomainEvent, frozen=True):
        pass

    await mediator.send(Unbound())
    assert any(
        r.levelno == logging.WARNING and "Unbound" in r.getMessage() for r in cqrs_logs.records
    )
    with pytest.raises(ValueError, match="bad tick"):
        await mediator.send(Tick(n=1))


async def test_send_scope_is_shared_by_the_handler_and_its_event_handlers() -> None:
    seen_sessions: list[object] = []

    def commands(m: cqrs.RequestMap) -> None:
        m.bind(Ping, ScopedPing)

    def events(m: cqrs.EventMap) -> None:
        m.bind(Tick, ScopedTick)

    SESSIONS.clear()
    mediator = bootstrap.bootstrap(
        di_container=di.Container(),
        commands_mapper=commands,
        domain_events_mapper=events,
        scope_strategy=cqrs.ScopeStrategy.SEND,
    )
    await mediator.send(Ping(n=1))
    seen_sessions.extend(SESSIONS)
    assert len(seen_sessions) == 2
    assert seen_sessions[0] is seen_sessions[1]
    SESSIONS.clear()
    await mediator.send(Ping(n=2))
    assert SESSIONS[0] is not seen_sessions[0]


SESSIONS: list[object] = []


class UnitOfWork:
    pass


class ScopedPing(cqrs.RequestHandler[Ping, None]):
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    @property
    def events(self) -> list[cqrs.Event]:
        return [Tick(n=0)]

    async def handle(self, request: Ping) -> None:
        SESSIONS.append(self.uow)


class ScopedTick(cqrs.EventHandler[Tick]):
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    async def handle(self, event: Tick) -> None:
        SESSIONS.append(self.uow)


async def test_requests_that_name_their_result_are_sent_like_any_other() -> None:
    import dataclasses

    class Placed(cqrs.Response):
        order_id: str

    class Place(cqrs.Request[Placed]):
        order_id: str

    @dataclasses.dataclass
    class PlaceDC(cqrs.DCRequest[Placed]):
        order_id: str

    class PlaceHandler(cqrs.RequestHandler[Place, Placed]):
        async def handle(self, request: Place) -> Placed:
            return Placed(order_id=request.order_id)

    class PlaceDCHandler(cqrs.RequestHandler[PlaceDC, Placed]):
        async def handle(self, request: PlaceDC) -> Placed:
            return Placed(order_id=request.order_id)

    m = make_mediator({Place: PlaceHandler, PlaceDC: PlaceDCHandler})
    assert await m.send(Place(order_id="1")) == Placed(order_id="1")
    assert await m.send(PlaceDC(order_id="2")) == Placed(order_id="2")
    assert Place.from_dict(order_id="3").to_dict() == {"order_id": "3"}
    assert Place.model_json_schema()["title"] == "Place"
