"""DI scopes: where they are opened, and how resolves find the one that is open.

One context variable holds the scoped container bound to the current asyncio context.
:class:`ScopeAwareContainer` (what the mediators put around the user's container) resolves
through it when a scope is bound, else through the root container. :func:`enter_scope` opens
and binds a scope, or joins the one already bound; :func:`bind_scope` binds a scope that
something else opened (a FastAPI or dishka request scope). Nothing here holds loop-bound state,
so the same objects work from any event loop and across ``asyncio.run`` calls.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from contextvars import ContextVar, Token
from types import TracebackType
from typing import Any, Generic, TypeVar

from cqrs._internal.di.protocol import Container
from cqrs._internal.errors import ScopeStrategyError

__all__ = [
    "ScopeStrategy",
    "ScopeAwareContainer",
    "assert_send_compatible_with_concurrent_events",
    "bind_scope",
    "current_container",
    "enter_scope",
    "handler_scope",
    "resolve_concurrent_event_handling",
    "scope_is_bound",
    "bound_scope",
    "wrap_container",
]

C = TypeVar("C")
T = TypeVar("T")


class ScopeStrategy(enum.Enum):
    """Where the mediators open DI scopes.

    * ``SEND``: one scope per ``send``/``stream``/saga run, shared by the handler, its event
      handlers and any fallback. Events then run one after another.
    * ``HANDLER``: a fresh scope around each resolve-and-handle (the command handler, each
      event handler, each saga step).
    * ``NONE`` (the default): the framework opens no scope.
    """

    SEND = "send"
    HANDLER = "handler"
    NONE = "none"


class _Binding:
    """One scoped container bound to the context; ``closed`` once its scope has exited."""

    __slots__ = ("closed", "container", "parent")

    def __init__(self, container: Container[Any], parent: _Binding | None) -> None:
        self.container = container
        self.parent = parent
        self.closed = False


_BOUND: ContextVar[_Binding | None] = ContextVar("cqrs_bound_scope", default=None)


def _live_binding() -> _Binding | None:
    # A binding can outlive its scope in a context the reset could not reach (an async
    # generator finalized in another task); ``closed`` makes readers skip it.
    binding = _BOUND.get()
    while binding is not None and binding.closed:
        binding = binding.parent
    return binding


def current_container() -> Container[Any] | None:
    """The scoped container bound to the current context, or ``None`` when no scope is open."""
    binding = _live_binding()
    return None if binding is None else binding.container


class ScopeAwareContainer(Generic[C]):
    """Wraps the user's container so that resolves go to the scope bound to the context.

    ``resolve`` uses the scoped container bound by :func:`enter_scope` or :func:`bind_scope`
    when there is one, else the root container. Wrapping a ``ScopeAwareContainer`` again wraps
    its root, never the wrapper.
    """

    __slots__ = ("_root",)

    def __init__(self, root: Container[C]) -> None:
        if isinstance(root, ScopeAwareContainer):
            root = root.root
        self._root: Container[C] = root

    @property
    def root(self) -> Container[C]:
        """The wrapped (unscoped) container."""
        return self._root

    @property
    def external_container(self) -> C:
        """The root's third-party container; raises whatever the root raises when none is set."""
        return self._root.external_container

    def attach_external_container(self, container: C) -> None:
        """Attach ``container`` to the root."""
        self._root.attach_external_container(container)

    async def resolve(self, type_: type[T]) -> T:
        """Resolve ``type_`` from the bound scope if one is open, else from the root.

        Errors are those of the container used.
        """
        binding = _BOUND.get()
        if binding is not None and binding.closed:
            binding = _live_binding()
        if binding is None:
            return await self._root.resolve(type_)
        return await binding.container.resolve(type_)

    def factory(self, type_: type[T]) -> Callable[[], T] | None:
        """The root's synchronous builder for ``type_`` (see ``DIContainer.factory``), or
        ``None`` when the root has none. Callers must use it only while
        :func:`scope_is_bound` is false: a bound scope takes precedence over the root."""
        factory = getattr(self._root, "factory", None)
        return None if factory is None else factory(type_)

    def open_scope(
        self, context: Mapping[type, Any] | None = None
    ) -> AbstractAsyncContextManager[Container[Any]]:
        """Open a scope on the root. A root without ``open_scope`` gets a no-op scope that
        yields this wrapper. The scope is not bound; use :func:`enter_scope` for that."""
        open_scope = getattr(self._root, "open_scope", None)
        if open_scope is None:
            return _NoScope(self)
        scope: AbstractAsyncContextManager[Container[Any]] = open_scope(context)
        return scope

    def __repr__(self) -> str:
        return f"ScopeAwareContainer({self._root!r})"


bound_scope = _BOUND.get
"""``bound_scope()`` is not ``None`` while a scope is bound to the current context: the
check of :func:`scope_is_bound` without a Python call, for hot paths."""


def scope_is_bound() -> bool:
    """True when a scope is bound to the current context (resolves must go through it)."""
    return _BOUND.get() is not None


def wrap_container(container: Container[C]) -> ScopeAwareContainer[C]:
    """Wrap ``container`` in a :class:`ScopeAwareContainer`; a wrapper is returned as is."""
    if isinstance(container, ScopeAwareContainer):
        return container
    return ScopeAwareContainer(container)


class _NoScope:
    """An async context manager that yields its container and does nothing else."""

    __slots__ = ("_container",)

    def __init__(self, container: Container[Any]) -> None:
        self._container = container

    async def __aenter__(self) -> Container[Any]:
        return self._container

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None


class _BoundScope:
    """Binds a scoped container to the context for the duration of an ``async with``."""

    __slots__ = ("_binding", "_container", "_token")

    def __init__(self, container: Container[Any]) -> None:
        self._container = container
        self._binding: _Binding | None = None
        self._token: Token[_Binding | None] | None = None

    def bind(self) -> None:
        self._binding = _Binding(self._container, _live_binding())
        self._token = _BOUND.set(self._binding)

    def unbind(self) -> None:
        if self._binding is None or self._token is None:
            return
        self._binding.closed = True
        # Exiting in another context than the one entered (an async generator closed by
        # another task) cannot reset; the ``closed`` flag already hides the binding there.
        with contextlib.suppress(ValueError):
            _BOUND.reset(self._token)
        self._binding = self._token = None

    async def __aenter__(self) -> Container[Any]:
        self.bind()
        return self._container

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.unbind()


def bind_scope(scoped_container: Container[Any]) -> AbstractAsyncContextManager[Container[Any]]:
    """Bind a scope that something else opened (a FastAPI or dishka request scope, say).

    Use as ``async with bind_scope(scoped):``. While bound, :class:`ScopeAwareContainer`
    resolves through ``scoped_container``, and :func:`enter_scope` (the ``SEND`` strategy)
    joins it instead of opening a scope. The scope itself is not closed on exit; its owner
    closes it.
    """
    return _BoundScope(scoped_container)


class _EnteredScope:
    """The context manager behind :func:`enter_scope`."""

    __slots__ = ("_bound", "_container", "_context", "_reuse", "_scope")

    def __init__(
        self,
        container: Container[Any],
        context: Mapping[type, Any] | None,
        reuse_existing: bool,
    ) -> None:
        self._container = container
        self._context = context
        self._reuse = reuse_existing
        self._scope: AbstractAsyncContextManager[Container[Any]] | None = None
        self._bound: _BoundScope | None = None

    async def __aenter__(self) -> Container[Any]:
        if self._reuse:
            live = _live_binding()
            if live is not None:
                return live.container
        container = self._container
        root: Container[Any] = container
        if isinstance(container, ScopeAwareContainer):
            root = container.root
        open_scope = getattr(root, "open_scope", None)
        if open_scope is None:
            return container
        scope: AbstractAsyncContextManager[Container[Any]] = open_scope(self._context)
        scoped = await scope.__aenter__()
        self._scope = scope
        self._bound = _BoundScope(scoped)
        self._bound.bind()
        return scoped

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        scope, bound = self._scope, self._bound
        if scope is None or bound is None:
            return None
        self._scope = self._bound = None
        bound.unbind()
        return await scope.__aexit__(exc_type, exc, tb)


def enter_scope(
    container: Container[Any],
    *,
    context: Mapping[type, Any] | None = None,
    reuse_existing: bool = True,
) -> AbstractAsyncContextManager[Container[Any]]:
    """Open a DI scope and bind it to the current context; use as ``async with``.

    * With ``reuse_existing`` (the default) and a scope already bound, join it: yield the
      bound container, open nothing, and leave it bound on exit (``context`` is then ignored).
    * When the root container has no ``open_scope``, yield ``container`` unchanged.
    * Otherwise open ``root.open_scope(context)``, bind the scoped container, yield it, and
      on exit unbind it, then close the scope (which finalizes its objects).

    Errors raised while opening or closing the scope propagate.
    """
    return _EnteredScope(container, context, reuse_existing)


def handler_scope(
    container: Container[Any], strategy: ScopeStrategy
) -> AbstractAsyncContextManager[Container[Any]]:
    """The scope around one resolve-and-handle: under ``HANDLER`` a fresh scope (never joining
    an outer one, see :func:`enter_scope`), otherwise a no-op that yields ``container``."""
    if strategy is ScopeStrategy.HANDLER:
        return _EnteredScope(container, None, False)
    return _NoScope(container)


def assert_send_compatible_with_concurrent_events(
    strategy: ScopeStrategy, concurrent_event_handle_enable: bool | None
) -> None:
    """Raise :class:`ScopeStrategyError` (a ``ValueError``) when ``SEND`` is combined with
    concurrent event handling: one scope cannot be shared by handlers running at once."""
    if strategy is ScopeStrategy.SEND and concurrent_event_handle_enable is True:
        raise ScopeStrategyError(
            "scope_strategy=ScopeStrategy.SEND runs event handlers one after another in the "
            "request's scope, so it cannot be combined with concurrent_event_handle_enable="
            "True. Pass concurrent_event_handle_enable=False (or leave it unset), or use "
            "ScopeStrategy.HANDLER to give each concurrent handler its own scope."
        )


def resolve_concurrent_event_handling(
    strategy: ScopeStrategy, concurrent_event_handle_enable: bool | None
) -> bool:
    """Whether events are handled concurrently: the flag when given, else ``True`` unless the
    strategy is ``SEND``. ``SEND`` with ``True`` raises :class:`ScopeStrategyError`."""
    assert_send_compatible_with_concurrent_events(strategy, concurrent_event_handle_enable)
    if concurrent_event_handle_enable is None:
        return strategy is not ScopeStrategy.SEND
    return concurrent_event_handle_enable
