"""Event serializers (4.x package)."""

from cqrs._internal.serialization.json import EventCodec as EventCodec
from cqrs._internal.serialization.json import EventSerializer as EventSerializer
from cqrs._internal.serialization.json import JsonEventSerializer as JsonEventSerializer
from cqrs._internal.serialization.json import default_serializer as default_serializer

__all__ = ["EventCodec", "EventSerializer", "JsonEventSerializer", "default_serializer"]
