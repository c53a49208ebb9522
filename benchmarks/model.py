"""The messages, handlers and mediators the rows run, in the seed's configuration.

Messages are pydantic (``cqrs.Request``, ``cqrs.Response``, frozen ``cqrs.DomainEvent``) and
built once, before timing: the rows measure the library, not pydantic construction. Each row
has its own request type so that every mediator binds exactly what its row needs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import di

import cqrs
from cqrs.container.di import DIContainer
from cqrs.events import EventEmitter
from cqrs.message_brokers import devnull
from cqrs.requests import bootstrap

SLOW_HANDLER_SECONDS = 0.01
"""How long each event handler of the latency rows sleeps."""


# --- messages ---------------------------------------------------------------------------


class PlainCommand(cqrs.Request):
    """Row 1: a command whose handler emits nothing."""

    order_id: str


class EventCommand(cqrs.Request):
    """Row 2: a command whose handler emits one domain event."""

    order_id: str


class CommandResult(cqrs.Response):
    """What the unary handlers return."""

    order_id: str
    status: str


class OrderPlaced(cqrs.DomainEvent, frozen=True):
    """The domain event of row 2."""

    order_id: str


class ItemResult(cqrs.Response):
    """One streamed item (the seed's ``OrderProcessedResult`` shape, minus the clock)."""

    order_id: str
    status: str
    items_count: int


class _ItemsRequest(cqrs.Request):
    """A streaming request that carries the prebuilt items its handler yields."""

    items: list[ItemResult]


class PlainStream(_ItemsRequest):
    """Row 3: stream items, no events."""


class SeedStream(_ItemsRequest):
    """Row 4 and the memory rows: stream items, two domain events per item."""


class SlowStream(_ItemsRequest):
    """Row 5: stream items, two events per item whose handlers sleep 10 ms."""


class OrderProcessed(cqrs.DomainEvent, frozen=True):
    """The seed's first per-item event."""

    order_id: str
    customer_id: str
    total_amount: float


class OrderAnalytics(cqrs.DomainEvent, frozen=True):
    """The seed's second per-item event."""

    order_id: str
    category: str


class SlowProcessed(cqrs.DomainEvent, frozen=True):
    """First per-item event of the latency rows."""

    order_id: str


class SlowAnalytics(cqrs.DomainEvent, frozen=True):
    """Second per-item event of the latency rows."""

    order_id: str


COMMAND_RESULT = CommandResult(order_id="o-1", status="done")
ORDER_PLACED = OrderPlaced(order_id="o-1")
ORDER_PROCESSED = OrderProcessed(order_id="o-1", customer_id="c-1", total_amount=100.0)
ORDER_ANALYTICS = OrderAnalytics(order_id="o-1", category="electronics")
SLOW_PROCESSED = SlowProcessed(order_id="o-1")
SLOW_ANALYTICS = SlowAnalytics(order_id="o-1")


def make_items(count: int) -> list[ItemResult]:
    """``count`` distinct prebuilt items."""
    return [ItemResult(order_id=f"o-{i}", status="processed", items_count=3) for i in range(count)]


# --- handlers ---------------------------------------------------------------------------


class PlainCommandHandler(cqrs.RequestHandler[PlainCommand, CommandResult]):
    """Returns a prebuilt result, emits nothing."""

    async def handle(self, request: PlainCommand) -> CommandResult:
        """Return the prebuilt result."""
        return COMMAND_RESULT


class EventCommandHandler(cqrs.RequestHandler[EventCommand, CommandResult]):
    """Returns a prebuilt result and emits one domain event (4.x handler shape)."""

    def __init__(self) -> None:
        self._events: list[cqrs.Event] = []

    @property
    def events(self) -> list[cqrs.Event]:
        """A copy of the events emitted so far."""
        return self._events.copy()

    async def handle(self, request: EventCommand) -> CommandResult:
        """Emit ``ORDER_PLACED`` and return the prebuilt result."""
        self._events.append(ORDER_PLACED)
        return COMMAND_RESULT


_handled = [0]


def events_handled() -> int:
    """How many events the benchmark's event handlers have handled so far (a sanity check)."""
    return _handled[0]


class _Noop:
    """Mixin: an event handler that only counts (the cost under test is the dispatch)."""

    async def handle(self, event: Any) -> None:
        """Count the event."""
        _handled[0] += 1


class _Sleeping:
    """Mixin: an event handler that sleeps ``SLOW_HANDLER_SECONDS``."""

    async def handle(self, event: Any) -> None:
        """Sleep 10 ms, then count the event."""
        await asyncio.sleep(SLOW_HANDLER_SECONDS)
        _handled[0] += 1


class OrderPlacedHandler(_Noop, cqrs.EventHandler[OrderPlaced]):
    """Handles ``OrderPlaced``."""


class OrderProcessedHandler(_Noop, cqrs.EventHandler[OrderProcessed]):
    """Handles ``OrderProcessed``."""


class OrderAnalyticsHandler(_Noop, cqrs.EventHandler[OrderAnalytics]):
    """Handles ``OrderAnalytics``."""


class SlowProcessedHandler(_Sleeping, cqrs.EventHandler[SlowProcessed]):
    """Handles ``SlowProcessed`` in 10 ms."""


class SlowAnalyticsHandler(_Sleeping, cqrs.EventHandler[SlowAnalytics]):
    """Handles ``SlowAnalytics`` in 10 ms."""


class PlainStreamHandler(cqrs.StreamingRequestHandler[PlainStream, ItemResult]):
    """Yields the request's items, emits nothing."""

    def clear_events(self) -> None:
        """Nothing to clear."""

    async def handle(self, request: PlainStream) -> AsyncIterator[ItemResult]:
        """Yield every prebuilt item."""
        for item in request.items:
            yield item


class _SeedShaped:
    """Mixin for streaming handlers in the seed's shape.

    An events list, ``events`` returning a copy of it, and ``clear_events``.
    """

    first_event: cqrs.DomainEvent
    second_event: cqrs.DomainEvent

    def __init__(self) -> None:
        self._events: list[cqrs.Event] = []

    @property
    def events(self) -> list[cqrs.Event]:
        """A copy of the events emitted since the last ``clear_events``."""
        return self._events.copy()

    def clear_events(self) -> None:
        """Forget the events already taken by the mediator."""
        self._events.clear()

    async def handle(self, request: Any) -> AsyncIterator[ItemResult]:
        """Per item: emit two domain events, then yield the item."""
        events = self._events
        first, second = self.first_event, self.second_event
        for item in request.items:
            events.append(first)
            events.append(second)
            yield item


class SeedStreamHandler(_SeedShaped, cqrs.StreamingRequestHandler[SeedStream, ItemResult]):
    """Row 4: two no-op events per item."""

    first_event = ORDER_PROCESSED
    second_event = ORDER_ANALYTICS


class SlowStreamHandler(_SeedShaped, cqrs.StreamingRequestHandler[SlowStream, ItemResult]):
    """Row 5: two 10 ms events per item."""

    first_event = SLOW_PROCESSED
    second_event = SLOW_ANALYTICS


# --- mappers and mediators --------------------------------------------------------------


def unary_commands(mapper: cqrs.RequestMap) -> None:
    """Bind the unary commands."""
    mapper.bind(PlainCommand, PlainCommandHandler)
    mapper.bind(EventCommand, EventCommandHandler)


def unary_events(mapper: cqrs.EventMap) -> None:
    """Bind the unary row's domain event."""
    mapper.bind(OrderPlaced, OrderPlacedHandler)


def stream_commands(mapper: cqrs.RequestMap) -> None:
    """Bind the streaming requests."""
    mapper.bind(PlainStream, PlainStreamHandler)
    mapper.bind(SeedStream, SeedStreamHandler)
    mapper.bind(SlowStream, SlowStreamHandler)


def stream_events(mapper: cqrs.EventMap) -> None:
    """Bind the streamed items' domain events, one handler each (as the seed)."""
    mapper.bind(OrderProcessed, OrderProcessedHandler)
    mapper.bind(OrderAnalytics, OrderAnalyticsHandler)
    mapper.bind(SlowProcessed, SlowProcessedHandler)
    mapper.bind(SlowAnalytics, SlowAnalyticsHandler)


class OwnEmitEmitter(EventEmitter):
    """An emitter whose ``emit`` is its own (it only calls the stock one): tracing's shape."""

    async def emit(self, event: cqrs.IEvent) -> Sequence[cqrs.IEvent]:
        """Emit through the stock emitter."""
        return await super().emit(event)


def request_mediator(*, with_events: bool, own_emit: bool = False) -> cqrs.RequestMediator:
    """``bootstrap(di_container=di.Container(), commands_mapper=...)``, default middlewares;
    with ``own_emit`` the same, over an :class:`OwnEmitEmitter`."""
    if own_emit:
        container = DIContainer()
        container.attach_external_container(di.Container())
        event_map = cqrs.EventMap()
        unary_events(event_map)
        emitter = OwnEmitEmitter(event_map, container)
        return bootstrap.setup_mediator(emitter, container, [], commands_mapper=unary_commands)
    if with_events:
        return bootstrap.bootstrap(
            di_container=di.Container(),
            commands_mapper=unary_commands,
            domain_events_mapper=unary_events,
        )
    return bootstrap.bootstrap(di_container=di.Container(), commands_mapper=unary_commands)


def streaming_mediator(stream_events_policy: str = "before_item") -> cqrs.StreamingRequestMediator:
    """``bootstrap_streaming`` with the seed's configuration and the given events policy."""
    return bootstrap.bootstrap_streaming(
        di_container=di.Container(),
        commands_mapper=stream_commands,
        domain_events_mapper=stream_events,
        message_broker=devnull.DevnullMessageBroker(),
        max_concurrent_event_handlers=3,
        concurrent_event_handle_enable=True,
        stream_events=stream_events_policy,
    )


async def plain_agen(items: list[ItemResult]) -> AsyncIterator[ItemResult]:
    """The raw baseline of a stream: a plain async generator over prebuilt items."""
    for item in items:
        yield item
