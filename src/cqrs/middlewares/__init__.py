"""Middlewares (4.x package)."""

from cqrs._internal.pipeline.middleware import Middleware as Middleware
from cqrs._internal.pipeline.middleware import MiddlewareChain as MiddlewareChain

__all__ = ["Middleware", "MiddlewareChain"]
