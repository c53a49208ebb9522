"""The event dispatcher (4.x path)."""

from cqrs._internal.dispatch.dispatchers import EventDispatcher as EventDispatcher

__all__ = ["EventDispatcher"]
