"""The request registry (4.x path)."""

from cqrs._internal.registry import HandlerType as HandlerType
from cqrs._internal.registry import RequestMap as RequestMap

__all__ = ["HandlerType", "RequestMap"]
