"""The 4.x dispatcher classes, as thin adapters over the invokers.

4.x code and tests build dispatchers directly (``RequestDispatcher(request_map=...,
container=..., middleware_chain=...)``) and read a ``RequestDispatchResult``: the handler's
response and the events it produced, *not* processed. These classes keep that contract; the
mediators do not use them (they call the invokers directly, with events processed).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Sequence
from typing import Any, Generic, TypeVar

from cqrs._internal.di.scope import ScopeStrategy, wrap_container
from cqrs._internal.dispatch.events import EventDispatcher as _EventEngine
from cqrs._internal.dispatch.invokers import (
    RequestInvoker,
    StreamInvoker,
    as_events,
    invoker_for,
)
from cqrs._internal.errors import ConfigurationError
from cqrs._internal.messages.events import IEvent
from cqrs._internal.pipeline.gate import chain_plan
from cqrs._internal.pipeline.middleware import MiddlewareChain
from cqrs._internal.registry import EventMap, RequestMap

__all__ = [
    "EventDispatcher",
    "RequestDispatchResult",
    "RequestDispatcher",
    "StreamingRequestDispatcher",
]

ResponseT = TypeVar("ResponseT")


@dataclasses.dataclass
class RequestDispatchResult(Generic[ResponseT]):
    """What a request dispatch produced: the handler's ``response`` (or one streamed item)
    and the ``events`` the handler emitted for it, not yet processed."""

    response: ResponseT
    events: Sequence[IEvent] = dataclasses.field(default_factory=list[IEvent])


def _call_through(chain: MiddlewareChain | None) -> Any:
    """The gated call of ``chain``'s middlewares (see ``pipeline/gate.py``)."""
    return chain_plan(chain.middlewares if chain is not None else ()).call


class _Dispatcher:
    def __init__(
        self,
        request_map: RequestMap,
        container: Any,
        middleware_chain: MiddlewareChain | None = None,
        scope_strategy: ScopeStrategy = ScopeStrategy.NONE,
    ) -> None:
        self._request_map = request_map
        self._container = wrap_container(container)
        self._call = _call_through(middleware_chain)
        self._scope_strategy = ScopeStrategy(scope_strategy)
        self._invokers: dict[type[Any], RequestInvoker] = {}

    def _invoker(self, request: Any) -> RequestInvoker:
        request_type: type[Any] = request.__class__
        invoker = self._invokers.get(request_type)
        if invoker is None:
            invoker = invoker_for(request, self._request_map, self._container, self._scope_strategy)
            self._invokers[request_type] = invoker
        return invoker


class RequestDispatcher(_Dispatcher):
    """4.x ``RequestDispatcher``: run the handler bound to a request, through the middlewares.

    ``await dispatch(request)`` returns a :class:`RequestDispatchResult` with the response and
    the handler's events (unprocessed). Raises ``RequestHandlerDoesNotExist`` when nothing is
    bound and ``ConfigurationError`` for a streaming binding; handler errors propagate.
    """

    async def dispatch(self, request: Any) -> RequestDispatchResult[Any]:
        """Handle ``request``; see the class docstring."""
        invoker = self._invoker(request)
        if isinstance(invoker, StreamInvoker):
            raise ConfigurationError(
                f"{type(request).__qualname__} is bound to a streaming handler; use "
                "StreamingRequestDispatcher."
            )
        response, events = await invoker.invoke(request, self._container, self._call)
        return RequestDispatchResult(response, list(as_events(events)))


class StreamingRequestDispatcher(_Dispatcher):
    """4.x ``StreamingRequestDispatcher``: ``dispatch(request)`` (no ``await``) yields one
    :class:`RequestDispatchResult` per item, with the events the handler emitted before that
    item (taken, then ``clear_events()``). The handler's generator is closed when the
    iteration ends, fails or is closed. Middlewares are not applied (as in 4.x); the
    streaming mediator applies them."""

    async def dispatch(self, request: Any) -> AsyncIterator[RequestDispatchResult[Any]]:
        """Stream ``request``; see the class docstring."""
        invoker = self._invoker(request)
        if not isinstance(invoker, StreamInvoker):
            raise ConfigurationError(
                f"{type(request).__qualname__} is not bound to a streaming handler; use "
                "RequestDispatcher."
            )
        handler, agen = await invoker.open(request, self._container)
        async with contextlib.aclosing(agen):
            async for item in agen:
                events = list(as_events(handler.events))
                handler.clear_events()
                yield RequestDispatchResult(item, events)


class EventDispatcher:
    """4.x ``EventDispatcher``: ``await dispatch(event)`` runs every handler bound for the
    event's type in bind order, through the middlewares, follow-ups depth first (the same
    engine as ``EventMediator``). Handler errors propagate."""

    def __init__(
        self,
        event_map: EventMap,
        container: Any,
        middleware_chain: MiddlewareChain | None = None,
        scope_strategy: ScopeStrategy = ScopeStrategy.NONE,
    ) -> None:
        self._call = _call_through(middleware_chain)
        self._engine = _EventEngine(
            event_map, wrap_container(container), ScopeStrategy(scope_strategy)
        )

    async def dispatch(self, event: IEvent) -> None:
        """Handle ``event`` and its follow-ups."""
        await self._engine.dispatch(event, None, self._call)
