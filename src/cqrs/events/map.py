"""The event registry (4.x path)."""

from cqrs._internal.registry import EventMap as EventMap

__all__ = ["EventMap"]
