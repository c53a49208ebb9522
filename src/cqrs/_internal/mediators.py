"""The mediators: ``send`` a request, ``stream`` a request, ``send`` a consumed event."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar, cast

from cqrs._internal.di.scope import (
    ScopeStrategy,
    current_container,
    enter_scope,
    resolve_concurrent_event_handling,
    scope_is_bound,
    wrap_container,
)
from cqrs._internal.errors import ConfigurationError, RequestHandlerDoesNotExist
from cqrs._internal.events.emitter import EventEmitter
from cqrs._internal.events.fanout import EventPublisher
from cqrs._internal.events.processor import EventProcessor
from cqrs._internal.handlers.cor import CORRequestHandler, build_chain
from cqrs._internal.handlers.request import RequestHandler, StreamingRequestHandler
from cqrs._internal.messages.events import IEvent
from cqrs._internal.pipeline.middleware import (
    HandleType,
    Middleware,
    MiddlewareChain,
    active,
    fold,
    switchable,
)
from cqrs._internal.registry import EventMap, RequestMap, describe_types
from cqrs._internal.streaming import RequestStream, StreamEvents

__all__ = ["EventMediator", "RequestMediator", "StreamingRequestMediator"]

logger = logging.getLogger("cqrs")

T = TypeVar("T")


def _middlewares_of(chain: MiddlewareChain | None) -> tuple[Middleware, ...]:
    return chain.middlewares if chain is not None else ()


class _Base:
    """What request and streaming mediators share: lookup, container, scopes, events.

    ``dispatcher_type`` is accepted for 4.x signatures and ignored: dispatch is built in.
    """

    def __init__(
        self,
        request_map: RequestMap,
        container: Any,
        event_emitter: EventEmitter | None = None,
        middleware_chain: MiddlewareChain | None = None,
        event_map: EventMap | None = None,
        max_concurrent_event_handlers: int = 1,
        concurrent_event_handle_enable: bool | None = None,
        scope_strategy: ScopeStrategy = ScopeStrategy.NONE,
        *,
        dispatcher_type: Any = None,
        event_publisher: EventPublisher | None = None,
    ) -> None:
        if not isinstance(request_map, RequestMap):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise ConfigurationError(
                f"request_map must be a cqrs.RequestMap, got {type(request_map).__qualname__}."
            )
        self._request_map = request_map
        self._container = wrap_container(container)
        self._scope_strategy = ScopeStrategy(scope_strategy)
        self._unscoped = self._scope_strategy is ScopeStrategy.NONE
        concurrent = resolve_concurrent_event_handling(
            self._scope_strategy, concurrent_event_handle_enable
        )
        self._middlewares = _middlewares_of(middleware_chain)
        self._switchable = switchable(self._middlewares)
        self._plans: dict[type[Any], _Plan] = {}
        self._processor = EventProcessor(
            event_map,
            event_emitter,
            max_concurrent_event_handlers,
            concurrent,
            publisher=event_publisher,
        )
        if event_emitter is not None and event_emitter.scope_strategy is not self._scope_strategy:
            logger.warning(
                "The event emitter uses scope strategy %s but the mediator uses %s; event "
                "handlers will not share the mediator's scopes.",
                event_emitter.scope_strategy.value,
                self._scope_strategy.value,
            )

    @property
    def request_map(self) -> RequestMap:
        """The request type → handler bindings."""
        return self._request_map

    @property
    def event_processor(self) -> EventProcessor:
        """Runs the events produced by handlers."""
        return self._processor

    def _plan_for(self, request: object) -> _Plan:
        """The cached plan for ``type(request)``; raises when nothing is bound."""
        request_type = request.__class__
        binding = self._request_map.handler_for(request_type)
        if binding is None:
            raise RequestHandlerDoesNotExist(
                f"No handler is bound for {request_type.__qualname__}. Bound request types: "
                f"{describe_types(self._request_map)}. Bind it in commands_mapper or "
                f"queries_mapper: mapper.bind({request_type.__qualname__}, YourHandler)."
            )
        plan = self._plans[request_type] = _Plan(binding, self._container)
        return plan

    def _middlewares_now(self) -> Sequence[Middleware]:
        """The middlewares that take part in this call (see ``Middleware.enabled``)."""
        middlewares = self._middlewares
        return active(middlewares) if self._switchable else middlewares

    def _invoke(self, handle: HandleType, request: object) -> Awaitable[Any]:
        """``handle(request)`` through the active middlewares; a plain function, so the hot
        path pays for no extra coroutine."""
        middlewares = self._middlewares_now() if self._middlewares else ()
        return fold(middlewares, handle)(request) if middlewares else handle(request)


class _Plan:
    """How one request type is handled: its binding, and what is known about it up front."""

    __slots__ = ("binding", "build", "chain", "streaming")

    def __init__(self, binding: Any, container: Any) -> None:
        self.binding = binding
        self.chain = isinstance(binding, list)
        self.streaming = not self.chain and issubclass(binding, StreamingRequestHandler)
        self.build = None if self.chain or self.streaming else container.factory(binding)


class RequestMediator(_Base):
    """Sends a command or query to its one handler and processes the events it produced.

    ``await mediator.send(request)`` looks up the handler bound to ``type(request)`` (nearest
    bound base class if the exact type is not bound), resolves a new handler instance from the
    container, runs it through the middlewares, then processes its events (domain events to
    their handlers, notification events to the broker) and returns the handler's result.

    Raises ``RequestHandlerDoesNotExist`` (a ``KeyError``) when nothing is bound, and
    ``ConfigurationError`` (a ``TypeError``) when a streaming handler is bound. An exception
    from the handler or a middleware propagates and no event is processed. Event failures
    follow the emitter's failure policy. Cancelling ``send`` cancels its event handlers.
    """

    async def send(self, request: object) -> Any:
        """Handle ``request`` and return the handler's result; see the class docstring."""
        plan = self._plans.get(request.__class__) or self._plan_for(request)
        build = plan.build
        if build is not None and self._unscoped and not scope_is_bound():
            handler = build()
            response = await self._invoke(handler.handle, request)
            events = handler.events
            if events:
                await self._processor.emit_events(events)
            return response
        if self._scope_strategy is ScopeStrategy.SEND:
            async with enter_scope(self._container) as scoped:
                return await self._dispatch(plan, request, scoped)
        return await self._dispatch(plan, request, None)

    async def _dispatch(self, plan: _Plan, request: Any, scoped: Any) -> Any:
        container = scoped or self._container
        binding = plan.binding
        if plan.chain:
            chain = cast(list[type[CORRequestHandler[Any, Any]]], binding)
            response, events = await self._run_chain(chain, request, container)
        elif plan.streaming:
            raise ConfigurationError(
                f"{type(request).__qualname__} is bound to the streaming handler "
                f"{binding.__qualname__}; stream it with StreamingRequestMediator.stream(), "
                "or bind a RequestHandler to send it."
            )
        elif self._scope_strategy is ScopeStrategy.HANDLER:
            async with enter_scope(self._container, reuse_existing=False) as handler_scope:
                response, events = await self._run(binding, request, handler_scope)
        else:
            response, events = await self._run(binding, request, container)
        if events:
            await self._processor.emit_events(events, scoped)
        return response

    async def _run(
        self, handler_type: type[RequestHandler[Any, Any]], request: Any, container: Any
    ) -> tuple[Any, Sequence[IEvent]]:
        handler = await container.resolve(handler_type)
        response = await self._invoke(handler.handle, request)
        return response, handler.events

    async def _run_chain(
        self, classes: list[type[CORRequestHandler[Any, Any]]], request: Any, container: Any
    ) -> tuple[Any, Sequence[IEvent]]:
        links = [await container.resolve(cls) for cls in classes]
        head = build_chain(links)
        response = await self._invoke(head.handle, request)
        events: list[IEvent] = []
        for link in links:
            events.extend(link.events)
        return response, events


class StreamingRequestMediator(_Base):
    """Streams the results of an async-generator handler, processing events after each item.

    ``mediator.stream(request)`` (no ``await``) returns a :class:`RequestStream` to consume
    with ``async for`` or ``async with``. The handler lookup happens at the call, so a request
    with no handler raises ``RequestHandlerDoesNotExist`` right there; the handler itself
    starts on the first ``__anext__``.

    ``stream_events`` picks when each item's events run (:class:`StreamEvents`): before the
    item reaches the consumer (default, as 4.x) or concurrently with the stream. Middlewares
    apply to streams: one with a ``stream(request, items)`` method wraps the stream, any other
    runs around each item. The 4.x defaults for this mediator: at most 10 concurrent event
    handlers when built by bootstrap.
    """

    def __init__(
        self,
        request_map: RequestMap,
        container: Any,
        event_emitter: EventEmitter | None = None,
        middleware_chain: MiddlewareChain | None = None,
        event_map: EventMap | None = None,
        max_concurrent_event_handlers: int = 1,
        concurrent_event_handle_enable: bool | None = None,
        scope_strategy: ScopeStrategy = ScopeStrategy.NONE,
        *,
        dispatcher_type: Any = None,
        event_publisher: EventPublisher | None = None,
        stream_events: StreamEvents | str = StreamEvents.BEFORE_ITEM,
    ) -> None:
        super().__init__(
            request_map,
            container,
            event_emitter,
            middleware_chain,
            event_map,
            max_concurrent_event_handlers,
            concurrent_event_handle_enable,
            scope_strategy,
            dispatcher_type=dispatcher_type,
            event_publisher=event_publisher,
        )
        self._stream_events = _stream_events(stream_events)

    @property
    def stream_events(self) -> StreamEvents:
        """The default events policy of this mediator's streams."""
        return self._stream_events

    def stream(
        self, request: object, *, events: StreamEvents | str | None = None
    ) -> RequestStream[Any]:
        """Start streaming ``request``; ``events`` overrides the mediator's events policy.

        Raises ``RequestHandlerDoesNotExist`` when no handler is bound and
        ``ConfigurationError`` when the bound handler is not a streaming handler.
        """
        plan = self._plans.get(request.__class__) or self._plan_for(request)
        binding = plan.binding
        if not plan.streaming:
            raise ConfigurationError(
                f"{type(request).__qualname__} is bound to {_name(binding)}, which is not a "
                "streaming handler; send it with RequestMediator.send(), or bind a "
                "StreamingRequestHandler to stream it."
            )
        opener = self._opener(cast(type[Any], binding))
        policy = self._stream_events if events is None else _stream_events(events)
        return RequestStream(request, opener, self._processor, self._middlewares_now(), policy)

    def _opener(self, handler_type: type[Any]) -> Any:
        strategy = self._scope_strategy
        container = self._container

        async def open_handler(stack: contextlib.AsyncExitStack) -> tuple[Any, Any]:
            if strategy is ScopeStrategy.NONE:
                return await container.resolve(handler_type), None
            scoped = current_container() if strategy is ScopeStrategy.SEND else None
            if scoped is None:
                open_scope = getattr(container.root, "open_scope", None)
                scoped = (
                    await stack.enter_async_context(open_scope())
                    if open_scope is not None
                    else container
                )
            handler = await scoped.resolve(handler_type)
            return handler, (scoped if strategy is ScopeStrategy.SEND else None)

        return open_handler


def _name(binding: Any) -> str:
    if isinstance(binding, list):
        return "a chain of handlers"
    return str(getattr(binding, "__qualname__", binding))


def _stream_events(value: StreamEvents | str) -> StreamEvents:
    try:
        return StreamEvents(value)
    except ValueError:
        raise ConfigurationError(
            f"stream_events must be one of {[e.value for e in StreamEvents]}, got {value!r}."
        ) from None


class EventMediator:
    """Consumer side: dispatches an incoming event to the handlers bound for its type.

    Handlers run one after another in bind order, each through the middlewares (4.x ignored
    them here); the follow-up events a handler produces are dispatched the same way, depth
    first, before the next handler runs. Handler exceptions propagate. An event with no
    handler is logged at WARNING and ignored.
    """

    def __init__(
        self,
        event_map: EventMap,
        container: Any,
        middleware_chain: MiddlewareChain | None = None,
        scope_strategy: ScopeStrategy = ScopeStrategy.NONE,
        *,
        dispatcher_type: Any = None,
    ) -> None:
        self._event_map = event_map
        self._container = wrap_container(container)
        self._middlewares = _middlewares_of(middleware_chain)
        self._switchable = switchable(self._middlewares)
        self._scope_strategy = ScopeStrategy(scope_strategy)

    @property
    def event_map(self) -> EventMap:
        """The event type → handler classes bindings."""
        return self._event_map

    async def send(self, event: IEvent) -> None:
        """Dispatch ``event`` and its follow-ups; see the class docstring."""
        if self._scope_strategy is ScopeStrategy.SEND:
            async with enter_scope(self._container) as scoped:
                await self._dispatch(event, scoped)
        else:
            await self._dispatch(event, self._container)

    async def _dispatch(self, event: IEvent, container: Any) -> None:
        handlers = self._event_map.get(type(event))
        if not handlers:
            logger.warning(
                "No handler is bound for %s; bound event types: %s.",
                type(event).__qualname__,
                describe_types(self._event_map),
            )
            return
        for handler_type in handlers:
            if self._scope_strategy is ScopeStrategy.HANDLER:
                async with enter_scope(self._container, reuse_existing=False) as scoped:
                    follow = await self._handle(handler_type, event, scoped)
            else:
                follow = await self._handle(handler_type, event, container)
            for child in follow:
                await self._dispatch(child, container)

    async def _handle(self, handler_type: Any, event: IEvent, container: Any) -> Sequence[IEvent]:
        handler = await container.resolve(handler_type)
        middlewares = active(self._middlewares) if self._switchable else self._middlewares
        await fold(middlewares, handler.handle)(event)
        return tuple(handler.events)
