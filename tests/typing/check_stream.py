"""``mediator.stream(...)`` and consuming it, as pyright sees it.

``stream`` is a plain method (no ``await``) returning ``RequestStream[Any]``: items are
``Any`` today, the stream itself is fully typed (``async for``, ``async with``, ``aclose``).
As with ``send``, a user's helper that takes the handler class gets typed items.
"""

# pyright: reportUnnecessaryTypeIgnoreComment=error

from __future__ import annotations

import contextlib
from typing import Any, TypeVar, assert_type

import cqrs
from cqrs import RequestStream, StreamEvents
from tests.typing._app import ImportOrders, ImportOrdersHandler, OrderImported, PlaceOrder

Req = TypeVar("Req", bound=cqrs.IRequest)
Res = TypeVar("Res", bound=cqrs.IResponse | None)


def stream_of(
    mediator: cqrs.StreamingRequestMediator,
    request: Req,
    handler: type[cqrs.StreamingRequestHandler[Req, Res]],
) -> RequestStream[Res]:
    """Stream ``request`` with items typed as ``handler`` declares them (a user's helper)."""
    return mediator.stream(request)


async def stream_is_untyped(mediator: cqrs.StreamingRequestMediator) -> None:
    request = ImportOrders(order_ids=["1", "2"])
    stream = mediator.stream(request)
    assert_type(stream, RequestStream[Any])
    assert_type(stream.request, Any)
    assert_type(stream.closed, bool)
    async for item in stream:
        assert_type(item, Any)
    assert_type(await stream.aclose(), None)

    async with mediator.stream(request, events="concurrent") as items:
        assert_type(items, RequestStream[Any])
        assert_type(await anext(items), Any)
    async with contextlib.aclosing(mediator.stream(request, events=StreamEvents.CONCURRENT)):
        pass
    assert_type(mediator.stream_events, StreamEvents)

    # ``stream`` is not a coroutine: awaiting it is refused.
    await mediator.stream(request)  # pyright: ignore[reportGeneralTypeIssues]
    # ``events`` is a Literal: a misspelt policy is refused.
    mediator.stream(request, events="after_item")  # pyright: ignore[reportArgumentType]
    # GAP: a request bound to a unary handler is refused at run time only.
    mediator.stream(PlaceOrder(order_id="1"))


async def stream_typed_through_the_handler(mediator: cqrs.StreamingRequestMediator) -> None:
    stream = stream_of(mediator, ImportOrders(order_ids=["1"]), ImportOrdersHandler)
    assert_type(stream, RequestStream[OrderImported])
    async with stream as items:
        async for item in items:
            assert_type(item, OrderImported)
            assert_type(item.position, int)
    stream_of(mediator, PlaceOrder(order_id="1"), ImportOrdersHandler)  # pyright: ignore[reportArgumentType]
