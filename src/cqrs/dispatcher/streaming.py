"""The streaming request dispatcher (4.x path)."""

from cqrs._internal.dispatch.dispatchers import (
    StreamingRequestDispatcher as StreamingRequestDispatcher,
)

__all__ = ["StreamingRequestDispatcher"]
