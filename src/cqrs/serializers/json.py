"""The JSON event codec (4.x path)."""

from cqrs._internal.serialization.json import JsonEventSerializer as JsonEventSerializer

__all__ = ["JsonEventSerializer"]
