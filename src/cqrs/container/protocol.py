"""The container protocols (4.x path)."""

from cqrs._internal.di.protocol import Container as Container
from cqrs._internal.di.protocol import SupportsCheck as SupportsCheck
from cqrs._internal.di.protocol import SupportsScope as SupportsScope

__all__ = ["Container", "SupportsCheck", "SupportsScope"]
