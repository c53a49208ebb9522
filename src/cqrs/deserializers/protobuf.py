"""The protobuf deserializer (4.x path)."""

from cqrs._internal.serialization.deserializers import (
    ProtobufDeserializer as ProtobufDeserializer,
)
from cqrs._internal.serialization.deserializers import (
    ProtoDeserializable as ProtoDeserializable,
)

__all__ = ["ProtoDeserializable", "ProtobufDeserializer"]
