"""Sends each event where it belongs: domain events to handlers, notifications to the broker."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

from cqrs._internal.brokers.protocol import Message, MessageBroker
from cqrs._internal.di.scope import ScopeStrategy, enter_scope, scope_is_bound, wrap_container
from cqrs._internal.errors import ConfigurationError, NoBrokerError
from cqrs._internal.events.fanout import Job
from cqrs._internal.messages.events import IDomainEvent, IEvent, INotificationEvent
from cqrs._internal.registry import EventMap
from cqrs._internal.serialization.json import EventSerializer, JsonEventSerializer

__all__ = ["ErrorHook", "EventEmitter", "FailurePolicy"]

logger = logging.getLogger("cqrs")

FailurePolicy = Literal["log", "raise"]
ErrorHook = Callable[[IEvent, Any, Exception], Awaitable[object] | object]

_PUBLISH = "publish to broker"
_UNKNOWN: Any = object()
_DEFAULT_SERIALIZER = JsonEventSerializer()


class EventEmitter:
    """Runs domain events through their handlers and publishes notification events.

    ``emit(event)`` handles one event and returns the follow-up events its handlers produced
    (4.x API). Domain events (``IDomainEvent``) go to the handlers bound in ``event_map``,
    resolved through ``container``; notification events (``INotificationEvent``) are sent to
    ``message_broker`` as a :class:`Message`. Any other event is logged at WARNING and skipped
    (4.x dropped it silently).

    ``failure_policy`` decides what a failing event handler does: ``"log"`` (default) logs it
    with its traceback and goes on; ``"raise"`` lets the error reach the caller once the other
    events are done. ``on_error(event, handler, exc)``, sync or async, is called for every
    failure under both policies. A broker failure always reaches the caller.
    """

    def __init__(
        self,
        event_map: EventMap,
        container: Any,
        message_broker: MessageBroker | None = None,
        scope_strategy: ScopeStrategy = ScopeStrategy.NONE,
        *,
        serializer: EventSerializer | None = None,
        failure_policy: FailurePolicy = "log",
        on_error: ErrorHook | None = None,
    ) -> None:
        if failure_policy not in ("log", "raise"):
            raise ConfigurationError(
                f"failure_policy must be 'log' or 'raise', got {failure_policy!r}."
            )
        self._event_map = event_map
        self._container = wrap_container(container)
        self._message_broker = message_broker
        self._scope_strategy = ScopeStrategy(scope_strategy)
        self._serializer: EventSerializer = serializer or _DEFAULT_SERIALIZER
        self.failure_policy: FailurePolicy = failure_policy
        self.on_error = on_error
        self._targets: dict[type[Any], tuple[Any, ...]] = {}
        self._builds: dict[Any, Callable[[], Any] | None] = {}
        self._unscoped = self._scope_strategy is ScopeStrategy.NONE

    @property
    def event_map(self) -> EventMap:
        """The map of domain event types to handler classes."""
        return self._event_map

    @property
    def container(self) -> Any:
        """The (scope-aware) container handlers are resolved from."""
        return self._container

    @property
    def message_broker(self) -> MessageBroker | None:
        """Where notification events go."""
        return self._message_broker

    @property
    def scope_strategy(self) -> ScopeStrategy:
        """Where DI scopes are opened for event handlers."""
        return self._scope_strategy

    async def emit(self, event: IEvent) -> Sequence[IEvent]:
        """Handle ``event`` (its handlers one after another) and return the follow-ups."""
        follow: list[IEvent] = []
        for job in self.jobs_for(event):
            follow.extend(e for e, _ in await self.run(job))
        return follow

    def jobs_for(self, event: IEvent) -> list[Job]:
        """The jobs for one event: one per bound handler, or one publish."""
        return self.jobs_for_all((event,))

    def jobs_for_all(self, events: Sequence[IEvent]) -> list[Job]:
        """The jobs for several events, in event order."""
        jobs: list[Job] = []
        append = jobs.append
        for event in events:
            targets = self._targets.get(event.__class__)
            if targets is None:
                targets = self._plan(event.__class__)
            for target in targets:
                append((event, target))
        return jobs

    def _plan(self, event_type: type[Any]) -> tuple[Any, ...]:
        if issubclass(event_type, IDomainEvent):
            targets = tuple(self._event_map.get(event_type, ()))
            if not targets:
                logger.warning(
                    "No handler is bound for domain event %s; it is skipped. Bind one in "
                    "domain_events_mapper.",
                    event_type.__qualname__,
                )
        elif issubclass(event_type, INotificationEvent):
            targets = (_PUBLISH,)
        else:
            logger.warning(
                "%s is neither a DomainEvent nor a NotificationEvent, so nothing handles it; "
                "derive it from cqrs.DomainEvent or cqrs.NotificationEvent.",
                event_type.__qualname__,
            )
            targets = ()
        self._targets[event_type] = targets
        return targets

    async def run(self, job: Job, container: Any = None) -> list[Job]:
        """Run one job and return the jobs of its follow-up events.

        ``container`` is the scope to resolve from (the mediator passes the ``send`` scope);
        ``None`` means the emitter's own container.
        """
        event, target = job
        if target is _PUBLISH:
            await self._publish(event)
            return []
        try:
            if container is None and self._unscoped:
                build = self._builds.get(target, _UNKNOWN)
                if build is _UNKNOWN:
                    build = self._builds[target] = self._container.factory(target)
                if build is not None and not scope_is_bound():
                    handler = build()
                    await handler.handle(event)
                    follow = handler.events
                else:
                    follow = await self._handle(event, target, self._container)
            else:
                follow = await self._handle(event, target, container or self._container)
        except Exception as exc:
            await self._report(event, target, exc)
            return []
        return self.jobs_for_all(follow) if follow else []

    async def _handle(self, event: IEvent, handler_type: Any, container: Any) -> Sequence[IEvent]:
        if self._scope_strategy is ScopeStrategy.HANDLER:
            async with enter_scope(self._container, reuse_existing=False) as scoped:
                handler = await scoped.resolve(handler_type)
                await handler.handle(event)
                return handler.events
        handler = await container.resolve(handler_type)
        await handler.handle(event)
        return handler.events

    async def _report(self, event: IEvent, handler_type: Any, exc: Exception) -> None:
        if self.on_error is not None:
            result = self.on_error(event, handler_type, exc)
            if inspect.isawaitable(result):
                await result
        if self.failure_policy == "raise":
            raise exc
        logger.error(
            "Event handler %s failed on %s; the error is logged and processing goes on "
            "(failure_policy='log').",
            getattr(handler_type, "__qualname__", handler_type),
            type(event).__qualname__,
            exc_info=exc,
        )

    async def _publish(self, event: Any) -> None:
        broker = self._message_broker
        if broker is None:
            raise NoBrokerError(
                f"{type(event).__qualname__} is a notification event but no message broker "
                "is configured; pass message_broker= to bootstrap."
            )
        serializer = self._serializer
        content_type = serializer.content_type_for(event)
        headers = (
            None
            if content_type is None
            else {"event_name": event.event_name, "message_id": str(event.event_id)}
        )
        await broker.send_message(
            Message(
                message_name=type(event).__name__,
                topic=event.topic,
                payload=event.to_dict(),
                message_id=event.event_id,
                payload_bytes=serializer.serialize(event),
                content_type=content_type,
                headers=headers,
            )
        )
