"""The adapter for the ``di`` package (``di.Container``), the container the 4.x seeds use.

Each requested type is solved once (``di`` solving is the expensive part) and executed per
resolve. When every node of the solved graph is a class or a plain synchronous function, the
graph is compiled into one function that builds the objects directly, with ``di``'s argument
passing and per-resolve sharing rules; async and generator dependencies, and every resolve
inside an open scope, go through ``di``'s own executor.
"""

from __future__ import annotations

import functools
import inspect
import logging
import typing
from collections.abc import Callable, Hashable, Iterable, Mapping
from types import TracebackType
from typing import Any, TypeVar, cast

import di
from di.api.dependencies import DependencyParameter, DependentBase
from di.dependent import Dependent
from di.executors import AsyncExecutor

from cqrs._internal.errors import ContainerError

__all__ = ["DIContainer"]

T = TypeVar("T")

_logger = logging.getLogger("cqrs.container")

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


class _Plan:
    """The solved graph of one type, and its compiled builder when it has one."""

    __slots__ = ("_providers", "build", "solved", "teardown", "type_", "warned")

    def __init__(self, type_: Any, solved: di.SolvedDependent[Any], scope: Any) -> None:
        self.type_ = type_
        self.solved = solved
        self.build = _compile(solved, scope)
        self.teardown = any(_has_teardown(dep.call) for dep in solved.dag if dep.call is not None)
        self.warned = False
        self._providers: dict[Any, list[Any]] | None = None

    def values_for(self, context: Mapping[Any, Any]) -> dict[Any, Any]:
        """``di`` execution values that give each context type's value to every node providing
        that type: the type itself, and whatever a bind put in its place."""
        if self._providers is None:
            self._providers = _providers_by_type(self.type_, self.solved)
        values = dict(context)
        for type_, value in context.items():
            for call in self._providers.get(type_, ()):
                values[call] = value
        return values


class DIContainer:
    """Resolves through a ``di.Container``: ``DIContainer()`` then
    ``attach_external_container(di.Container())``.

    Every type is solved as ``Dependent(type_, scope=scope)`` the first time it is resolved and
    the solution is kept; binds added to the ``di.Container`` afterwards are not seen by types
    already resolved (attach the container again to start over). Unbound concrete classes are
    auto-wired from their constructor annotations, as ``di`` does.

    Outside a scope, each resolve runs in a one-shot ``di`` scope: generator dependencies are
    finalized as soon as the object is built (4.x behaviour; a warning is logged once per type;
    use ``ScopeStrategy.HANDLER`` or ``SEND`` for dependencies with teardown). Inside
    :meth:`open_scope`, request-scoped objects are shared by every resolve and finalized when
    the scope exits.

    ``resolve`` and ``open_scope`` raise :class:`ContainerError` (a ``ValueError``) before a
    container is attached; ``di``'s own errors (wiring, scope) propagate unchanged.
    """

    __slots__ = ("_container", "_executor", "_plans", "_scope")

    def __init__(self, scope: Any = "request") -> None:
        self._scope: Any = scope
        self._container: di.Container | None = None
        self._plans: dict[type, _Plan] = {}
        self._executor = AsyncExecutor()

    @property
    def scope(self) -> Any:
        """The ``di`` scope every dependency is solved in (``"request"`` by default)."""
        return self._scope

    @property
    def external_container(self) -> di.Container:
        """The attached ``di.Container``; raises :class:`ContainerError` when none is attached."""
        if self._container is None:
            raise ContainerError(_NOT_ATTACHED)
        return self._container

    def attach_external_container(self, container: di.Container) -> None:
        """Resolve through ``container`` from now on, forgetting every solved graph."""
        self._container = container
        self._plans = {}

    async def resolve(self, type_: type[T]) -> T:
        """Build an instance of ``type_`` with its dependencies.

        Raises :class:`ContainerError` before a container is attached, and ``di``'s errors when
        the graph cannot be solved; exceptions raised by constructors propagate.
        """
        plan = self._plans.get(type_)
        if plan is None:
            plan = self._plan(type_)
        build = plan.build
        if build is not None:
            return cast(T, build())
        if plan.teardown and not plan.warned:
            plan.warned = True
            _logger.warning(
                "%s has dependencies with teardown (generators); resolved outside a scope, they "
                "are finalized before the handler runs. Use ScopeStrategy.HANDLER or "
                "ScopeStrategy.SEND to keep them open while it runs.",
                getattr(type_, "__qualname__", type_),
            )
        container = cast(di.Container, self._container)
        async with container.enter_scope(self._scope) as state:
            return cast(T, await plan.solved.execute_async(self._executor, state))

    def factory(self, type_: type[T]) -> Callable[[], T] | None:
        """A synchronous builder for ``type_`` outside any scope, or ``None`` when its graph
        has async or generator dependencies (then use :meth:`resolve`).

        Mediators call it once per handler type to skip the coroutine of :meth:`resolve` on
        every request. Raises like :meth:`resolve` when the graph cannot be solved.
        """
        plan = self._plans.get(type_)
        if plan is None:
            plan = self._plan(type_)
        return cast("Callable[[], T] | None", plan.build)

    def check(self, type_: type) -> None:
        """Solve ``type_``'s dependency graph and raise when it cannot be built: ``di``'s
        error when it cannot be wired (an unannotated parameter, say), :class:`ContainerError`
        when a node is an abstract class or a ``Protocol`` with nothing bound in its place.
        Builds nothing.

        The solution is not kept: binds added to the ``di.Container`` after the check are
        still seen by the first resolve.
        """
        container = self._container
        if container is None:
            raise ContainerError(_NOT_ATTACHED)
        if type_ in self._plans:
            return
        solved = container.solve(Dependent(type_, scope=self._scope), scopes=[self._scope])
        for dep in solved.dag:
            call: Any = dep.call
            if inspect.isclass(call) and (
                inspect.isabstract(call) or getattr(call, "_is_protocol", False)
            ):
                name = getattr(call, "__qualname__", repr(call))
                kind = "a Protocol" if getattr(call, "_is_protocol", False) else "abstract"
                raise ContainerError(
                    f"{name} is {kind} and nothing is bound in its place, so it cannot be "
                    f"built. Bind an implementation: container.bind(bind_by_type("
                    f"Dependent(Implementation, scope='request'), {name})) (from di import "
                    "bind_by_type; from di.dependent import Dependent)."
                )

    def open_scope(self, context: Mapping[type, Any] | None = None) -> _DIScope:
        """Open a ``di`` scope; entering it yields a ``DIContainer`` bound to that scope.

        Request-scoped objects resolved through the yielded container are shared until the
        scope exits, which finalizes generator dependencies. ``context`` maps types to values
        that replace, within the scope, every dependency of that type: the type resolved
        itself, parameters annotated with it, and whatever ``bind_by_type`` put in its place.
        Raises :class:`ContainerError` when no container is attached.
        """
        if self._container is None:
            raise ContainerError(_NOT_ATTACHED)
        return _DIScope(self, self._container, context)

    def _plan(self, type_: type) -> _Plan:
        container = self._container
        if container is None:
            raise ContainerError(_NOT_ATTACHED)
        solved = container.solve(Dependent(type_, scope=self._scope), scopes=[self._scope])
        plan = self._plans[type_] = _Plan(type_, solved, self._scope)
        return plan

    def __repr__(self) -> str:
        return f"{type(self).__name__}(scope={self._scope!r})"


class _ScopedDIContainer(DIContainer):
    """A ``DIContainer`` bound to one open ``di`` scope: every resolve shares its state."""

    __slots__ = ("_context", "_state", "_values")

    def __init__(
        self, parent: DIContainer, state: di.ScopeState, context: Mapping[type, Any] | None
    ) -> None:
        self._scope = parent._scope
        self._container = parent._container
        self._plans = parent._plans
        self._executor = parent._executor
        self._state = state
        self._context = context
        self._values: dict[_Plan, dict[Any, Any]] = {}

    def factory(self, type_: type[T]) -> Callable[[], T] | None:
        """Always ``None``: inside a scope every resolve goes through the scope's state."""
        return None

    async def resolve(self, type_: type[T]) -> T:
        """Build ``type_`` in this scope, reusing the scope's request-scoped objects."""
        plan = self._plans.get(type_)
        if plan is None:
            plan = self._plan(type_)
        values = None
        if self._context:
            values = self._values.get(plan)
            if values is None:
                values = self._values[plan] = plan.values_for(self._context)
        return cast(T, await plan.solved.execute_async(self._executor, self._state, values))


class _DIScope:
    """The async context manager returned by :meth:`DIContainer.open_scope`."""

    __slots__ = ("_cm", "_container", "_context", "_owner")

    def __init__(
        self, owner: DIContainer, container: di.Container, context: Mapping[type, Any] | None
    ) -> None:
        self._owner = owner
        self._container = container
        self._context = dict(context) if context else None
        self._cm: Any = None

    async def __aenter__(self) -> DIContainer:
        cm = self._container.enter_scope(self._owner.scope)
        state = await cm.__aenter__()
        self._cm = cm
        return _ScopedDIContainer(self._owner, state, self._context)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        cm, self._cm = self._cm, None
        return cast("bool | None", await cm.__aexit__(exc_type, exc, tb))


_NOT_ATTACHED = (
    "External container not attached: DIContainer has no di.Container to resolve from. "
    "Call container.attach_external_container(di.Container()) before resolving, or pass "
    "di_container=... to bootstrap."
)


def _annotation_type(parameter: inspect.Parameter) -> Any:
    annotation: Any = parameter.annotation
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return None if annotation is parameter.empty else annotation


def _providers_by_type(root: Any, solved: di.SolvedDependent[Any]) -> dict[Any, list[Any]]:
    """For every type in the graph, the calls ``di`` runs to provide it (binds included)."""
    found: dict[Any, list[Any]] = {root: [solved.dependency.call]}
    for params in solved.dag.values():
        for param in params:
            call = param.dependency.call
            if param.parameter is None or call is None:
                continue
            type_ = _annotation_type(param.parameter)
            if isinstance(type_, Hashable) and call not in found.setdefault(type_, []):
                found[type_].append(call)
    return found


# -- the compiled fast path ----------------------------------------------------------------


def _unwrap(call: Any) -> Any:
    while True:
        if isinstance(call, functools.partial):
            call = cast(Any, call.func)
        elif getattr(call, "__wrapped__", None):
            call = call.__wrapped__
        else:
            return call


def _has_teardown(call: Any) -> bool:
    """Whether ``di`` runs ``call`` as a (sync or async) context manager."""
    unwrapped = _unwrap(call)
    return any(
        inspect.isgeneratorfunction(c) or inspect.isasyncgenfunction(c)
        for c in (unwrapped, getattr(unwrapped, "__call__", None))  # noqa: B004
    )


def _is_plain(dep: DependentBase[Any], scope: Any) -> bool:
    """Whether ``di`` would run ``dep`` as a plain synchronous call (same tests as ``di``)."""
    if getattr(dep, "sync_to_thread", False) or dep.scope not in (None, scope):
        return False
    call: Any = dep.call
    if _has_teardown(call):
        return False
    if inspect.isclass(call):
        return True
    unwrapped = _unwrap(call)
    return not (
        inspect.iscoroutinefunction(unwrapped)
        or inspect.iscoroutinefunction(getattr(unwrapped, "__call__", None))  # noqa: B004
    )


def _compile(solved: di.SolvedDependent[Any], scope: Any) -> Callable[[], Any] | None:
    """Compile a graph of plain synchronous nodes into one function, or return ``None``.

    The function calls every node once, dependencies first, and passes results as ``di``
    does: positional for positional parameters, by name otherwise. Nodes are identified by
    ``di``'s cache key, so a ``use_cache`` dependency needed twice is built once per call.
    """
    dag: Mapping[DependentBase[Any], Iterable[DependencyParameter]] = solved.dag
    if not all(_is_plain(dep, scope) for dep in dag if dep.call is not None):
        return None
    nodes: dict[Hashable, DependentBase[Any]] = {dep.cache_key: dep for dep in dag}
    calls: list[Any] = []
    lines: list[str] = []
    index: dict[Hashable, int] = {}

    def visit(dep: DependentBase[Any]) -> int:
        key = dep.cache_key
        if key in index:
            return index[key]
        node = nodes[key]
        positional: list[str] = []
        keyword: list[str] = []
        for param in dag[node]:
            if param.dependency.call is None:
                continue
            result = f"r{visit(param.dependency)}"
            if param.parameter is None:
                continue
            if param.parameter.kind in _POSITIONAL:
                positional.append(result)
            else:
                keyword.append(f"{param.parameter.name}={result}")
        position = index[key] = len(calls)
        calls.append(node.call)
        lines.append(f"    r{position} = c{position}({', '.join(positional + keyword)})")
        return position

    try:
        root = visit(solved.dependency)
    except KeyError:  # a node di did not record; let di execute the graph
        return None
    if len(calls) == 1 and lines[0].endswith("()"):
        return cast(Callable[[], Any], calls[0])
    # Straight-line code, as di itself generates for argument passing: no per-call loop.
    source = "\n".join(["def build():", *lines, f"    return r{root}"])
    namespace: dict[str, Any] = {f"c{i}": call for i, call in enumerate(calls)}
    exec(compile(source, f"<cqrs plan for {solved.dependency.call!r}>", "exec"), namespace)
    return cast(Callable[[], Any], namespace["build"])
