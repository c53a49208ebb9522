"""The request dispatcher (4.x path)."""

from cqrs._internal.dispatch.dispatchers import RequestDispatcher as RequestDispatcher

__all__ = ["RequestDispatcher"]
