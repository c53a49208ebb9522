"""Shared by the broker and consumer tests: an event type, a recording handler whose
behaviour a test scripts, and an EventMediator over it."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import Any

import pydantic

import cqrs
from cqrs._internal.brokers.message import message_for
from cqrs.events import bootstrap as events_bootstrap
from cqrs.message_brokers import Message
from cqrs.testing import StaticContainer


class OrderPayload(pydantic.BaseModel):
    order_id: int


OrderPlaced = cqrs.NotificationEvent[OrderPayload]


def order_event(n: int, topic: str) -> cqrs.NotificationEvent[OrderPayload]:
    return OrderPlaced(event_name="OrderPlaced", topic=topic, payload=OrderPayload(order_id=n))


def order_messages(count: int, topic: str) -> list[Message]:
    """The messages the emitter would publish for orders 0..count-1 (4.x wire format)."""
    return [message_for(order_event(n, topic)) for n in range(count)]


Behaviour = Callable[[cqrs.NotificationEvent[OrderPayload], int], Any]


class Overlap:
    """Counts handlers running at once: a handler's body runs inside ``with overlap:``;
    :attr:`peak` is the most there were at any moment."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0

    def __enter__(self) -> None:
        self.now += 1
        self.peak = max(self.peak, self.now)

    def __exit__(self, *exc_info: object) -> None:
        self.now -= 1


class Recorder(cqrs.EventHandler[cqrs.NotificationEvent[OrderPayload]]):
    """Counts each order it handled to the end; ``behaviour(event, call_number)`` may
    raise or await (a gate) first. ``started`` counts calls, ``finished`` completions."""

    def __init__(self, behaviour: Behaviour | None = None) -> None:
        self.behaviour = behaviour
        self.calls: collections.Counter[int] = collections.Counter()
        self.handled: collections.Counter[int] = collections.Counter()
        self.order: list[int] = []
        self.started = 0
        self.finished_cleanup = 0

    async def handle(self, event: cqrs.NotificationEvent[OrderPayload]) -> None:
        order_id = event.payload.order_id
        self.calls[order_id] += 1
        self.started += 1
        try:
            if self.behaviour is not None:
                result = self.behaviour(event, self.calls[order_id])
                if asyncio.iscoroutine(result):
                    await result
            self.handled[order_id] += 1
            self.order.append(order_id)
        finally:
            await asyncio.sleep(0)
            self.finished_cleanup += 1


def mediator_for(recorder: Recorder) -> cqrs.EventMediator:
    return events_bootstrap.bootstrap(
        di_container=StaticContainer({Recorder: recorder}),
        events_mapper=lambda mapper: mapper.bind(OrderPlaced, Recorder),
    )
