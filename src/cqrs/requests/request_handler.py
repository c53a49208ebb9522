"""Request and streaming handler base classes (4.x path)."""

from cqrs._internal.handlers.request import RequestHandler as RequestHandler
from cqrs._internal.handlers.request import StreamingRequestHandler as StreamingRequestHandler

__all__ = ["RequestHandler", "StreamingRequestHandler"]
