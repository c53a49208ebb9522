"""The stream returned by StreamingRequestMediator.stream() and its events policy."""

from cqrs._internal.streaming import RequestStream as RequestStream
from cqrs._internal.streaming import StreamEvents as StreamEvents

__all__ = ["RequestStream", "StreamEvents"]
