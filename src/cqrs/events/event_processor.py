"""The event processor (4.x path)."""

from cqrs._internal.events.processor import EventProcessor as EventProcessor

__all__ = ["EventProcessor"]
