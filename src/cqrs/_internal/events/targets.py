"""The compiled targets of each event type: what the emitter runs for an event.

A domain event's targets are one :class:`HandlerInvoker` per handler bound in the event map,
a notification event's target is :data:`PUBLISH`. They are compiled on first use and kept
until the map changes: the map counts its changes (``EventMap.changes``), and every user
compares that count with the one the targets were compiled at (``counter["changes"] !=
version``) before it looks one up, and calls :meth:`CompiledTargets.forget` when they differ
(inline: this runs for every batch of events).
"""

from __future__ import annotations

import logging
from typing import Any

from cqrs._internal.di.scope import ScopeStrategy
from cqrs._internal.dispatch.invokers import HandlerInvoker
from cqrs._internal.messages.events import IDomainEvent, INotificationEvent
from cqrs._internal.registry import EventMap

__all__ = ["PUBLISH", "CompiledTargets"]

logger = logging.getLogger("cqrs")

PUBLISH: Any = "publish to broker"
"""The target of a notification event: send it to the message broker."""


class _AttributeCount:
    """The change count of a mapping that is not an ``EventMap``, read as ``EventMap``'s is:
    ``counter["changes"]``. A mapping that does not count is never seen to change."""

    __slots__ = ("_mapping",)

    def __init__(self, mapping: object) -> None:
        self._mapping = mapping

    def __getitem__(self, name: str) -> int:
        """The mapping's ``changes`` attribute, 0 when it has none."""
        return getattr(self._mapping, name, 0)


class CompiledTargets:
    """Per event type, its targets and, when that is all it has, its only handler.

    ``solo[event_type]`` is the only target of ``event_type`` when that is a handler with a
    builder (``HandlerInvoker.build``), else ``None``: the case the mediators run in their own
    frame. ``counter["changes"] != version`` means the map changed since these were
    compiled: call :meth:`forget` before looking one up. An event type is compiled on first use;
    one that no handler takes is logged at WARNING then (and again after the map changed).
    """

    __slots__ = ("_container", "_event_map", "_scope_strategy", "counter", "solo", "targets",
                 "version")  # fmt: skip

    def __init__(self, event_map: Any, container: Any, scope_strategy: ScopeStrategy) -> None:
        self._event_map = event_map
        self._container = container
        self._scope_strategy = scope_strategy
        self.targets: dict[type[Any], tuple[Any, ...]] = {}
        self.solo: dict[type[Any], HandlerInvoker | None] = {}
        # An EventMap keeps its count in its attribute dict: reading it there costs a fraction
        # of an attribute read on a dict subclass. The entry is made if the map has not
        # counted yet (its class attribute says 0), so that it can be read without a default.
        if type(event_map) is EventMap:
            counter: Any = vars(event_map)
            counter.setdefault("changes", 0)  # EventMap.changes, the class default
        else:
            counter = _AttributeCount(event_map)
        self.counter = counter
        self.version: int = -1
        """The map's change count when these were compiled (-1: nothing compiled yet)."""

    def forget(self) -> None:
        """Forget every compiled target (they are compiled anew on their next use)."""
        self.targets.clear()
        self.solo.clear()
        self.version = self.counter["changes"]

    def targets_of(self, event_type: type[Any]) -> tuple[Any, ...]:
        """The targets of ``event_type`` (compiled now if they are not yet)."""
        targets = self.targets.get(event_type)
        return self.compile(event_type) if targets is None else targets

    def solo_for(self, event_type: type[Any]) -> HandlerInvoker | None:
        """The only target of ``event_type`` when that is a handler with a builder, else None."""
        if event_type not in self.solo:
            self.compile(event_type)
        return self.solo[event_type]

    def compile(self, event_type: type[Any]) -> tuple[Any, ...]:
        """Compile and keep the targets of ``event_type``; return them."""
        targets: tuple[Any, ...]
        if issubclass(event_type, IDomainEvent):
            targets = tuple(
                HandlerInvoker(handler, self._container, self._scope_strategy)
                for handler in self._event_map.get(event_type, ())
            )
            if not targets:
                logger.warning(
                    "No handler is bound for domain event %s; it is skipped. Bind one in "
                    "domain_events_mapper.",
                    event_type.__qualname__,
                )
        elif issubclass(event_type, INotificationEvent):
            targets = (PUBLISH,)
        else:
            logger.warning(
                "%s is neither a DomainEvent nor a NotificationEvent, so nothing handles it; "
                "derive it from cqrs.DomainEvent or cqrs.NotificationEvent.",
                event_type.__qualname__,
            )
            targets = ()
        self.targets[event_type] = targets
        only: HandlerInvoker | None = targets[0] if len(targets) == 1 else None
        if only is PUBLISH or (only is not None and only.build is None):
            only = None
        self.solo[event_type] = only
        return targets
