"""The JSON deserializer (4.x path)."""

from cqrs._internal.serialization.deserializers import Deserializable as Deserializable
from cqrs._internal.serialization.deserializers import JsonDeserializer as JsonDeserializer

__all__ = ["Deserializable", "JsonDeserializer"]
