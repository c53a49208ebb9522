"""Invokers: a binding compiled once per message type, used by every mediator and by events.

An invoker knows how to get a handler for one binding (a single class, a chain of classes, a
streaming class; later a fallback) and how to run it under the scope strategy: under
``HANDLER`` each resolve-and-handle gets a fresh DI scope, under the other strategies the
container passed in is used (the mediator passes the ``send`` scope under ``SEND``). The
mediator collects the events after the invoker returns; invokers know nothing of events
beyond reading the handler's ``events``.

``call(handle, message)`` is how the handler's ``handle`` is called: the mediator passes its
middleware fold, the event emitter a plain call.

A resolve that fails gets a note naming the handler and the message it was resolved for; the
exception keeps its type, so ``except`` clauses written for the container keep working.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, cast

from cqrs._internal.di.scope import ScopeStrategy, bound_scope, enter_scope
from cqrs._internal.errors import (
    ConfigurationError,
    EventHandlerCancelled,
    RequestHandlerDoesNotExist,
)
from cqrs._internal.handlers.cor import CORRequestHandler, build_chain
from cqrs._internal.handlers.event import EventHandler
from cqrs._internal.handlers.request import RequestHandler, StreamingRequestHandler
from cqrs._internal.messages.events import IEvent
from cqrs._internal.messages.requests import IRequest
from cqrs._internal.pipeline.gate import plain_call
from cqrs._internal.registry import RequestMap, describe_types

__all__ = [
    "Call",
    "ChainInvoker",
    "HandlerInvoker",
    "StreamInvoker",
    "as_events",
    "compile_request",
    "invoker_for",
    "not_bound",
    "note_resolve_failure",
    "plain_call",
    "resolve_for",
    "stray_cancel",
]

Call = Callable[[Callable[[Any], Awaitable[Any]], Any], Awaitable[Any]]
"""``call(handle, message)``: runs ``handle(message)``, possibly through middlewares."""


async def resolve_for(container: Any, handler_type: Any, message: Any) -> Any:
    """``await container.resolve(handler_type)``; a failure gets a note naming the handler
    and the message type (the exception itself is re-raised unchanged)."""
    try:
        return await container.resolve(handler_type)
    except Exception as exc:
        note_resolve_failure(exc, handler_type, message)
        raise


def note_resolve_failure(exc: BaseException, handler: Any, message: Any) -> None:
    """Add the note "while resolving <handler> for <request|event> <type>" to ``exc``;
    ``handler`` is a handler class or an invoker."""
    handler_type = getattr(handler, "handler_type", handler)
    exc.add_note(
        f"while resolving {_name(handler_type)} for {_kind(message)} {type(message).__qualname__}"
    )


def _name(handler_type: Any) -> str:
    return str(getattr(handler_type, "__qualname__", handler_type))


def _kind(message: Any) -> str:
    return "event" if isinstance(message, IEvent) else "request"


def as_events(events: object) -> Sequence[IEvent]:
    """The events a handler's ``events`` property returned, as a sequence.

    Raises ``ConfigurationError`` when it returned one event instead of a sequence of events,
    or something that is not iterable.
    """
    if events.__class__ is list or events.__class__ is tuple:
        return events  # type: ignore[return-value]
    if isinstance(events, IEvent):
        raise ConfigurationError(
            f"A handler's 'events' returned one {type(events).__qualname__} instead of a "
            "sequence of events; return a list, e.g. [event]."
        )
    if not isinstance(events, Iterable):
        raise ConfigurationError(
            "A handler's 'events' must return a sequence of events, got "
            f"{type(events).__qualname__}."
        )
    return list(events)  # pyright: ignore[reportUnknownArgumentType]


def stray_cancel(exc: asyncio.CancelledError, handler: Any) -> EventHandlerCancelled:
    """Wrap a ``CancelledError`` a handler raised by itself (its caller was not cancelled)."""
    error = EventHandlerCancelled(
        f"Event handler {getattr(handler, '__qualname__', handler)} raised CancelledError "
        "although its caller was not cancelled (an expired asyncio.timeout or a cancelled "
        "task it awaited?); it is treated as that handler's failure."
    )
    error.__cause__ = exc
    return error


class HandlerInvoker:
    """One handler class: resolve it, call ``handle``, return ``(result, handler.events)``.

    ``build`` is a synchronous builder of the handler (from a container that can compile its
    graph) usable while no DI scope is bound, or ``None``; mediators use it for their fast
    path and must then honour the same contract as :meth:`invoke`.
    """

    __slots__ = ("_root", "_scoped", "build", "handler_type", "no_events")

    def __init__(self, handler_type: Any, root: Any, scope_strategy: ScopeStrategy) -> None:
        self.handler_type = handler_type
        self._root = root
        self._scoped = scope_strategy is ScopeStrategy.HANDLER
        self.build: Callable[[], Any] | None = (
            root.factory(handler_type) if scope_strategy is ScopeStrategy.NONE else None
        )
        events = getattr(handler_type, "events", None)
        self.no_events: object = events if any(events is e for e in _NO_EVENTS) else None
        """The base classes' ``events`` property (always empty) when the handler class has
        it: a handler whose class still has it (``type(handler).events is no_events``)
        cannot have events, so reading them can be skipped."""

    async def invoke(
        self, message: Any, container: Any, call: Call = plain_call
    ) -> tuple[Any, Sequence[IEvent]]:
        """Resolve the handler from ``container`` (a fresh scope under HANDLER; the compiled
        builder when ``container`` is the root and no scope is bound) and run it."""
        if self._scoped:
            async with enter_scope(self._root, reuse_existing=False) as scoped:
                handler = await resolve_for(scoped, self.handler_type, message)
                result = await call(handler.handle, message)
                return result, handler.events
        build = self.build
        if build is not None and container is self._root and bound_scope() is None:
            try:
                handler = build()
            except Exception as exc:
                note_resolve_failure(exc, self.handler_type, message)
                raise
        else:
            handler = await resolve_for(container, self.handler_type, message)
        result = await call(handler.handle, message)
        return result, handler.events


class ChainInvoker:
    """A chain of ``CORRequestHandler`` classes: resolve every link, link them in order, call
    the head; the events of every link are returned (4.x returned only the head's). The
    bound list is read on each call, so links added to it later take part."""

    __slots__ = ("_root", "_scoped", "build", "handler_types", "no_events")

    def __init__(self, handler_types: Sequence[Any], root: Any, scope_strategy: ScopeStrategy):
        self.handler_types = handler_types
        self._root = root
        self._scoped = scope_strategy is ScopeStrategy.HANDLER
        self.build: Callable[[], Any] | None = None
        self.no_events: object = None

    async def invoke(
        self, message: Any, container: Any, call: Call = plain_call
    ) -> tuple[Any, Sequence[IEvent]]:
        """Resolve and link the chain from ``container`` (a fresh scope under HANDLER)."""
        if self._scoped:
            async with enter_scope(self._root, reuse_existing=False) as scoped:
                return await self._run(message, scoped, call)
        return await self._run(message, container, call)

    async def _run(self, message: Any, container: Any, call: Call) -> tuple[Any, list[IEvent]]:
        links: list[CORRequestHandler[Any, Any]] = [
            await resolve_for(container, cls, message) for cls in self.handler_types
        ]
        head = build_chain(links)
        result = await call(head.handle, message)
        events: list[IEvent] = []
        for link in links:
            events.extend(link.events)
        return result, events


class StreamInvoker:
    """A streaming handler class: resolve it; the stream bridge drives its generator."""

    __slots__ = ("build", "handler_type", "no_events")

    def __init__(self, handler_type: Any) -> None:
        self.handler_type = handler_type
        self.build: Callable[[], Any] | None = None
        self.no_events: object = None

    async def open(self, message: Any, container: Any) -> tuple[Any, Any]:
        """Resolve the handler and start its generator: ``(handler, async generator)``.

        Raises ``ConfigurationError`` when ``handle`` does not return an async iterator.
        """
        handler = await resolve_for(container, self.handler_type, message)
        agen = handler.handle(message)
        if not hasattr(agen, "__anext__"):
            if inspect.iscoroutine(agen):
                cast(Any, agen).close()
            raise ConfigurationError(
                f"{type(handler).__qualname__}.handle must be an async generator "
                f"('async def' with 'yield') to be streamed; it returned "
                f"{type(agen).__qualname__}. Use RequestMediator.send() for unary handlers."
            )
        return handler, agen


RequestInvoker = HandlerInvoker | ChainInvoker | StreamInvoker

_NO_EVENTS: tuple[object, ...] = (
    RequestHandler.__dict__["events"],
    EventHandler.__dict__["events"],
)


def compile_request(binding: Any, root: Any, scope_strategy: ScopeStrategy) -> RequestInvoker:
    """The invoker of a request binding: a chain (a list), a stream or a single handler."""
    if isinstance(binding, list):
        return ChainInvoker(cast(list[Any], binding), root, scope_strategy)
    if inspect.isclass(binding) and issubclass(binding, StreamingRequestHandler):
        return StreamInvoker(binding)
    return HandlerInvoker(binding, root, scope_strategy)


def invoker_for(
    request: object, request_map: RequestMap, root: Any, scope_strategy: ScopeStrategy
) -> RequestInvoker:
    """The invoker of the binding for ``type(request)`` (or its nearest bound base class).

    Raises :func:`not_bound`'s error when nothing is bound or ``request`` is not a request.
    """
    binding = request_map.handler_for(request.__class__)
    if binding is None:
        raise not_bound(request, request_map)
    return compile_request(binding, root, scope_strategy)


def not_bound(request: object, request_map: RequestMap) -> Exception:
    """The error for a request with no handler, or for something that is not a request."""
    if inspect.isclass(request):
        return ConfigurationError(
            f"send() and stream() take a request instance, got the class "
            f"{request.__qualname__}; call them with {request.__qualname__}(...)."
        )
    if isinstance(request, IEvent):
        return ConfigurationError(
            f"{type(request).__qualname__} is an event, not a request: events are emitted by "
            "handlers (their 'events' property) or consumed with EventMediator.send()."
        )
    if not isinstance(request, IRequest):
        return ConfigurationError(
            f"send() and stream() take a request (an instance of a cqrs.Request or "
            f"cqrs.DCRequest subclass), got {type(request).__qualname__}: {request!r:.80}."
        )
    request_type: type[Any] = cast(Any, request).__class__
    return RequestHandlerDoesNotExist(
        f"No handler is bound for {request_type.__qualname__}. Bound request types: "
        f"{describe_types(request_map)}. Bind it in commands_mapper or "
        f"queries_mapper: mapper.bind({request_type.__qualname__}, YourHandler)."
    )
