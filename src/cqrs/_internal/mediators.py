"""The mediators: ``send`` a request, ``stream`` a request, ``send`` a consumed event."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import Any, TypeVar

from cqrs._internal.di.scope import (
    ScopeStrategy,
    bound_scope,
    current_container,
    enter_scope,
    wrap_container,
)
from cqrs._internal.dispatch.events import EventDispatcher
from cqrs._internal.dispatch.invokers import (
    RequestInvoker,
    StreamInvoker,
    invoker_for,
    note_resolve_failure,
)
from cqrs._internal.errors import ConfigurationError
from cqrs._internal.events.processor import EventProcessor
from cqrs._internal.events.publishers import EventPublisher
from cqrs._internal.messages.events import IEvent
from cqrs._internal.messages.requests import IRequest
from cqrs._internal.pipeline.gate import chain_plan
from cqrs._internal.pipeline.middleware import Middleware, MiddlewareChain, fold
from cqrs._internal.registry import EventMap, RequestMap
from cqrs._internal.settings import Settings, StreamEvents, StreamEventsName, parse_stream_events
from cqrs._internal.streaming import RequestStream

__all__ = ["EventMediator", "RequestMediator", "StreamingRequestMediator"]

logger = logging.getLogger("cqrs")

T = TypeVar("T")


class _Base:
    """What request and streaming mediators share: lookup, container, scopes, events.

    The 4.x constructor arguments build a :class:`Settings`; ``settings=`` (what bootstrap
    passes) replaces them. ``dispatcher_type`` is accepted for 4.x signatures and ignored:
    dispatch is built in.
    """

    def __init__(
        self,
        request_map: RequestMap,
        container: Any,
        event_emitter: Any = None,
        middleware_chain: MiddlewareChain | None = None,
        event_map: EventMap | None = None,
        max_concurrent_event_handlers: int = 1,
        concurrent_event_handle_enable: bool | None = None,
        scope_strategy: ScopeStrategy = ScopeStrategy.NONE,
        *,
        dispatcher_type: Any = None,
        event_publisher: EventPublisher | None = None,
        settings: Settings | None = None,
    ) -> None:
        if not isinstance(request_map, RequestMap):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise ConfigurationError(
                f"request_map must be a cqrs.RequestMap, got {type(request_map).__qualname__}."
            )
        if settings is None:
            settings = Settings(
                max_concurrent_event_handlers=max_concurrent_event_handlers,
                concurrent_event_handle_enable=concurrent_event_handle_enable,
                scope_strategy=scope_strategy,
                event_publisher=event_publisher,
            )
        self._settings = settings
        self._request_map = request_map
        self._container = wrap_container(container)
        self._scope_strategy = settings.scope_strategy
        self._middlewares = () if middleware_chain is None else middleware_chain.middlewares
        self._gate, self._quiet, self._invoke = chain_plan(self._middlewares)
        self._invokers: dict[type[Any], RequestInvoker] = {}
        self._processor = EventProcessor(event_map, event_emitter, settings=settings)
        emitter_strategy = getattr(event_emitter, "scope_strategy", self._scope_strategy)
        if event_emitter is not None and emitter_strategy is not self._scope_strategy:
            logger.warning(
                "The event emitter uses scope strategy %s but the mediator uses %s; event "
                "handlers will not share the mediator's scopes.",
                getattr(emitter_strategy, "value", emitter_strategy),
                self._scope_strategy.value,
            )

    @property
    def settings(self) -> Settings:
        """The options this mediator was built with."""
        return self._settings

    @property
    def request_map(self) -> RequestMap:
        """The request type → handler bindings."""
        return self._request_map

    @property
    def event_processor(self) -> EventProcessor:
        """Runs the events produced by handlers."""
        return self._processor

    def _invoker_for(self, request: object) -> RequestInvoker:
        """The invoker for ``request.__class__`` (what ``isinstance`` goes by; calls look up
        ``type(request)`` first, which is the same class but for proxies), compiled once;
        raises when nothing is bound."""
        request_type: type[Any] = request.__class__
        invoker = self._invokers.get(request_type)
        if invoker is None:
            invoker = invoker_for(request, self._request_map, self._container, self._scope_strategy)
            self._invokers[request_type] = invoker
        return invoker

    def _middlewares_now(self) -> Sequence[Middleware]:
        """The middlewares that take part in this call (see ``Middleware.enabled``)."""
        gate = self._gate
        return () if gate is None else gate()


class RequestMediator(_Base):
    """Sends a command or query to its one handler and processes the events it produced.

    ``await mediator.send(request)`` looks up the handler bound to ``type(request)`` (nearest
    bound base class if the exact type is not bound), resolves a new handler instance from the
    container, runs it through the middlewares, then processes its events (domain events to
    their handlers, notification events to the broker) and returns the handler's result.

    Raises ``RequestHandlerDoesNotExist`` (a ``KeyError``) when nothing is bound, and
    ``ConfigurationError`` (a ``TypeError``) when a streaming handler is bound. An exception
    from the handler or a middleware propagates and no event is processed. Event failures
    follow the emitter's failure policy. Cancelling ``send`` cancels its event handlers and
    waits until their cleanup has run.
    """

    async def send(self, request: IRequest[T]) -> T:
        """Handle ``request`` and return the handler's result; see the class docstring."""
        invoker = self._invokers.get(type(request)) or self._invoker_for(request)
        build = invoker.build
        if build is not None and bound_scope() is None:
            try:
                handler: Any = build()
            except Exception as exc:
                note_resolve_failure(exc, invoker, request)
                raise
            if self._quiet() is False:
                response = await handler.handle(request)
            else:
                gate = self._gate
                middlewares = () if gate is None else gate()
                if middlewares:
                    response = await fold(middlewares, handler.handle)(request)
                else:
                    response = await handler.handle(request)
            no_events = invoker.no_events
            if no_events is not None and type(handler).events is no_events:  # pyright: ignore[reportUnknownMemberType]
                return response
            events: Sequence[IEvent] = handler.events
            if not events:
                return response
            inline = self._processor.inline
            kind: type[Any] = type(events)
            if (
                inline is not None
                and kind is list
                and len(events) == 1
                and "emit" not in inline.attrs
                and bound_scope() is None
            ):
                # One event: run its only handler here, as EventEmitter.run_events runs the
                # only job of a batch, without a coroutine of its own.
                compiled = inline.compiled
                if compiled.version != compiled.counter["changes"]:
                    compiled.forget()
                event = events[0]
                try:
                    target = compiled.solo[type(event)]
                except KeyError:
                    target = compiled.solo_for(event.__class__)
                if target is not None:
                    try:
                        try:
                            event_handler = target.build()  # pyright: ignore[reportOptionalCall]
                        except Exception as exc:
                            note_resolve_failure(exc, target, event)
                            raise
                        await event_handler.handle(event)
                        # (No events to read while its class keeps the base's ``events``.)
                        if type(event_handler).events is target.no_events:  # pyright: ignore[reportUnknownMemberType]
                            return response
                        follow = event_handler.events
                    except BaseException as exc:
                        await inline.emitter.handler_failed(event, target, exc)
                        return response
                    if follow:
                        await inline.emitter.run_follow_ups(follow, event, target, inline.limit)
                    return response
            await self._processor.process(events)
            return response
        if self._scope_strategy is ScopeStrategy.SEND:
            async with enter_scope(self._container) as scoped:
                return await self._dispatch(invoker, request, scoped)
        return await self._dispatch(invoker, request, None)

    async def _dispatch(self, invoker: RequestInvoker, request: Any, scoped: Any) -> Any:
        if isinstance(invoker, StreamInvoker):
            raise ConfigurationError(
                f"{type(request).__qualname__} is bound to the streaming handler "
                f"{invoker.handler_type.__qualname__}; stream it with "
                "StreamingRequestMediator.stream(), or bind a RequestHandler to send it."
            )
        response, events = await invoker.invoke(request, scoped or self._container, self._invoke)
        if events:
            await self._processor.process(events, scoped)
        return response


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
        event_emitter: Any = None,
        middleware_chain: MiddlewareChain | None = None,
        event_map: EventMap | None = None,
        max_concurrent_event_handlers: int = 1,
        concurrent_event_handle_enable: bool | None = None,
        scope_strategy: ScopeStrategy = ScopeStrategy.NONE,
        *,
        dispatcher_type: Any = None,
        event_publisher: EventPublisher | None = None,
        stream_events: StreamEvents | StreamEventsName | None = None,
        settings: Settings | None = None,
    ) -> None:
        if settings is None:
            settings = Settings(
                max_concurrent_event_handlers=max_concurrent_event_handlers,
                concurrent_event_handle_enable=concurrent_event_handle_enable,
                scope_strategy=scope_strategy,
                event_publisher=event_publisher,
                stream_events=parse_stream_events(stream_events or StreamEvents.BEFORE_ITEM),
            )
        elif stream_events is not None:
            settings = settings.replace(stream_events=parse_stream_events(stream_events))
        super().__init__(
            request_map,
            container,
            event_emitter,
            middleware_chain,
            event_map,
            dispatcher_type=dispatcher_type,
            settings=settings,
        )

    @property
    def stream_events(self) -> StreamEvents:
        """The default events policy of this mediator's streams."""
        return self._settings.stream_events

    def stream(
        self, request: IRequest[T], *, events: StreamEvents | StreamEventsName | None = None
    ) -> RequestStream[T]:
        """Start streaming ``request``; ``events`` overrides the mediator's events policy.

        Raises ``RequestHandlerDoesNotExist`` when no handler is bound and
        ``ConfigurationError`` when the bound handler is not a streaming handler, or when
        ``request`` is not a request.
        """
        invoker = self._invokers.get(type(request)) or self._invoker_for(request)
        if not isinstance(invoker, StreamInvoker):
            raise ConfigurationError(
                f"{type(request).__qualname__} is bound to {_name(invoker)}, which is not a "
                "streaming handler; send it with RequestMediator.send(), or bind a "
                "StreamingRequestHandler to stream it."
            )
        policy = self._settings.stream_events if events is None else parse_stream_events(events)
        return RequestStream(
            request,
            self._opener(invoker, request),
            self._processor,
            self._middlewares_now(),
            policy,
        )

    def _opener(self, invoker: StreamInvoker, request: Any) -> Any:
        strategy = self._scope_strategy
        container = self._container

        async def open_handler(stack: contextlib.AsyncExitStack) -> tuple[Any, Any, Any, bool]:
            if strategy is ScopeStrategy.NONE:
                handler, agen = await invoker.open(request, container)
                return handler, agen, None, False
            scoped = current_container() if strategy is ScopeStrategy.SEND else None
            opened = False
            if scoped is None:
                open_scope = getattr(container.root, "open_scope", None)
                if open_scope is not None:
                    scoped = await stack.enter_async_context(open_scope())
                    opened = True
                else:
                    scoped = container
            handler, agen = await invoker.open(request, scoped)
            return handler, agen, (scoped if strategy is ScopeStrategy.SEND else None), opened

        return open_handler


def _name(invoker: RequestInvoker) -> str:
    handler_type = getattr(invoker, "handler_type", None)
    if handler_type is None:
        return "a chain of handlers"
    return str(getattr(handler_type, "__qualname__", handler_type))


class EventMediator:
    """Consumer side: dispatches an incoming event to the handlers bound for its type.

    Handlers run one after another in bind order, each through the middlewares (4.x ignored
    them here); the follow-up events a handler produces are dispatched the same way, depth
    first, before the next handler runs. Handler exceptions propagate; a handler that raises
    ``CancelledError`` by itself fails with ``EventHandlerCancelled``; follow-ups nested deeper
    than ``max_event_depth`` raise ``EventCycleError``. An event with no handler is logged at
    WARNING and ignored.
    """

    def __init__(
        self,
        event_map: EventMap,
        container: Any,
        middleware_chain: MiddlewareChain | None = None,
        scope_strategy: ScopeStrategy = ScopeStrategy.NONE,
        *,
        dispatcher_type: Any = None,
        settings: Settings | None = None,
    ) -> None:
        if settings is None:
            settings = Settings(scope_strategy=scope_strategy)
        self._settings = settings
        self._event_map = event_map
        self._container = wrap_container(container)
        self._middlewares = () if middleware_chain is None else middleware_chain.middlewares
        self._call = chain_plan(self._middlewares).call
        self._scope_strategy = settings.scope_strategy
        self._dispatcher = EventDispatcher(
            event_map,
            self._container,
            self._scope_strategy,
            max_event_depth=settings.max_event_depth,
        )

    @property
    def settings(self) -> Settings:
        """The options this mediator was built with."""
        return self._settings

    @property
    def event_map(self) -> EventMap:
        """The event type → handler classes bindings."""
        return self._event_map

    async def send(self, event: IEvent) -> None:
        """Dispatch ``event`` and its follow-ups; see the class docstring."""
        if self._scope_strategy is ScopeStrategy.SEND:
            async with enter_scope(self._container) as scoped:
                await self._dispatcher.dispatch(event, scoped, self._call)
        else:
            await self._dispatcher.dispatch(event, self._container, self._call)
