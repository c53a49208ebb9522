"""A container without a DI library, for small applications and for tests."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from functools import partial
from typing import Any, TypeVar, cast

from cqrs._internal.errors import ContainerError

__all__ = ["StaticContainer"]

T = TypeVar("T")

_INSTANCE = "instance"
_FACTORY = "factory"
_AUTOWIRED = "autowired"


def _is_factory(type_: type, value: object) -> bool:
    """A registered value is a factory when it is a class or a function and not itself an
    instance of the registered type; anything else (mocks included) is an instance."""
    try:
        if isinstance(value, type_):
            return False
    except TypeError:  # subscripted generics, non-runtime protocols
        pass
    return inspect.isclass(value) or inspect.isroutine(value) or isinstance(value, partial)


def _autowire_obstacle(type_: type) -> str | None:
    """Why a new ``type_()`` cannot be made without arguments, or ``None`` when it can."""
    if not inspect.isclass(type_):
        return "it is not a class"
    if inspect.isabstract(type_):
        return "it is abstract"
    try:
        signature = inspect.signature(type_)
    except (TypeError, ValueError):
        return "its constructor signature cannot be read"
    required = [
        p.name
        for p in signature.parameters.values()
        if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    if required:
        return f"its constructor needs {', '.join(required)}"
    return None


def _name(type_: object) -> str:
    return getattr(type_, "__qualname__", None) or repr(type_)


class StaticContainer:
    """A container over a plain mapping: ``StaticContainer({HandlerType: instance_or_factory})``.

    ``resolve(T)`` returns, in this order:

    * the registered instance, the same object every time;
    * the result of a registered zero-argument factory (a class, a function, an ``async def``
      or a ``functools.partial``), called on every resolve and awaited when it returns an
      awaitable;
    * for an unregistered concrete class whose constructor takes no required argument, a new
      instance per resolve.

    Otherwise it raises :class:`~cqrs._internal.errors.ContainerError` (a ``ValueError``) that
    names the type, lists the registered types and says how to register it. A value that is an
    instance of its key is always an instance, even if callable; to register a callable object
    as a factory, wrap it in a ``lambda``.
    """

    __slots__ = ("_entries", "_plans")

    def __init__(self, registrations: Mapping[type, Any] | None = None) -> None:
        self._entries: dict[type, Any] = {}
        # type -> (kind, instance or factory), filled on first resolve
        self._plans: dict[type, tuple[str, Any]] = {}
        if registrations:
            self.attach_external_container(registrations)

    @property
    def external_container(self) -> Mapping[type, Any]:
        """The registrations, as a mapping from type to instance or factory."""
        return self._entries

    def attach_external_container(self, container: Mapping[type, Any]) -> None:
        """Replace every registration with those of ``container``."""
        self._entries = dict(container)
        self._plans.clear()

    def register(self, type_: type[T], instance_or_factory: T | Any) -> None:
        """Register (or replace) what ``resolve(type_)`` returns: an instance, or a factory
        called with no argument on every resolve."""
        self._entries[type_] = instance_or_factory
        self._plans.pop(type_, None)

    async def resolve(self, type_: type[T]) -> T:
        """Return the registered instance, a factory's product, or a new auto-wired instance.

        Raises :class:`ContainerError` when ``type_`` is not registered and cannot be built
        without arguments.
        """
        plan = self._plans.get(type_)
        if plan is None:
            plan = self._plans[type_] = self._plan(type_)
        kind, value = plan
        if kind is _INSTANCE:
            return cast(T, value)
        product = value()
        if kind is _FACTORY and inspect.isawaitable(product):
            product = await product
        return cast(T, product)

    def check(self, type_: type) -> None:
        """Raise :class:`ContainerError` when ``type_`` is neither registered nor
        auto-wirable; build nothing."""
        if type_ not in self._plans:
            self._plans[type_] = self._plan(type_)

    def _plan(self, type_: type) -> tuple[str, Any]:
        if type_ in self._entries:
            value = self._entries[type_]
            return (_FACTORY if _is_factory(type_, value) else _INSTANCE, value)
        obstacle = _autowire_obstacle(type_)
        if obstacle is None:
            return (_AUTOWIRED, type_)
        registered = ", ".join(sorted(_name(t) for t in self._entries)) or "none"
        name = _name(type_)
        raise ContainerError(
            f"StaticContainer cannot resolve {name}: it is not registered and {obstacle}. "
            f"Registered types: {registered}. Register it with "
            f"StaticContainer({{{name}: instance_or_factory}}) or "
            f"container.register({name}, instance_or_factory)."
        )

    def __repr__(self) -> str:
        return f"StaticContainer({', '.join(_name(t) for t in self._entries)})"
