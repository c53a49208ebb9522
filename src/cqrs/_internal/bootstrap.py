"""The one builder behind every 4.x ``bootstrap*`` and ``setup_*`` function.

Each public function turns its options into one frozen :class:`Settings` (validated there),
then calls :func:`build_emitter`, :func:`build_middlewares` and :func:`build_request_map` and
constructs a mediator, handing the same settings to the emitter and the mediator. The 4.x
signatures are thin adapters: a new option is a ``Settings`` field plus a keyword here. Every
problem is reported before the mediator exists, with the argument's name and the fix.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, cast

from cqrs._internal.brokers.devnull import DevnullMessageBroker
from cqrs._internal.brokers.protocol import MessageBroker
from cqrs._internal.di.protocol import SupportsCheck
from cqrs._internal.di.scope import ScopeStrategy
from cqrs._internal.errors import ConfigurationError
from cqrs._internal.events.emitter import EventEmitter
from cqrs._internal.events.publishers import EventPublisher
from cqrs._internal.mediators import EventMediator, RequestMediator, StreamingRequestMediator
from cqrs._internal.pipeline.logging import LoggingMiddleware
from cqrs._internal.pipeline.middleware import Middleware, MiddlewareChain
from cqrs._internal.registry import EventMap, RequestMap
from cqrs._internal.serialization.json import EventSerializer
from cqrs._internal.settings import (
    DEFAULT_MAX_EVENT_DEPTH,
    ErrorHook,
    FailurePolicy,
    Settings,
    StreamEvents,
    StreamEventsName,
)

__all__ = [
    "adapt_container",
    "bootstrap",
    "bootstrap_events",
    "bootstrap_streaming",
    "build_emitter",
    "build_event_map",
    "build_middlewares",
    "build_request_map",
    "run_on_startup",
    "setup_event_emitter",
    "setup_event_mediator",
    "setup_mediator",
    "setup_streaming_mediator",
]

Mapper = Callable[[Any], None]

_LOGGING = LoggingMiddleware()
"""The logging middleware bootstrap appends; it keeps no state, so every chain shares it."""


def adapt_container(di_container: Any) -> Any:
    """Wrap a raw ``di.Container`` in :class:`DIContainer`; check anything else is a container.

    Raises ``ConfigurationError`` for an object without ``async resolve(type)``.
    """
    di_module = sys.modules.get("di")
    if di_module is not None and isinstance(di_container, di_module.Container):
        adapted = _di_adapter()()
        adapted.attach_external_container(di_container)
        return adapted
    if not callable(getattr(di_container, "resolve", None)):
        raise ConfigurationError(
            f"di_container must be a di.Container or an object with 'async def resolve(type)' "
            f"(a cqrs Container), got {type(di_container).__qualname__}."
        )
    return di_container


@functools.cache
def _di_adapter() -> type[Any]:
    """The ``di`` adapter class, imported on first use (``di`` is loaded only when used)."""
    from cqrs._internal.di.di_adapter import DIContainer

    return DIContainer


def check_dependencies_of(
    container: Any, request_maps: Iterable[RequestMap], event_map: EventMap | None = None
) -> None:
    """Check, without building anything, that ``container`` can build every bound handler.

    Each handler of the maps (chains included) goes to ``container.check(handler)`` when the
    container has one (:class:`~cqrs.container.SupportsCheck`: the bundled ``di``, static and
    dependency-injector adapters); other containers are not checked. Raises
    ``ConfigurationError`` listing every failure as "while resolving <handler> for <request
    or event> <type>: <the container's error>", the first error chained as the cause.
    """
    if not isinstance(container, SupportsCheck):
        return
    pairs: list[tuple[str, Any, Any]] = []
    for request_map in request_maps:
        for request_type, bound in request_map.items():
            handlers = cast("list[Any]", bound) if isinstance(bound, list) else [bound]
            pairs += [("request", request_type, h) for h in handlers]
    if event_map is not None:
        for event_type, handlers in event_map.items():
            pairs += [("event", event_type, h) for h in handlers]
    failures: list[str] = []
    first: Exception | None = None
    checked: set[Any] = set()
    for kind, message_type, handler in pairs:
        if handler in checked:
            continue
        checked.add(handler)
        try:
            container.check(handler)
        except Exception as exc:
            first = first or exc
            failures.append(
                f"while resolving {_qualname(handler)} for {kind} {_qualname(message_type)}: "
                f"{type(exc).__name__}: {exc}"
            )
    if failures:
        raise ConfigurationError(
            f"{len(failures)} handler(s) cannot be built by the container:\n  "
            + "\n  ".join(failures)
            + "\nBind or register their dependencies before bootstrap, or pass "
            "check_dependencies=False to defer the error to the first request."
        ) from first


def _qualname(value: Any) -> str:
    return str(getattr(value, "__qualname__", value))


_SETTINGS_SEEN: dict[tuple[Any, ...], Settings] = {}
_SETTINGS_KEPT = 64
_BOOTSTRAP_FIELDS = (
    "max_concurrent_event_handlers",
    "concurrent_event_handle_enable",
    "scope_strategy",
    "stream_events",
    "event_failure_policy",
    "on_event_error",
    "event_publisher",
    "serializer",
    "max_event_depth",
)


def settings_for(*values: Any) -> Settings:
    """The :class:`Settings` of a one-call bootstrap, given its options in the order of
    ``_BOOTSTRAP_FIELDS``; the same object for the same options (the seed's FastAPI pattern
    bootstraps on every request). Unhashable options are built afresh each time; at most 64
    distinct sets are kept."""
    try:
        return _SETTINGS_SEEN[values]
    except KeyError:
        pass
    except TypeError:  # an unhashable option
        return Settings(**dict(zip(_BOOTSTRAP_FIELDS, values, strict=True)))
    settings = Settings(**dict(zip(_BOOTSTRAP_FIELDS, values, strict=True)))
    if len(_SETTINGS_SEEN) >= _SETTINGS_KEPT:
        _SETTINGS_SEEN.pop(next(iter(_SETTINGS_SEEN)))
    _SETTINGS_SEEN[values] = settings
    return settings


def run_on_startup(on_startup: Iterable[Callable[[], object]] | None) -> None:
    """Call every ``on_startup`` hook, in order, with no arguments (4.x: before building)."""
    for hook in on_startup or ():
        if not callable(hook):
            raise ConfigurationError(f"on_startup items must be callables, got {hook!r}.")
        hook()


def _check_mapper(name: str, mapper: object) -> None:
    if mapper is not None and not callable(mapper):
        raise ConfigurationError(
            f"{name} must be a function that takes the map and binds handlers, got {mapper!r}."
        )


def _check_broker(message_broker: object) -> None:
    if not callable(getattr(message_broker, "send_message", None)):
        raise ConfigurationError(
            "message_broker must have 'async def send_message(message)' (a cqrs "
            f"MessageBroker), got {type(message_broker).__qualname__}."
        )


def build_request_map(*mappers: Mapper | None) -> RequestMap:
    """A RequestMap filled by each mapper in turn (commands, then queries)."""
    request_map = RequestMap()
    for mapper in mappers:
        if mapper is not None:
            mapper(request_map)
    return request_map


def build_event_map(mapper: Mapper | None) -> EventMap:
    """An EventMap filled by ``mapper`` (called once), empty for ``None``."""
    event_map = EventMap()
    if mapper is not None:
        mapper(event_map)
    return event_map


def build_middlewares(middlewares: Iterable[Middleware] | None) -> MiddlewareChain:
    """The chain in the given order, with a LoggingMiddleware appended unless one is there."""
    chain = MiddlewareChain()
    if not middlewares:  # the common case, without scanning an empty list
        chain.add(_LOGGING)
        return chain
    items = list(middlewares)
    if not any(isinstance(m, LoggingMiddleware) for m in items):
        items.append(_LOGGING)
    chain.set(items)
    return chain


def build_emitter(
    container: Any,
    domain_events_mapper: Mapper | None,
    message_broker: MessageBroker | None,
    settings: Settings,
) -> EventEmitter:
    """An EventEmitter over an EventMap filled by ``domain_events_mapper``."""
    _check_mapper("domain_events_mapper", domain_events_mapper)
    if message_broker is not None:
        _check_broker(message_broker)
    return EventEmitter(
        build_event_map(domain_events_mapper), container, message_broker, settings=settings
    )


def setup_event_emitter(
    container: Any,
    domain_events_mapper: Mapper | None = None,
    message_broker: MessageBroker | None = None,
    scope_strategy: ScopeStrategy = ScopeStrategy.NONE,
    *,
    serializer: EventSerializer | None = None,
    event_failure_policy: FailurePolicy = "log",
    on_event_error: ErrorHook | None = None,
    settings: Settings | None = None,
) -> EventEmitter:
    """Build the EventEmitter of a mediator (4.x ``setup_event_emitter``).

    Without ``message_broker`` notification events go to a :class:`DevnullMessageBroker`, as
    in 4.x. ``settings`` replaces the other options when given.
    """
    _check_mapper("domain_events_mapper", domain_events_mapper)
    broker = message_broker if message_broker is not None else DevnullMessageBroker()
    _check_broker(broker)
    return EventEmitter(
        build_event_map(domain_events_mapper),
        container,
        broker,
        scope_strategy,
        serializer=serializer,
        failure_policy=event_failure_policy,
        on_error=on_event_error,
        settings=settings,
    )


def setup_mediator(
    event_emitter: EventEmitter,
    container: Any,
    middlewares: Iterable[Middleware],
    commands_mapper: Mapper | None = None,
    queries_mapper: Mapper | None = None,
    event_map: EventMap | None = None,
    max_concurrent_event_handlers: int = 1,
    concurrent_event_handle_enable: bool | None = None,
    scope_strategy: ScopeStrategy = ScopeStrategy.NONE,
    *,
    event_publisher: EventPublisher | None = None,
    settings: Settings | None = None,
) -> RequestMediator:
    """Build a RequestMediator from an emitter, a container and mappers (4.x API).

    ``settings`` replaces the scheduling options when given.
    """
    _check_mapper("commands_mapper", commands_mapper)
    _check_mapper("queries_mapper", queries_mapper)
    return RequestMediator(
        build_request_map(commands_mapper, queries_mapper),
        container,
        event_emitter,
        build_middlewares(middlewares),
        event_map if event_map is not None else getattr(event_emitter, "event_map", None),
        max_concurrent_event_handlers,
        concurrent_event_handle_enable,
        scope_strategy,
        event_publisher=event_publisher,
        settings=settings,
    )


def setup_streaming_mediator(
    event_emitter: EventEmitter,
    container: Any,
    middlewares: Iterable[Middleware],
    commands_mapper: Mapper | None = None,
    queries_mapper: Mapper | None = None,
    domain_events_mapper: Mapper | None = None,
    max_concurrent_event_handlers: int = 10,
    concurrent_event_handle_enable: bool | None = None,
    scope_strategy: ScopeStrategy = ScopeStrategy.NONE,
    *,
    event_publisher: EventPublisher | None = None,
    stream_events: StreamEvents | StreamEventsName = StreamEvents.BEFORE_ITEM,
    settings: Settings | None = None,
) -> StreamingRequestMediator:
    """Build a StreamingRequestMediator (4.x API).

    ``domain_events_mapper``, when given, is called once to fill the mediator's ``event_map``
    (as 4.x does); the events themselves run through ``event_emitter``'s map. ``settings``
    replaces the scheduling options when given.
    """
    _check_mapper("commands_mapper", commands_mapper)
    _check_mapper("queries_mapper", queries_mapper)
    _check_mapper("domain_events_mapper", domain_events_mapper)
    event_map: EventMap | None = (
        getattr(event_emitter, "event_map", None)
        if domain_events_mapper is None
        else build_event_map(domain_events_mapper)
    )
    return StreamingRequestMediator(
        build_request_map(commands_mapper, queries_mapper),
        container,
        event_emitter,
        build_middlewares(middlewares),
        event_map,
        max_concurrent_event_handlers,
        concurrent_event_handle_enable,
        scope_strategy,
        event_publisher=event_publisher,
        # with ``settings`` (what bootstrap_streaming passes) the policy is already in them
        stream_events=stream_events if settings is None else None,
        settings=settings,
    )


def _one_call(
    di_container: Any,
    on_startup: Iterable[Callable[[], object]] | None,
    domain_events_mapper: Mapper | None,
    message_broker: MessageBroker | None,
    settings: Settings,
) -> tuple[Any, EventEmitter]:
    """The common first steps of the one-call bootstraps: hooks, container, emitter."""
    run_on_startup(on_startup)
    container = adapt_container(di_container)
    broker = message_broker if message_broker is not None else DevnullMessageBroker()
    return container, build_emitter(container, domain_events_mapper, broker, settings)


def bootstrap(
    di_container: Any,
    message_broker: MessageBroker | None = None,
    middlewares: Sequence[Middleware] | None = None,
    commands_mapper: Mapper | None = None,
    domain_events_mapper: Mapper | None = None,
    queries_mapper: Mapper | None = None,
    on_startup: list[Callable[[], None]] | None = None,
    max_concurrent_event_handlers: int = 1,
    concurrent_event_handle_enable: bool = False,
    scope_strategy: ScopeStrategy = ScopeStrategy.NONE,
    *,
    serializer: EventSerializer | None = None,
    event_failure_policy: FailurePolicy = "log",
    on_event_error: ErrorHook | None = None,
    event_publisher: EventPublisher | None = None,
    max_event_depth: int = DEFAULT_MAX_EVENT_DEPTH,
    check_dependencies: bool = False,
) -> RequestMediator:
    """Build a RequestMediator in one call (4.x ``cqrs.requests.bootstrap.bootstrap``).

    ``di_container`` is a ``di.Container`` or any cqrs ``Container``; ``message_broker``
    defaults to a :class:`DevnullMessageBroker` of its own; ``on_startup`` hooks run first;
    a ``LoggingMiddleware`` is appended to ``middlewares`` unless one is there. Keyword-only
    extras: ``event_failure_policy`` (``"log"`` or ``"raise"``), ``on_event_error`` (a hook
    called with ``(event, handler, exc)``), ``event_publisher`` (your own scheduling strategy),
    ``max_event_depth`` (the longest follow-up chain; deeper raises ``EventCycleError``),
    ``check_dependencies`` (check now that the container can build every bound handler, see
    :func:`check_dependencies_of`, instead of failing at a handler's first request).
    Raises ``ConfigurationError`` for any argument of the wrong kind and for a bad binding.
    """
    settings = settings_for(
        max_concurrent_event_handlers,
        concurrent_event_handle_enable,
        scope_strategy,
        StreamEvents.BEFORE_ITEM,
        event_failure_policy,
        on_event_error,
        event_publisher,
        serializer,
        max_event_depth,
    )
    container, emitter = _one_call(
        di_container, on_startup, domain_events_mapper, message_broker, settings
    )
    mediator = setup_mediator(
        emitter,
        container,
        middlewares or (),
        commands_mapper,
        queries_mapper,
        emitter.event_map,
        settings=settings,
    )
    if check_dependencies:
        check_dependencies_of(container, (mediator.request_map,), emitter.event_map)
    return mediator


def bootstrap_streaming(
    di_container: Any,
    message_broker: MessageBroker | None = None,
    middlewares: Sequence[Middleware] | None = None,
    commands_mapper: Mapper | None = None,
    domain_events_mapper: Mapper | None = None,
    queries_mapper: Mapper | None = None,
    on_startup: list[Callable[[], None]] | None = None,
    max_concurrent_event_handlers: int = 10,
    concurrent_event_handle_enable: bool = False,
    scope_strategy: ScopeStrategy = ScopeStrategy.NONE,
    *,
    serializer: EventSerializer | None = None,
    event_failure_policy: FailurePolicy = "log",
    on_event_error: ErrorHook | None = None,
    event_publisher: EventPublisher | None = None,
    stream_events: StreamEvents | StreamEventsName = StreamEvents.BEFORE_ITEM,
    max_event_depth: int = DEFAULT_MAX_EVENT_DEPTH,
    check_dependencies: bool = False,
) -> StreamingRequestMediator:
    """Build a StreamingRequestMediator in one call (4.x ``bootstrap_streaming``).

    Same arguments as :func:`bootstrap`, plus ``stream_events``: ``"before_item"`` (default:
    an item is delivered after its events are done) or ``"concurrent"`` (delivered at once,
    events in a bounded background pipeline). ``concurrent_event_handle_enable=True`` lets up to
    ``max_concurrent_event_handlers`` (default 10) handlers run at once.
    """
    settings = settings_for(
        max_concurrent_event_handlers,
        concurrent_event_handle_enable,
        scope_strategy,
        stream_events,
        event_failure_policy,
        on_event_error,
        event_publisher,
        serializer,
        max_event_depth,
    )
    container, emitter = _one_call(
        di_container, on_startup, domain_events_mapper, message_broker, settings
    )
    mediator = setup_streaming_mediator(
        emitter, container, middlewares or (), commands_mapper, queries_mapper, settings=settings
    )
    if check_dependencies:
        check_dependencies_of(container, (mediator.request_map,), emitter.event_map)
    return mediator


def setup_event_mediator(
    container: Any,
    middlewares: Iterable[Middleware],
    events_mapper: Mapper | None = None,
    scope_strategy: ScopeStrategy = ScopeStrategy.NONE,
    *,
    settings: Settings | None = None,
) -> EventMediator:
    """Build an EventMediator (4.x ``cqrs.events.bootstrap.setup_mediator``)."""
    _check_mapper("events_mapper", events_mapper)
    return EventMediator(
        build_event_map(events_mapper),
        container,
        build_middlewares(middlewares),
        scope_strategy,
        settings=settings,
    )


def bootstrap_events(
    di_container: Any,
    middlewares: Sequence[Middleware] | None = None,
    events_mapper: Mapper | None = None,
    on_startup: list[Callable[[], None]] | None = None,
    scope_strategy: ScopeStrategy = ScopeStrategy.NONE,
    *,
    max_event_depth: int = DEFAULT_MAX_EVENT_DEPTH,
    check_dependencies: bool = False,
) -> EventMediator:
    """Build an EventMediator in one call (4.x ``cqrs.events.bootstrap.bootstrap``);
    ``check_dependencies`` as in :func:`bootstrap`."""
    settings = Settings(scope_strategy=scope_strategy, max_event_depth=max_event_depth)
    run_on_startup(on_startup)
    container = adapt_container(di_container)
    mediator = setup_event_mediator(container, middlewares or (), events_mapper, settings=settings)
    if check_dependencies:
        check_dependencies_of(container, (), mediator.event_map)
    return mediator
