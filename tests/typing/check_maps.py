"""``RequestMap.bind`` and ``EventMap.bind`` in a user's mappers, as pyright sees them.

Today both ``bind`` methods take ``(type[Any], Any)``: pyright checks that the message is a
class, nothing about the handler. A handler declared for another message, an event handler
bound as a request handler, or a handler instance are refused at bind time
(``ConfigurationError``), not by pyright (the lines marked GAP).
"""

# pyright: reportUnnecessaryTypeIgnoreComment=error

from __future__ import annotations

from typing import Any, assert_type

import cqrs
from tests.typing._app import (
    AuditHandler,
    CachedOrder,
    CancelOrder,
    CancelOrderHandler,
    ImportOrders,
    ImportOrdersHandler,
    OrderShipped,
    OrderShippedHandler,
    PlaceOrder,
    PlaceOrderHandler,
    StoredOrder,
)


def commands_mapper(mapper: cqrs.RequestMap) -> None:
    assert_type(mapper.bind(PlaceOrder, PlaceOrderHandler), None)
    mapper.bind(ImportOrders, ImportOrdersHandler)
    mapper[CancelOrder] = CancelOrderHandler
    assert_type(mapper[PlaceOrder], Any)
    assert_type(mapper.handler_for(PlaceOrder), Any | None)


def chain_mapper(mapper: cqrs.RequestMap) -> None:
    mapper.bind(PlaceOrder, [CachedOrder, StoredOrder])


def events_mapper(mapper: cqrs.EventMap) -> None:
    assert_type(mapper.bind(OrderShipped, OrderShippedHandler), None)
    mapper.bind(OrderShipped, AuditHandler)
    assert_type(mapper[OrderShipped], list[Any])
    mapper[OrderShipped].append(AuditHandler)


def wrong_request_bindings(mapper: cqrs.RequestMap) -> None:
    # What pyright refuses today: something that is not a class where the message type goes.
    mapper.bind(PlaceOrder(order_id="1"), PlaceOrderHandler)  # pyright: ignore[reportArgumentType]
    mapper.bind("PlaceOrder", PlaceOrderHandler)  # pyright: ignore[reportArgumentType]
    mapper.bind(PlaceOrder)  # pyright: ignore[reportCallIssue]

    # GAP: refused at bind time only.
    mapper.bind(CancelOrder, PlaceOrderHandler)  # declared for PlaceOrder
    mapper.bind(PlaceOrder, OrderShippedHandler)  # an event handler
    mapper.bind(PlaceOrder, PlaceOrderHandler())  # an instance, not the class
    mapper.bind(ImportOrders, [PlaceOrderHandler])  # a chain of non-chain handlers


def wrong_event_bindings(mapper: cqrs.EventMap) -> None:
    mapper.bind(OrderShipped(order_id="1"), OrderShippedHandler)  # pyright: ignore[reportArgumentType]

    # GAP: refused at bind time only.
    mapper.bind(OrderShipped, PlaceOrderHandler)  # a request handler
    mapper.bind(PlaceOrder, OrderShippedHandler)  # a request where the event goes
    mapper[OrderShipped].append(PlaceOrderHandler)  # refused by the list itself
