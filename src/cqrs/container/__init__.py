"""Dependency-injection containers and scopes (4.x package)."""

from cqrs._internal.di.protocol import Container as Container
from cqrs._internal.di.protocol import SupportsCheck as SupportsCheck
from cqrs._internal.di.protocol import SupportsScope as SupportsScope
from cqrs._internal.di.scope import ScopeAwareContainer as ScopeAwareContainer
from cqrs._internal.di.scope import ScopeStrategy as ScopeStrategy
from cqrs._internal.di.scope import bind_scope as bind_scope
from cqrs._internal.di.scope import current_container as current_container
from cqrs._internal.di.scope import enter_scope as enter_scope

__all__ = [
    "Container",
    "SupportsCheck",
    "SupportsScope",
    "ScopeAwareContainer",
    "ScopeStrategy",
    "bind_scope",
    "current_container",
    "enter_scope",
]
