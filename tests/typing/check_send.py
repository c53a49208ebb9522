"""``await mediator.send(...)`` as pyright sees it.

Today ``send`` is ``(request: object) -> Any``: the result is ``Any`` (4.x returned an
unconstrained type variable, which is no better), so pyright checks nothing about it. A user
who wants the response type checked can pass the handler class to a small helper of their own
(``send_to`` below), which pyright solves from the handler's declared types; that needs no
change to the library and keeps 4.x code as it is.
"""

# pyright: reportUnnecessaryTypeIgnoreComment=error

from __future__ import annotations

from typing import Any, TypeVar, assert_type

import cqrs
from tests.typing._app import (
    CancelOrder,
    CancelOrderHandler,
    OrderPlaced,
    OrderShipped,
    PlaceOrder,
    PlaceOrderHandler,
)

Req = TypeVar("Req", bound=cqrs.IRequest)
Res = TypeVar("Res", bound=cqrs.IResponse | None)


async def send_to(
    mediator: cqrs.RequestMediator, request: Req, handler: type[cqrs.RequestHandler[Req, Res]]
) -> Res:
    """Send ``request`` and type the result as ``handler`` declares it (a user's helper)."""
    result: Res = await mediator.send(request)
    return result


async def send_is_untyped(mediator: cqrs.RequestMediator) -> None:
    assert_type(await mediator.send(PlaceOrder(order_id="1")), Any)
    assert_type(await mediator.send(CancelOrder(order_id="1")), Any)

    # An annotation is taken on trust: pyright cannot relate it to the bound handler.
    placed: OrderPlaced = await mediator.send(PlaceOrder(order_id="1"))
    assert_type(placed, OrderPlaced)

    # GAP: ``send`` takes ``object``, so these are only refused at run time
    # (ConfigurationError); with ``request: IRequest`` pyright would refuse them here.
    await mediator.send(PlaceOrder)
    await mediator.send({"order_id": "1"})
    await mediator.send(OrderShipped(order_id="1"))


async def send_typed_through_the_handler(mediator: cqrs.RequestMediator) -> None:
    assert_type(await send_to(mediator, PlaceOrder(order_id="1"), PlaceOrderHandler), OrderPlaced)
    assert_type(await send_to(mediator, CancelOrder(order_id="1"), CancelOrderHandler), None)
    # The request does not match the handler: refused.
    await send_to(mediator, CancelOrder(order_id="1"), PlaceOrderHandler)  # pyright: ignore[reportArgumentType]


async def event_mediator_send(mediator: cqrs.EventMediator) -> None:
    assert_type(await mediator.send(OrderShipped(order_id="1")), None)
    # A request is not an event: refused.
    await mediator.send(PlaceOrder(order_id="1"))  # pyright: ignore[reportArgumentType]
