"""Handler base classes: what users subclass to handle requests, streams and events."""

from cqrs._internal.handlers.event import EventHandler as EventHandler
from cqrs._internal.handlers.request import RequestHandler as RequestHandler
from cqrs._internal.handlers.request import StreamingRequestHandler as StreamingRequestHandler

__all__ = ["EventHandler", "RequestHandler", "StreamingRequestHandler"]
