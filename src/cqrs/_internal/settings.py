"""One frozen options object for a mediator and its emitter, built once and shared.

Every ``bootstrap*`` and ``setup_*`` function turns its arguments into one :class:`Settings`
and hands the same object to the emitter and the mediator; the 4.x signatures are thin
adapters over it. An option added later (brokers, outbox, sagas) is a field here, validated
here, and reaches every part that reads it without being threaded through each signature.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal

from cqrs._internal.di.scope import ScopeStrategy, resolve_concurrent_event_handling
from cqrs._internal.errors import ConfigurationError, ScopeStrategyError

if TYPE_CHECKING:
    from cqrs._internal.messages.events import IEvent
    from cqrs._internal.serialization.json import EventSerializer

__all__ = [
    "DEFAULT_MAX_EVENT_DEPTH",
    "ErrorHook",
    "FailurePolicy",
    "Settings",
    "StreamEvents",
    "StreamEventsName",
    "parse_stream_events",
]

FailurePolicy = Literal["log", "raise"]
StreamEventsName = Literal["before_item", "concurrent"]
"""The values of :class:`StreamEvents` as strings, for ``stream_events=`` and ``events=``."""
ErrorHook = Callable[["IEvent", Any, BaseException], Awaitable[object] | object]

DEFAULT_MAX_EVENT_DEPTH = 32
"""How many generations of follow-up events one emitted event may cause (see ``Settings``)."""


class StreamEvents(enum.StrEnum):
    """When the events of a streamed item are processed.

    ``BEFORE_ITEM`` (default, as 4.x): an item reaches the consumer only after the events the
    handler emitted before yielding it, and their follow-ups, are done.
    ``CONCURRENT``: the item goes out at once; its events run in a bounded background pipeline
    (at most the mediator's handler limit at once; the stream waits when the pipeline is
    full); the stream ends only when every event of every item is done. When such a stream is
    closed early, event work still in flight is cancelled and logged at WARNING.
    """

    BEFORE_ITEM = "before_item"
    CONCURRENT = "concurrent"


def parse_stream_events(value: StreamEvents | str) -> StreamEvents:
    """``value`` as a :class:`StreamEvents`; ``ConfigurationError`` naming the choices."""
    try:
        return StreamEvents(value)
    except ValueError:
        raise ConfigurationError(
            f"stream_events must be one of {[e.value for e in StreamEvents]}, got {value!r}."
        ) from None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """The options of one mediator and its emitter; immutable, validated when built.

    * ``max_concurrent_event_handlers`` / ``concurrent_event_handle_enable``: the 4.x knobs;
      ``None`` for the flag means "concurrent unless ``scope_strategy`` is SEND".
    * ``scope_strategy``: where DI scopes are opened (:class:`ScopeStrategy`).
    * ``stream_events``: the events policy of streams (:class:`StreamEvents`).
    * ``event_failure_policy`` (``"log"`` or ``"raise"``) and ``on_event_error``: what a failing
      event handler does.
    * ``event_publisher``: your own scheduling strategy for event jobs, or ``None`` for the
      stock one chosen from the 4.x knobs.
    * ``serializer``: how notification events are encoded for the broker.
    * ``max_event_depth``: a follow-up chain deeper than this (A emits B, B emits A, ...) stops
      with ``EventCycleError`` naming the chain.

    Raises ``ConfigurationError`` (a ``TypeError``; ``ScopeStrategyError`` is also a
    ``ValueError``) naming the bad field.
    """

    max_concurrent_event_handlers: int = 1
    concurrent_event_handle_enable: bool | None = None
    scope_strategy: ScopeStrategy = ScopeStrategy.NONE
    stream_events: StreamEvents = StreamEvents.BEFORE_ITEM
    event_failure_policy: FailurePolicy = "log"
    on_event_error: ErrorHook | None = None
    event_publisher: Any = None
    """A ``cqrs.events.EventPublisher`` (checked for ``publish`` here), or ``None``."""
    serializer: EventSerializer | None = None
    max_event_depth: int = DEFAULT_MAX_EVENT_DEPTH
    concurrent_events: bool = dataclasses.field(init=False, compare=False, repr=False)
    """Whether event handlers may run at once (the 4.x default for ``None``: unless SEND)."""
    event_limit: int = dataclasses.field(init=False, compare=False, repr=False)
    """How many event handler executions may run at once."""

    def __post_init__(self) -> None:
        limit: Any = self.max_concurrent_event_handlers
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise ConfigurationError(
                f"max_concurrent_event_handlers must be an int >= 1, got {limit!r}."
            )
        depth: Any = self.max_event_depth
        if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
            raise ConfigurationError(f"max_event_depth must be an int >= 1, got {depth!r}.")
        if self.event_failure_policy not in ("log", "raise"):
            raise ConfigurationError(
                f"event_failure_policy must be 'log' or 'raise', got {self.event_failure_policy!r}."
            )
        if self.on_event_error is not None and not callable(self.on_event_error):
            raise ConfigurationError(
                "on_event_error must be a function (event, handler, exc), got "
                f"{self.on_event_error!r}."
            )
        publisher: Any = self.event_publisher
        if publisher is not None and not callable(getattr(publisher, "publish", None)):
            raise ConfigurationError(
                "event_publisher must have 'async def publish(jobs, execute)' (a "
                f"cqrs.events.EventPublisher), got {type(publisher).__qualname__}."
            )
        strategy: Any = self.scope_strategy
        if strategy.__class__ is not ScopeStrategy:
            try:
                strategy = ScopeStrategy(strategy)
            except ValueError:
                raise ScopeStrategyError(
                    f"scope_strategy must be a cqrs.ScopeStrategy, got {strategy!r}."
                ) from None
            object.__setattr__(self, "scope_strategy", strategy)
        if self.stream_events.__class__ is not StreamEvents:
            object.__setattr__(self, "stream_events", parse_stream_events(self.stream_events))
        concurrent = resolve_concurrent_event_handling(
            strategy, self.concurrent_event_handle_enable
        )
        object.__setattr__(self, "concurrent_events", concurrent)
        object.__setattr__(self, "event_limit", limit if concurrent else 1)

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied, validated like a new one."""
        return dataclasses.replace(self, **changes)
