"""The adapter for dependency-injector (4.x path; needs the extra)."""

from cqrs._internal.di.dependency_injector import (
    DependencyInjectorCQRSContainer as DependencyInjectorCQRSContainer,
)

__all__ = ["DependencyInjectorCQRSContainer"]
