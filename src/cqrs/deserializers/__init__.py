"""Deserializers: broker bytes back into events (4.x package)."""

from cqrs._internal.serialization.deserializers import Deserializable as Deserializable
from cqrs._internal.serialization.deserializers import (
    DeserializeJsonError as DeserializeJsonError,
)
from cqrs._internal.serialization.deserializers import (
    DeserializeProtobufError as DeserializeProtobufError,
)
from cqrs._internal.serialization.deserializers import JsonDeserializer as JsonDeserializer
from cqrs._internal.serialization.deserializers import (
    ProtobufDeserializer as ProtobufDeserializer,
)

__all__ = [
    "Deserializable",
    "JsonDeserializer",
    "DeserializeJsonError",
    "ProtobufDeserializer",
    "DeserializeProtobufError",
]
