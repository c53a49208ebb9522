"""Bootstrap: 4.x parameters and defaults, validation before anything is built."""

from __future__ import annotations

import collections.abc

import di
import pytest

import cqrs
from cqrs.errors import ConfigurationError
from cqrs.middlewares.logging import LoggingMiddleware
from cqrs.requests import bootstrap
from cqrs.testing import StaticContainer
from tests.support import Ping, Pong


class PingHandler(cqrs.RequestHandler[Ping, Pong]):
    async def handle(self, request: Ping) -> Pong:
        return Pong(n=request.n * 2)


def commands(mapper: cqrs.RequestMap) -> None:
    mapper.bind(Ping, PingHandler)


async def test_on_startup_hooks_run_first_in_order() -> None:
    calls: list[str] = []

    def mapper(m: cqrs.RequestMap) -> None:
        calls.append("mapper")
        commands(m)

    bootstrap.bootstrap(
        di_container=di.Container(),
        commands_mapper=mapper,
        on_startup=[lambda: calls.append("a"), lambda: calls.append("b")],
    )
    assert calls == ["a", "b", "mapper"]


async def test_streaming_defaults_match_4x() -> None:
    m = bootstrap.bootstrap_streaming(di_container=di.Container(), commands_mapper=commands)
    assert m.event_processor.max_concurrent_event_handlers == 10
    assert m.event_processor.concurrent_event_handle_enable is False
    assert m.event_processor.limit == 1
    assert m.stream_events is cqrs.StreamEvents.BEFORE_ITEM


async def test_logging_middleware_is_appended_once() -> None:
    m = bootstrap.bootstrap(di_container=di.Container(), commands_mapper=commands)
    assert [type(x) for x in m._middlewares] == [LoggingMiddleware]  # pyright: ignore[reportPrivateUsage]
    own = LoggingMiddleware()
    m = bootstrap.bootstrap(
        di_container=di.Container(), commands_mapper=commands, middlewares=[own]
    )
    assert m._middlewares == (own,)  # pyright: ignore[reportPrivateUsage]


async def test_any_cqrs_container_works_without_a_di_library() -> None:
    m = bootstrap.bootstrap(di_container=StaticContainer({}), commands_mapper=commands)
    assert await m.send(Ping(n=21)) == Pong(n=42)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"di_container": object()}, "di_container must be"),
        ({"commands_mapper": "not callable"}, "commands_mapper must be a function"),
        ({"message_broker": object()}, "message_broker must have"),
        ({"max_concurrent_event_handlers": 0}, "max_concurrent_event_handlers"),
        ({"event_failure_policy": "ignore"}, "failure_policy"),
        ({"on_startup": [1]}, "on_startup"),
    ],
)
def test_bad_arguments_are_refused_with_their_name(kwargs: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {"di_container": di.Container(), "commands_mapper": commands}
    arguments.update(kwargs)
    with pytest.raises((ConfigurationError, ValueError), match=message):
        bootstrap.bootstrap(**arguments)  # type: ignore[arg-type]


def test_bad_stream_events_value_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="stream_events"):
        bootstrap.bootstrap_streaming(di_container=di.Container(), stream_events="sometimes")  # pyright: ignore[reportArgumentType]


def test_deprecated_module_globals_warn_and_still_work() -> None:
    from cqrs.message_brokers import devnull

    with pytest.warns(DeprecationWarning, match="DEFAULT_MESSAGE_BROKER"):
        broker = bootstrap.DEFAULT_MESSAGE_BROKER
    assert isinstance(broker, devnull.DevnullMessageBroker)
    with pytest.warns(DeprecationWarning, match="InMemoryMessageBroker"):
        bus = devnull.MESSAGE_BUS
    assert isinstance(bus, collections.abc.MutableSequence)
