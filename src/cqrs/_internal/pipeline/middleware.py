"""The middleware protocols and the chain that folds them around a handler.

One idea serves unary calls and streams. A middleware is an object with
``async __call__(request, handle)`` (the 4.x protocol); it may also define
``stream(request, items)`` to wrap a whole stream, with full control over it.

On a stream, a plain middleware (one without ``stream()``, such as one written for 4.x
``send``) runs once per item, as the item is handed to the consumer: its ``handle(request)``
returns the item the handler produced, and what the middleware returns is what the consumer
gets. It can observe, log or replace items, but never changes how many there are:

* the end of the stream never reaches it: the handler is asked for the next item first, and
  only an item (or an error) is passed through the middleware;
* an exception the handler raised is raised by ``handle``, so it passes through the
  middleware as on ``send``; if the middleware swallows it, its return value is delivered and
  the stream then ends (the handler is finished);
* when it returns without calling ``handle`` (a short-circuit), its return value replaces the
  item;
* calling ``handle`` twice for one item raises ``StreamStateError``.

A middleware that must see the stream as a whole (time the handler's work, stop early, add
items) defines ``stream(request, items)``.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any, Protocol, TypeVar, runtime_checkable

from cqrs._internal.errors import ConfigurationError, StreamStateError

__all__ = [
    "HandleType",
    "active",
    "fold",
    "switchable",
    "Middleware",
    "MiddlewareChain",
    "SagaMiddleware",
    "SagaMiddlewareChain",
    "StreamMiddleware",
    "wrap_stream",
]

Req = TypeVar("Req")
Res = TypeVar("Res")
Item = TypeVar("Item")

HandleType = Callable[[Any], Awaitable[Any]]


@runtime_checkable
class Middleware(Protocol):
    """Runs around a handler: ``return await handle(request)``, or short-circuit.

    Middlewares are applied in list order, the first one outermost: ``[M1, M2]`` runs
    M1 → M2 → handler → M2 → M1. An exception raised by ``handle`` passes through the
    middleware unless it catches it.
    """

    async def __call__(self, request: Any, handle: HandleType) -> Any:
        """Handle ``request``, usually by awaiting ``handle(request)``."""
        ...


@runtime_checkable
class StreamMiddleware(Protocol):
    """A middleware that wraps a whole stream instead of each item.

    ``stream`` receives the request and the inner items and returns the items the consumer
    sees, usually from an async generator: ``async for item in items: yield item``. The
    mediator closes every layer itself when the consumer stops, so no ``aclosing`` is needed.
    """

    def stream(self, request: Any, items: AsyncIterator[Any]) -> AsyncIterator[Any]:
        """Return the items of the stream as this middleware wants them seen."""
        ...


class MiddlewareChain:
    """An ordered list of middlewares (4.x API: ``set``, ``add``, ``wrap``)."""

    def __init__(self) -> None:
        self._middlewares: list[Middleware] = []

    @property
    def middlewares(self) -> tuple[Middleware, ...]:
        """The middlewares, outermost first."""
        return tuple(self._middlewares)

    def set(self, middlewares: Iterable[Middleware]) -> None:
        """Replace the chain; every item must be callable, else ``ConfigurationError``."""
        items = list(middlewares)
        for item in items:
            _require_middleware(item)
        self._middlewares = items

    def add(self, middleware: Middleware) -> None:
        """Append ``middleware`` as the new innermost layer."""
        _require_middleware(middleware)
        self._middlewares.append(middleware)

    def wrap(self, handle: HandleType) -> HandleType:
        """Return ``handle`` wrapped by every middleware, the first one outermost."""
        return fold(self._middlewares, handle)


def _require_middleware(item: object) -> None:
    if not callable(item):
        raise ConfigurationError(
            f"{item!r} is not a middleware: a middleware is an object with "
            "'async def __call__(self, request, handle)'."
        )


def fold(middlewares: Sequence[Middleware], handle: HandleType) -> HandleType:
    """Wrap ``handle`` in ``middlewares``, the first one outermost."""
    for middleware in reversed(middlewares):
        handle = functools.partial(middleware, handle=handle)
    return handle


def switchable(middlewares: Sequence[Middleware]) -> bool:
    """True when a middleware of the sequence has an ``enabled`` attribute."""
    return any(hasattr(m, "enabled") for m in middlewares)


def active(middlewares: Sequence[Middleware]) -> Sequence[Middleware]:
    """The middlewares whose optional ``enabled`` attribute is not false, in order.

    A middleware may define ``enabled`` (usually a property) to be skipped for a call while it
    has nothing to do; ``LoggingMiddleware`` is disabled while DEBUG logging is off.
    """
    if len(middlewares) == 1:
        return middlewares if getattr(middlewares[0], "enabled", True) else ()
    return tuple(m for m in middlewares if getattr(m, "enabled", True))


def wrap_stream(
    middlewares: Sequence[Middleware], request: Any, items: AsyncIterator[Any]
) -> list[AsyncIterator[Any]]:
    """Apply ``middlewares`` to a stream; return every layer, outermost first.

    The mediator keeps the layers so that it can close each one, outermost first, when the
    consumer stops: closing does not depend on middlewares closing what they wrap.
    """
    layers: list[AsyncIterator[Any]] = [items]
    for middleware in reversed(active(middlewares)):
        wrap = getattr(middleware, "stream", None)
        inner = layers[0]
        outer = wrap(request, inner) if wrap is not None else _PerItem(middleware, request, inner)
        if outer is not inner:
            layers.insert(0, outer)
    return layers


class _PerItem:
    """Runs a plain middleware once per item of a stream; see the module docstring."""

    __slots__ = ("_called", "_error", "_handle", "_inner", "_item", "_middleware", "_request")

    def __init__(self, middleware: Middleware, request: Any, inner: AsyncIterator[Any]) -> None:
        self._middleware = middleware
        self._request = request
        self._inner = inner
        self._handle = self._take_item
        self._called = False
        self._item: Any = None
        self._error: BaseException | None = None

    async def _take_item(self, _request: Any) -> Any:
        if self._called:
            raise StreamStateError(
                f"{type(self._middleware).__qualname__} called handle() twice for one item "
                "of a stream; a per-item middleware takes one item per call. Give it a "
                "stream(request, items) method to control the stream as a whole."
            )
        self._called = True
        error = self._error
        if error is not None:
            self._error = None
            raise error
        item = self._item
        self._item = None
        return item

    def __aiter__(self) -> _PerItem:
        return self

    async def __anext__(self) -> Any:
        try:
            self._item = await self._inner.__anext__()
        except StopAsyncIteration:
            raise
        except Exception as exc:
            self._error = exc
        self._called = False
        try:
            return await self._middleware(self._request, self._handle)
        finally:
            self._item = self._error = None


class SagaMiddleware(Protocol[Req, Res]):
    """4.x placeholder protocol for saga middlewares (not applied by 4.x either)."""

    async def __call__(self, context: Req, handler: Callable[[Req], Awaitable[Res]]) -> Res:
        """Run around one saga step."""
        ...


class SagaMiddlewareChain:
    """4.x placeholder: an empty chain of saga middlewares."""
