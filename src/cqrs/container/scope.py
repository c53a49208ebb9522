"""DI scopes bound to the current task (4.x path)."""

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

__all__ = [
    "ScopeAwareContainer",
    "ScopeStrategy",
    "assert_send_compatible_with_concurrent_events",
    "bind_scope",
    "current_container",
    "enter_scope",
    "handler_scope",
    "resolve_concurrent_event_handling",
    "wrap_container",
]
