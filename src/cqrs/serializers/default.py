"""Default JSON encoding (4.x path)."""

from cqrs._internal.serialization.json import default_serializer as default_serializer

__all__ = ["default_serializer"]
