"""``RequestMap.bind`` and ``EventMap.bind`` in a user's mappers, as pyright sees them.

``bind`` is typed by overloads: the handler must be declared for the bound message type (or a
base of it, or ``Any``), a request handler for a request, an event handler for an event, a
class rather than an instance, a chain a sequence of chain handlers. The same mistakes are
refused at bind time too (``ConfigurationError``); the lines marked GAP only there.
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
    # Something that is not a class where the message type goes.
    mapper.bind(PlaceOrder(order_id="1"), PlaceOrderHandler)  # pyright: ignore[reportArgumentType, reportCallIssue]
    mapper.bind("PlaceOrder", PlaceOrderHandler)  # pyright: ignore[reportArgumentType, reportCallIssue]
    mapper.bind(PlaceOrder)  # pyright: ignore[reportCallIssue]

    # A handler declared for another request, an event handler, an instance, a bad chain.
    mapper.bind(CancelOrder, PlaceOrderHandler)  # pyright: ignore[reportArgumentType, reportCallIssue]
    mapper.bind(PlaceOrder, OrderShippedHandler)  # pyright: ignore[reportArgumentType, reportCallIssue]
    mapper.bind(PlaceOrder, PlaceOrderHandler())  # pyright: ignore[reportArgumentType, reportCallIssue]
    mapper.bind(ImportOrders, [PlaceOrderHandler])  # pyright: ignore[reportArgumentType, reportCallIssue]


def wrong_event_bindings(mapper: cqrs.EventMap) -> None:
    mapper.bind(OrderShipped(order_id="1"), OrderShippedHandler)  # pyright: ignore[reportArgumentType]

    # A request handler; a request where the event goes.
    mapper.bind(OrderShipped, PlaceOrderHandler)  # pyright: ignore[reportArgumentType]
    mapper.bind(PlaceOrder, OrderShippedHandler)  # pyright: ignore[reportArgumentType]
    # GAP: refused by the list itself at run time only.
    mapper[OrderShipped].append(PlaceOrderHandler)
