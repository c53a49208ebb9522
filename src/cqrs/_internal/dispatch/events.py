"""Consumer-side event dispatch: an event to its handlers, follow-ups depth first."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from cqrs._internal.coro import being_cancelled
from cqrs._internal.di.scope import ScopeStrategy
from cqrs._internal.dispatch.invokers import (
    Call,
    HandlerInvoker,
    as_events,
    plain_call,
    stray_cancel,
)
from cqrs._internal.errors import EventCycleError
from cqrs._internal.messages.events import IEvent
from cqrs._internal.registry import EventMap, describe_types
from cqrs._internal.settings import DEFAULT_MAX_EVENT_DEPTH

__all__ = ["EventDispatcher", "cycle_message"]

logger = logging.getLogger("cqrs")


def cycle_message(chain: Sequence[str], limit: int) -> str:
    """The message of an ``EventCycleError`` for a chain of event type names."""
    return (
        f"Follow-up events nested deeper than max_event_depth={limit}: {' -> '.join(chain)}. "
        "A handler probably emits an event that leads back to itself; break the cycle, or "
        "raise max_event_depth if the chain is meant to be this deep."
    )


class EventDispatcher:
    """Dispatches an event to every handler bound for its exact type, in bind order.

    Each handler is resolved from the container (a fresh scope per handler under
    ``HANDLER``), called through ``call`` (the middlewares), and the follow-up events it
    produced are dispatched the same way, depth first, before the next handler runs. Handler
    exceptions propagate; a handler that raises ``CancelledError`` while nobody cancelled the
    caller fails with ``EventHandlerCancelled``. An event with no handler is logged at WARNING
    and ignored. Follow-ups nested deeper than ``max_event_depth`` raise ``EventCycleError``.
    """

    def __init__(
        self,
        event_map: EventMap,
        container: Any,
        scope_strategy: ScopeStrategy = ScopeStrategy.NONE,
        *,
        max_event_depth: int = DEFAULT_MAX_EVENT_DEPTH,
    ) -> None:
        self._event_map = event_map
        self._container = container
        self._scope_strategy = scope_strategy
        self._max_depth = max_event_depth
        self._invokers: dict[type[Any], tuple[HandlerInvoker, ...]] = {}
        self._changes = event_map.changes

    async def dispatch(self, event: IEvent, container: Any = None, call: Call = plain_call) -> None:
        """Handle ``event`` and its follow-ups; ``container`` defaults to the root one."""
        await self._dispatch(event, container or self._container, call, ())

    async def _dispatch(
        self, event: IEvent, container: Any, call: Call, chain: tuple[str, ...]
    ) -> None:
        if self._changes != self._event_map.changes:  # a binding changed: compile anew
            self._invokers.clear()
            self._changes = self._event_map.changes
        invokers = self._invokers.get(type(event))
        if invokers is None:
            invokers = self._compile(type(event))
        if not invokers:
            logger.warning(
                "No handler is bound for %s; bound event types: %s.",
                type(event).__qualname__,
                describe_types(self._event_map),
            )
            return
        for invoker in invokers:
            try:
                _, follow = await invoker.invoke(event, container, call)
            except asyncio.CancelledError as exc:
                if being_cancelled():
                    raise
                raise stray_cancel(exc, invoker.handler_type) from exc
            if not follow:
                continue
            follow = as_events(follow)
            here = (*chain, type(event).__qualname__)
            if len(here) > self._max_depth:
                names = [*here, type(follow[0]).__qualname__]
                raise EventCycleError(cycle_message(names, self._max_depth))
            for child in follow:
                await self._dispatch(child, container, call, here)

    def _compile(self, event_type: type[Any]) -> tuple[HandlerInvoker, ...]:
        invokers = tuple(
            HandlerInvoker(handler, self._container, self._scope_strategy)
            for handler in self._event_map.get(event_type, ())
        )
        self._invokers[event_type] = invokers
        return invokers
