"""The adapter for the `di` package (4.x path)."""

from cqrs._internal.di.di_adapter import DIContainer as DIContainer

__all__ = ["DIContainer"]
