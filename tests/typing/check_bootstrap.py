"""The bootstrap functions, called as a 4.x user calls them: what they return.

Every builder returns its concrete class (``RequestMediator``, ``StreamingRequestMediator``,
``EventMediator``, ``EventEmitter``); the containers are ``Any`` (a ``di.Container`` or any
object with ``async resolve``). The mappers are ``Callable[[Any], None]``.
"""

# pyright: reportUnnecessaryTypeIgnoreComment=error

from __future__ import annotations

from typing import Any, assert_type

import di

import cqrs
from cqrs.events import bootstrap as events_bootstrap
from cqrs.events.event_emitter import EventEmitter
from cqrs.middlewares.base import HandleType
from cqrs.middlewares.logging import LoggingMiddleware
from cqrs.requests import bootstrap
from cqrs.testing import InMemoryMessageBroker
from tests.typing.check_maps import commands_mapper, events_mapper


class Timing:
    """A user's middleware: matches the ``Middleware`` protocol by its ``__call__``."""

    async def __call__(self, request: Any, handle: HandleType) -> Any:
        return await handle(request)


def queries_mapper(mapper: cqrs.RequestMap) -> None:
    return None


def no_argument_mapper() -> None:
    return None


def one_call_builders() -> None:
    container = di.Container()
    broker = InMemoryMessageBroker()
    assert_type(
        bootstrap.bootstrap(
            di_container=container,
            message_broker=broker,
            middlewares=[LoggingMiddleware(), Timing()],
            commands_mapper=commands_mapper,
            queries_mapper=queries_mapper,
            domain_events_mapper=events_mapper,
            on_startup=[lambda: None],
            event_failure_policy="raise",
        ),
        cqrs.RequestMediator,
    )
    assert_type(
        bootstrap.bootstrap_streaming(
            di_container=container,
            commands_mapper=commands_mapper,
            domain_events_mapper=events_mapper,
            stream_events="concurrent",
        ),
        cqrs.StreamingRequestMediator,
    )
    assert_type(
        events_bootstrap.bootstrap(di_container=container, events_mapper=events_mapper),
        cqrs.EventMediator,
    )

    # A mapper must take the map.
    bootstrap.bootstrap(di_container=container, commands_mapper=no_argument_mapper)  # pyright: ignore[reportArgumentType]
    # The failure policy is a Literal.
    bootstrap.bootstrap(di_container=container, event_failure_policy="ignore")  # pyright: ignore[reportArgumentType]
    # Not a middleware: no ``async __call__(request, handle)``.
    bootstrap.bootstrap(di_container=container, middlewares=[object()])  # pyright: ignore[reportArgumentType]
    # ``stream_events`` is a Literal: a misspelt policy is refused.
    bootstrap.bootstrap_streaming(di_container=container, stream_events="after_item")  # pyright: ignore[reportArgumentType]


def step_by_step_builders() -> None:
    container = di.Container()
    emitter = bootstrap.setup_event_emitter(container, events_mapper)
    assert_type(emitter, EventEmitter)
    assert_type(emitter, cqrs.EventEmitter)
    assert_type(
        bootstrap.setup_mediator(emitter, container, [], commands_mapper=commands_mapper),
        cqrs.RequestMediator,
    )
    assert_type(
        bootstrap.setup_streaming_mediator(emitter, container, [], commands_mapper=commands_mapper),
        cqrs.StreamingRequestMediator,
    )
    assert_type(
        events_bootstrap.setup_mediator(container, [], events_mapper=events_mapper),
        cqrs.EventMediator,
    )
