"""The serializer protocols (4.x path)."""

from cqrs._internal.serialization.json import EventCodec as EventCodec
from cqrs._internal.serialization.json import EventSerializer as EventSerializer

__all__ = ["EventCodec", "EventSerializer"]
