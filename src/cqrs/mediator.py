"""The mediators (4.x path)."""

from cqrs._internal.mediators import EventMediator as EventMediator
from cqrs._internal.mediators import RequestMediator as RequestMediator
from cqrs._internal.mediators import StreamingRequestMediator as StreamingRequestMediator

__all__ = ["EventMediator", "RequestMediator", "StreamingRequestMediator"]
