"""The default event codec: JSON of ``event.to_dict()``."""

from __future__ import annotations

import json
from typing import Any, Protocol, runtime_checkable

import pydantic_core

__all__ = ["EventCodec", "EventSerializer", "JsonEventSerializer", "default_serializer"]


@runtime_checkable
class EventSerializer(Protocol):
    """Encodes an event for the broker."""

    def serialize(self, event: Any) -> bytes:
        """Return the wire bytes of ``event``; raise ``TypeError`` if it cannot be encoded."""
        ...

    def content_type_for(self, event: Any) -> str | None:
        """The content type of the bytes, or ``None`` for the default JSON."""
        ...


@runtime_checkable
class EventCodec(EventSerializer, Protocol):
    """An :class:`EventSerializer` that can also decode what it encoded."""

    def deserialize(self, payload: bytes, event_type: type[Any]) -> Any:
        """Rebuild an event of ``event_type`` from ``payload``."""
        ...


def default_serializer(obj: Any) -> bytes:
    """JSON bytes of ``obj.to_dict()``, else of ``obj.model_dump(mode="json")``, else of ``obj``.

    UUIDs, datetimes, enums and pydantic models inside are encoded the way pydantic does.
    """
    to_dict = getattr(obj, "to_dict", None)
    if callable(to_dict):
        return pydantic_core.to_json(to_dict())
    model_dump = getattr(obj, "model_dump", None)
    if callable(model_dump):
        return pydantic_core.to_json(model_dump(mode="json"))
    return pydantic_core.to_json(obj)


class JsonEventSerializer:
    """JSON codec over ``event.to_dict()`` / ``event_type.from_dict(**data)``."""

    content_type: str | None = None

    def serialize(self, event: Any) -> bytes:
        """Encode ``event`` as JSON."""
        return default_serializer(event)

    def content_type_for(self, event: Any) -> str | None:
        """Always ``None``: JSON is the default body and needs no header."""
        return None

    def deserialize(self, payload: bytes, event_type: type[Any]) -> Any:
        """Decode JSON ``payload`` into ``event_type`` with its ``from_dict``."""
        return event_type.from_dict(**json.loads(payload))
