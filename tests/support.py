"""Small building blocks for tests: messages, handlers that record what they saw."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import di

import cqrs
from cqrs.requests import bootstrap


class Journal:
    """Records what handlers did, in order, and tracks how many run at once."""

    def __init__(self) -> None:
        self.entries: list[Any] = []
        self.running = 0
        self.peak = 0

    def enter(self) -> None:
        self.running += 1
        self.peak = max(self.peak, self.running)

    def leave(self) -> None:
        self.running -= 1


JOURNAL = Journal()


class Ping(cqrs.Request):
    n: int = 0


class Pong(cqrs.Response):
    n: int


class Tick(cqrs.DomainEvent, frozen=True):
    n: int


class Boom(cqrs.DomainEvent, frozen=True):
    n: int


class Batch(cqrs.Request):
    count: int
    events_per_item: int = 0
    fail_at: int | None = None
    events_after_last: int = 0


def make_streaming(
    commands: dict[type[Any], type[Any]],
    events: dict[type[Any], list[type[Any]]] | None = None,
    **kwargs: Any,
) -> cqrs.StreamingRequestMediator:
    """A streaming mediator over a fresh di.Container."""

    def commands_mapper(mapper: cqrs.RequestMap) -> None:
        for request_type, handler in commands.items():
            mapper.bind(request_type, handler)

    def events_mapper(mapper: cqrs.EventMap) -> None:
        for event_type, handlers in (events or {}).items():
            for handler in handlers:
                mapper.bind(event_type, handler)

    return bootstrap.bootstrap_streaming(
        di_container=di.Container(),
        commands_mapper=commands_mapper,
        domain_events_mapper=events_mapper,
        **kwargs,
    )


def make_mediator(
    commands: dict[type[Any], type[Any]],
    events: dict[type[Any], list[type[Any]]] | None = None,
    **kwargs: Any,
) -> cqrs.RequestMediator:
    """A request mediator over a fresh di.Container."""

    def commands_mapper(mapper: cqrs.RequestMap) -> None:
        for request_type, handler in commands.items():
            mapper.bind(request_type, handler)

    def events_mapper(mapper: cqrs.EventMap) -> None:
        for event_type, handlers in (events or {}).items():
            for handler in handlers:
                mapper.bind(event_type, handler)

    return bootstrap.bootstrap(
        di_container=di.Container(),
        commands_mapper=commands_mapper,
        domain_events_mapper=events_mapper,
        **kwargs,
    )


async def collect(stream: AsyncIterator[Any]) -> list[Any]:
    """Every item of ``stream``."""
    return [item async for item in stream]


async def settle() -> None:
    """Let callbacks and freshly woken tasks run."""
    for _ in range(5):
        await asyncio.sleep(0)
