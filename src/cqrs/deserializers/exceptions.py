"""The deserialization errors (4.x path)."""

from cqrs._internal.serialization.deserializers import (
    DeserializeJsonError as DeserializeJsonError,
)
from cqrs._internal.serialization.deserializers import (
    DeserializeProtobufError as DeserializeProtobufError,
)

__all__ = ["DeserializeJsonError", "DeserializeProtobufError"]
