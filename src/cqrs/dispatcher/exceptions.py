"""Dispatch errors (4.x path); they also derive from the builtins 4.x raised."""

from cqrs._internal.errors import RequestHandlerDoesNotExist as RequestHandlerDoesNotExist
from cqrs._internal.errors import RequestHandlerTypeError as RequestHandlerTypeError

__all__ = ["RequestHandlerDoesNotExist", "RequestHandlerTypeError"]
