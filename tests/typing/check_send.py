"""``await mediator.send(...)`` as pyright sees it.

``send`` is ``(request: IRequest[T]) -> T``. A request written the 4.x way
(``class PlaceOrder(cqrs.Request)``) gives ``Any``; one that names its result
(``class GetOrder(cqrs.Request[OrderPlaced])``) gives that result. Anything that is not a
request (a class, a dict, an event) is refused. A user can also type the result through the
handler class with a small helper of their own (``send_to`` below).
"""

# pyright: reportUnnecessaryTypeIgnoreComment=error

from __future__ import annotations

import dataclasses
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

    # Not a request: refused here (and by ConfigurationError at run time).
    await mediator.send(PlaceOrder)  # pyright: ignore[reportArgumentType]
    await mediator.send({"order_id": "1"})  # pyright: ignore[reportArgumentType]
    await mediator.send(OrderShipped(order_id="1"))  # pyright: ignore[reportArgumentType]


class GetOrder(cqrs.Request[OrderPlaced]):
    order_id: str


@dataclasses.dataclass
class GetOrderDC(cqrs.DCRequest[OrderPlaced]):
    order_id: str


async def send_of_a_request_that_names_its_result(mediator: cqrs.RequestMediator) -> None:
    assert_type(await mediator.send(GetOrder(order_id="1")), OrderPlaced)
    assert_type(await mediator.send(GetOrderDC(order_id="1")), OrderPlaced)


async def send_typed_through_the_handler(mediator: cqrs.RequestMediator) -> None:
    assert_type(await send_to(mediator, PlaceOrder(order_id="1"), PlaceOrderHandler), OrderPlaced)
    assert_type(await send_to(mediator, CancelOrder(order_id="1"), CancelOrderHandler), None)
    # The request does not match the handler: refused.
    await send_to(mediator, CancelOrder(order_id="1"), PlaceOrderHandler)  # pyright: ignore[reportArgumentType]


async def event_mediator_send(mediator: cqrs.EventMediator) -> None:
    assert_type(await mediator.send(OrderShipped(order_id="1")), None)
    # A request is not an event: refused.
    await mediator.send(PlaceOrder(order_id="1"))  # pyright: ignore[reportArgumentType]
