"""The event handler base class (4.x path)."""

from cqrs._internal.handlers.event import E as E
from cqrs._internal.handlers.event import EventHandler as EventHandler

__all__ = ["E", "EventHandler"]
