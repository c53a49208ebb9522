"""The 4.x dispatchers: run one handler binding and return what it produced (4.x package)."""

from cqrs._internal.dispatch.dispatchers import EventDispatcher as EventDispatcher
from cqrs._internal.dispatch.dispatchers import RequestDispatcher as RequestDispatcher
from cqrs._internal.dispatch.dispatchers import RequestDispatchResult as RequestDispatchResult
from cqrs._internal.dispatch.dispatchers import (
    StreamingRequestDispatcher as StreamingRequestDispatcher,
)

__all__ = [
    "RequestDispatchResult",
    "RequestDispatcher",
    "StreamingRequestDispatcher",
    "EventDispatcher",
]
