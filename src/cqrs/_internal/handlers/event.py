"""Base class for event handlers."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Generic, TypeVar

from cqrs._internal.messages.events import IEvent

__all__ = ["E", "EventHandler"]

E = TypeVar("E", bound=IEvent, contravariant=True)


class EventHandler(abc.ABC, Generic[E]):
    """Handles one event type.

    Subclass it as ``EventHandler[OrderPlaced]``, bind it in an ``EventMap`` and implement
    ``async def handle(self, event)``. ``EventHandler[Any]`` (or a base class, a union...)
    makes a handler that can be bound to several event types, such as an audit log. Binding
    raises ``ConfigurationError`` when ``handle`` is a plain ``def`` or an async generator, or
    when the declared event type cannot take the bound one. A handler may emit follow-up
    events through
    :attr:`events`; they are processed after it returns, like the events of a command.

    What happens when ``handle`` raises depends on the mediator's event failure policy:
    ``"log"`` (the default) logs the error and carries on, ``"raise"`` makes ``send()`` or
    the stream raise it once the other events are done.
    """

    @property
    def events(self) -> Sequence[IEvent]:
        """Follow-up events produced by the last ``handle`` call; empty by default."""
        return ()

    @abc.abstractmethod
    async def handle(self, event: E) -> None:
        """Handle ``event``."""
        raise NotImplementedError
