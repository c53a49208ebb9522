"""Small building blocks for tests: messages, handlers that record what they saw."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import di

import cqrs
from cqrs.requests import bootstrap


class Ping(cqrs.Request):
    n: int = 0


class Pong(cqrs.Response):
    n: int


class Tick(cqrs.DomainEvent, frozen=True):
    n: int


class Batch(cqrs.Request):
    count: int
    events_per_item: int = 0
    fail_at: int | None = None
    events_after_last: int = 0


Bindings = dict[type[Any], Any]


def _mappers(commands: Bindings, events: dict[type[Any], list[type[Any]]] | None) -> dict[str, Any]:
    def commands_mapper(mapper: cqrs.RequestMap) -> None:
        for request_type, handler in commands.items():
            mapper.bind(request_type, handler)

    def events_mapper(mapper: cqrs.EventMap) -> None:
        for event_type, handlers in (events or {}).items():
            for handler in handlers:
                mapper.bind(event_type, handler)

    return {"commands_mapper": commands_mapper, "domain_events_mapper": events_mapper}


def make_streaming(
    commands: Bindings, events: dict[type[Any], list[type[Any]]] | None = None, **kwargs: Any
) -> cqrs.StreamingRequestMediator:
    """A streaming mediator over a fresh di.Container."""
    return bootstrap.bootstrap_streaming(
        di_container=di.Container(), **_mappers(commands, events), **kwargs
    )


def make_mediator(
    commands: Bindings, events: dict[type[Any], list[type[Any]]] | None = None, **kwargs: Any
) -> cqrs.RequestMediator:
    """A request mediator over a fresh di.Container."""
    return bootstrap.bootstrap(di_container=di.Container(), **_mappers(commands, events), **kwargs)


async def collect(stream: AsyncIterator[Any]) -> list[Any]:
    """Every item of ``stream``."""
    return [item async for item in stream]


async def settle() -> None:
    """Let callbacks and freshly woken tasks run."""
    for _ in range(5):
        await asyncio.sleep(0)
