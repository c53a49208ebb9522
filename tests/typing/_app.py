"""A small user application that the check modules share: requests, handlers, events."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import cqrs
from cqrs.requests.cor_request_handler import CORRequestHandler


class PlaceOrder(cqrs.Request):
    order_id: str


class CancelOrder(cqrs.Request):
    order_id: str


class OrderPlaced(cqrs.Response):
    order_id: str


class ImportOrders(cqrs.Request):
    order_ids: list[str]


class OrderImported(cqrs.Response):
    order_id: str
    position: int


class OrderShipped(cqrs.DomainEvent):
    order_id: str


class PlaceOrderHandler(cqrs.RequestHandler[PlaceOrder, OrderPlaced]):
    def __init__(self) -> None:
        self._events: list[cqrs.Event] = []

    @property
    def events(self) -> Sequence[cqrs.Event]:
        return self._events

    async def handle(self, request: PlaceOrder) -> OrderPlaced:
        self._events.append(OrderShipped(order_id=request.order_id))
        return OrderPlaced(order_id=request.order_id)


class CancelOrderHandler(cqrs.RequestHandler[CancelOrder, None]):
    async def handle(self, request: CancelOrder) -> None:
        return None


class ImportOrdersHandler(cqrs.StreamingRequestHandler[ImportOrders, OrderImported]):
    def clear_events(self) -> None:
        pass

    async def handle(self, request: ImportOrders) -> AsyncIterator[OrderImported]:
        for position, order_id in enumerate(request.order_ids):
            yield OrderImported(order_id=order_id, position=position)


class CachedOrder(CORRequestHandler[PlaceOrder, OrderPlaced]):
    async def handle(self, request: PlaceOrder) -> OrderPlaced | None:
        return await self.next(request)


class StoredOrder(CORRequestHandler[PlaceOrder, OrderPlaced]):
    async def handle(self, request: PlaceOrder) -> OrderPlaced | None:
        return OrderPlaced(order_id=request.order_id)


class OrderShippedHandler(cqrs.EventHandler[OrderShipped]):
    async def handle(self, event: OrderShipped) -> None:
        return None


class AuditHandler(cqrs.EventHandler[Any]):
    """A catch-all handler: bound to several event types (a real 4.x pattern)."""

    async def handle(self, event: Any) -> None:
        return None
