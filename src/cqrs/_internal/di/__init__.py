"""Dependency injection: the container protocol, scopes, and adapters for DI libraries.

* :mod:`.protocol`: ``Container`` and ``SupportsScope``, all a mediator needs.
* :mod:`.scope`: scope strategies and the context-bound scope (``enter_scope``...).
* :mod:`.plain`: ``StaticContainer``, a container over a mapping (no DI library needed).
* :mod:`.di_adapter`, :mod:`.dependency_injector`, :mod:`.dishka`: adapters for those
  libraries. They are loaded on first access, so importing this package imports none of them;
  the last two raise ``MissingExtraError`` (an ``ImportError``) when their library is missing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from cqrs._internal.di.plain import StaticContainer as StaticContainer
from cqrs._internal.di.protocol import Container as Container
from cqrs._internal.di.protocol import SupportsScope as SupportsScope
from cqrs._internal.di.scope import ScopeAwareContainer as ScopeAwareContainer
from cqrs._internal.di.scope import ScopeStrategy as ScopeStrategy
from cqrs._internal.di.scope import (
    assert_send_compatible_with_concurrent_events as assert_send_compatible_with_concurrent_events,
)
from cqrs._internal.di.scope import bind_scope as bind_scope
from cqrs._internal.di.scope import current_container as current_container
from cqrs._internal.di.scope import enter_scope as enter_scope
from cqrs._internal.di.scope import handler_scope as handler_scope
from cqrs._internal.di.scope import (
    resolve_concurrent_event_handling as resolve_concurrent_event_handling,
)
from cqrs._internal.di.scope import wrap_container as wrap_container
from cqrs._internal.errors import ScopeStrategyError as ScopeStrategyError

if TYPE_CHECKING:
    from cqrs._internal.di.dependency_injector import (
        DependencyInjectorCQRSContainer as DependencyInjectorCQRSContainer,
    )
    from cqrs._internal.di.di_adapter import DIContainer as DIContainer
    from cqrs._internal.di.dishka import DishkaCQRSContainer as DishkaCQRSContainer

__all__ = [
    "Container",
    "SupportsScope",
    "ScopeAwareContainer",
    "ScopeStrategy",
    "ScopeStrategyError",
    "StaticContainer",
    "DIContainer",
    "DependencyInjectorCQRSContainer",
    "DishkaCQRSContainer",
    "assert_send_compatible_with_concurrent_events",
    "bind_scope",
    "current_container",
    "enter_scope",
    "handler_scope",
    "resolve_concurrent_event_handling",
    "wrap_container",
]

_LAZY = {
    "DIContainer": "cqrs._internal.di.di_adapter",
    "DependencyInjectorCQRSContainer": "cqrs._internal.di.dependency_injector",
    "DishkaCQRSContainer": "cqrs._internal.di.dishka",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
