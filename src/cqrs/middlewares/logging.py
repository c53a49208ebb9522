"""The logging middleware (4.x path)."""

from cqrs._internal.pipeline.logging import LoggingMiddleware as LoggingMiddleware

__all__ = ["LoggingMiddleware"]
