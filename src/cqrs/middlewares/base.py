"""The middleware protocols and chain (4.x path)."""

from cqrs._internal.pipeline.middleware import HandleType as HandleType
from cqrs._internal.pipeline.middleware import Middleware as Middleware
from cqrs._internal.pipeline.middleware import MiddlewareChain as MiddlewareChain
from cqrs._internal.pipeline.middleware import SagaMiddleware as SagaMiddleware
from cqrs._internal.pipeline.middleware import SagaMiddlewareChain as SagaMiddlewareChain
from cqrs._internal.pipeline.middleware import StreamMiddleware as StreamMiddleware

__all__ = [
    "HandleType",
    "Middleware",
    "MiddlewareChain",
    "SagaMiddleware",
    "SagaMiddlewareChain",
    "StreamMiddleware",
]
