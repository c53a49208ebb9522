"""Maps validate at bind time and cannot be bypassed."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

import cqrs
from cqrs.errors import ConfigurationError, DuplicateBindingError, RequestHandlerTypeError
from tests.support import Ping, Pong, Tick


class PingHandler(cqrs.RequestHandler[Ping, Pong]):
    async def handle(self, request: Ping) -> Pong:
        return Pong(n=request.n)


class TickHandler(cqrs.EventHandler[Tick]):
    async def handle(self, event: Tick) -> None:
        return None


class Other(cqrs.Request):
    pass


def test_request_map_binds_and_refuses_duplicates_as_key_error() -> None:
    m = cqrs.RequestMap()
    m.bind(Ping, PingHandler)
    assert m[Ping] is PingHandler
    with pytest.raises(KeyError) as info:
        m.bind(Ping, PingHandler)
    assert isinstance(info.value, DuplicateBindingError)
    assert "already exists in registry" in str(info.value)
    assert "PingHandler" in str(info.value)


@pytest.mark.parametrize(
    ("handler", "message"),
    [
        (object, "not a request handler"),
        (PingHandler(), "must be a class"),
        (TickHandler, "not a request handler"),
    ],
)
def test_request_map_refuses_non_handlers_as_type_error(handler: object, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        cqrs.RequestMap().bind(Ping, handler)  # pyright: ignore[reportArgumentType, reportCallIssue]


def test_request_map_refuses_a_handler_written_for_another_request() -> None:
    with pytest.raises(ConfigurationError, match="PingHandler handles Ping, not Other"):
        cqrs.RequestMap().bind(Other, PingHandler)  # pyright: ignore[reportArgumentType, reportCallIssue]


def test_update_and_setitem_go_through_the_same_checks() -> None:
    m = cqrs.RequestMap()
    m.update({Ping: PingHandler})
    with pytest.raises(DuplicateBindingError):
        m.update({Ping: PingHandler})
    with pytest.raises(ConfigurationError):
        m[Other] = object
    with pytest.raises(TypeError):
        del m[Ping]
    with pytest.raises(TypeError):
        m.pop(Ping)


def test_chain_binding_requires_chain_handlers() -> None:
    with pytest.raises(RequestHandlerTypeError, match="CORRequestHandler"):
        cqrs.RequestMap().bind(Ping, [PingHandler])  # pyright: ignore[reportArgumentType, reportCallIssue]


def test_event_map_appends_in_order_and_refuses_duplicates() -> None:
    class Second(TickHandler):
        pass

    m = cqrs.EventMap()
    m.bind(Tick, TickHandler)
    m.bind(Tick, Second)
    assert m[Tick] == [TickHandler, Second]
    with pytest.raises(DuplicateBindingError, match="already bound"):
        m.bind(Tick, TickHandler)
    with pytest.raises(ConfigurationError, match="not an event handler"):
        m.bind(Tick, PingHandler)  # pyright: ignore[reportArgumentType]


def test_streaming_handlers_bind_in_the_request_map() -> None:
    class Streamer(cqrs.StreamingRequestHandler[Ping, Pong]):
        def clear_events(self) -> None:
            pass

        async def handle(self, request: Ping) -> AsyncIterator[Pong]:
            yield Pong(n=0)

    m = cqrs.RequestMap()
    m.bind(Ping, Streamer)
    assert m.handler_for(Ping) is Streamer


def test_handler_generics_need_both_parameters() -> None:
    with pytest.raises(TypeError):
        cqrs.RequestHandler[Ping]  # type: ignore[misc]
