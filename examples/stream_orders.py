"""Stream a batch of orders, with domain events handled per item and notifications published.

Run it with ``./scripts/demo`` (or ``python examples/stream_orders.py``). It shows:

* a streaming handler that yields one result per order and emits two domain events and one
  notification event per order;
* the two events policies: ``before_item`` (an order's events finish before the order is
  shown) and ``concurrent`` (the order is shown at once, its events run in the background
  and the stream ends when they are all done);
* deterministic close: breaking out of the loop runs the handler's ``finally`` at once.
"""

from __future__ import annotations

import asyncio
import time
import typing

import di

import cqrs
from cqrs.requests import bootstrap
from cqrs.testing import InMemoryMessageBroker


class ProcessOrders(cqrs.Request):
    order_ids: list[str]


class OrderProcessed(cqrs.Response):
    order_id: str
    position: int
    total: int


class OrderShipped(cqrs.DomainEvent, frozen=True):
    order_id: str


class OrderCounted(cqrs.DomainEvent, frozen=True):
    order_id: str


class ShippedPayload(cqrs.Response):
    order_id: str


START = time.perf_counter()


def say(text: str) -> None:
    print(f"{(time.perf_counter() - START) * 1000:7.1f} ms  {text}")


class ProcessOrdersHandler(cqrs.StreamingRequestHandler[ProcessOrders, OrderProcessed]):
    def __init__(self) -> None:
        self._events: list[cqrs.Event] = []

    @property
    def events(self) -> list[cqrs.Event]:
        return self._events.copy()

    def clear_events(self) -> None:
        self._events.clear()

    async def handle(self, request: ProcessOrders) -> typing.AsyncIterator[OrderProcessed]:
        try:
            for position, order_id in enumerate(request.order_ids, start=1):
                await asyncio.sleep(0.02)  # the work for one order
                self._events.append(OrderShipped(order_id=order_id))
                self._events.append(OrderCounted(order_id=order_id))
                self._events.append(
                    cqrs.NotificationEvent[ShippedPayload](
                        event_name="order_shipped",
                        topic="orders",
                        payload=ShippedPayload(order_id=order_id),
                    )
                )
                yield OrderProcessed(
                    order_id=order_id, position=position, total=len(request.order_ids)
                )
        finally:
            say("handler: finally ran")


class SendShippingEmail(cqrs.EventHandler[OrderShipped]):
    async def handle(self, event: OrderShipped) -> None:
        await asyncio.sleep(0.05)  # a slow side effect
        say(f"  event: shipping email sent for {event.order_id}")


class UpdateStatistics(cqrs.EventHandler[OrderCounted]):
    async def handle(self, event: OrderCounted) -> None:
        say(f"  event: statistics updated for {event.order_id}")


def commands_mapper(mapper: cqrs.RequestMap) -> None:
    mapper.bind(ProcessOrders, ProcessOrdersHandler)


def domain_events_mapper(mapper: cqrs.EventMap) -> None:
    mapper.bind(OrderShipped, SendShippingEmail)
    mapper.bind(OrderCounted, UpdateStatistics)


def build(
    broker: InMemoryMessageBroker, policy: cqrs.StreamEvents
) -> cqrs.StreamingRequestMediator:
    return bootstrap.bootstrap_streaming(
        di_container=di.Container(),
        commands_mapper=commands_mapper,
        domain_events_mapper=domain_events_mapper,
        message_broker=broker,
        max_concurrent_event_handlers=3,
        concurrent_event_handle_enable=True,
        stream_events=policy,
    )


async def main() -> None:
    global START
    orders = ProcessOrders(order_ids=["A-1", "A-2", "A-3"])
    for policy in cqrs.StreamEvents:
        broker = InMemoryMessageBroker()
        START = time.perf_counter()
        print(f"\n== events policy: {policy}")
        async with build(broker, policy).stream(orders) as results:
            async for result in results:
                say(f"order {result.order_id} done ({result.position}/{result.total})")
        say(f"stream finished; {len(broker.published(topic='orders'))} notifications published")

    print("\n== stopping early: break after the first order")
    START = time.perf_counter()
    async for result in build(InMemoryMessageBroker(), cqrs.StreamEvents.BEFORE_ITEM).stream(
        orders
    ):
        say(f"order {result.order_id} done, breaking out")
        break
    say("after the loop")


if __name__ == "__main__":
    asyncio.run(main())
