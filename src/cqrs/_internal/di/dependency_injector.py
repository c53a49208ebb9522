"""The adapter for ``dependency-injector`` containers (the ``dependency-injector`` extra)."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Mapping
from typing import Any, TypeVar, cast

from cqrs._internal._optional import require
from cqrs._internal.errors import ContainerError

with require(
    "dependency-injector",
    extra="dependency-injector",
    feature="cqrs.container.dependency_injector (DependencyInjectorCQRSContainer)",
):
    from dependency_injector import providers

__all__ = ["DependencyInjectorCQRSContainer"]

T = TypeVar("T")

_Provider = providers.Provider[Any]

_NOT_ATTACHED = (
    "External container not attached: DependencyInjectorCQRSContainer has no "
    "dependency-injector container to resolve from. Call "
    "attach_external_container(container) first, with a DeclarativeContainer class or instance."
)


def _name(type_: object) -> str:
    """The plain ``__name__`` of a type (what 4.x messages show), else its repr."""
    name = getattr(type_, "__name__", None)
    return name if isinstance(name, str) else repr(type_)


def _return_type(function: Any) -> type | None:
    """The class a function provider returns, from its return annotation."""
    if inspect.isclass(function):
        return function
    try:
        annotation = typing.get_type_hints(function).get("return")
    except Exception:  # unresolvable forward references: fall back to the raw annotation
        annotation = getattr(function, "__annotations__", {}).get("return")
    return annotation if inspect.isclass(annotation) else None


def _provided_type(provider: _Provider) -> type | None:
    if isinstance(provider, providers.Callable):  # includes Coroutine
        return _return_type(provider.provides)
    cls = getattr(provider, "cls", None)  # Factory, Singleton and their variants
    return cls if inspect.isclass(cls) else None


def _collect(source: Mapping[str, _Provider], found: dict[type, _Provider]) -> None:
    for provider in source.values():
        if isinstance(provider, providers.Container):
            nested = cast(Mapping[str, _Provider], provider.providers)  # pyright: ignore[reportUnknownMemberType]
            _collect(nested, found)
            continue
        provided = _provided_type(provider)
        if provided is not None:
            found.setdefault(provided, provider)


class DependencyInjectorCQRSContainer:
    """Resolves through a ``dependency_injector`` container.

    Construct it with no argument, then ``attach_external_container(container)`` (a
    ``DeclarativeContainer`` class or instance). Attaching walks the container, nested
    ``providers.Container`` included, and maps each provider to the class it provides:
    ``provider.cls`` for factories and singletons, the return annotation for ``Callable`` and
    ``Coroutine`` providers. When two providers give the same class, the first one found wins.

    ``resolve(T)`` calls the provider of ``T``, else of the first registered subclass of ``T``,
    and awaits the result when it is awaitable. There is no auto-wiring: an unregistered type
    raises :class:`ContainerError` (a ``ValueError``), as does resolving before attaching.
    The adapter opens no scopes.
    """

    __slots__ = ("_container", "_lookups", "_providers")

    def __init__(self) -> None:
        self._container: Any = None
        self._providers: dict[type, _Provider] = {}
        self._lookups: dict[type, _Provider] = {}

    @property
    def external_container(self) -> Any:
        """The attached container; raises :class:`ContainerError` when none is attached."""
        if self._container is None:
            raise ContainerError(_NOT_ATTACHED)
        return self._container

    def attach_external_container(self, container: Any) -> None:
        """Wrap ``container`` and index its providers by the class they provide."""
        found: dict[type, _Provider] = {}
        _collect(cast(Mapping[str, _Provider], container.providers), found)
        self._container = container
        self._providers = found
        self._lookups = {}

    async def resolve(self, type_: type[T]) -> T:
        """Call the provider registered for ``type_`` (or a subclass) and return its product.

        Raises :class:`ContainerError` when no provider gives ``type_`` or a subclass of it.
        """
        provider = self._lookups.get(type_)
        if provider is None:
            provider = self._lookups[type_] = self._find(type_)
        product: Any = provider()
        if inspect.isawaitable(product):
            product = await product
        return cast(T, product)

    def check(self, type_: type) -> None:
        """Raise :class:`ContainerError` when no provider gives ``type_`` (or a subclass);
        call no provider."""
        if type_ not in self._lookups:
            self._lookups[type_] = self._find(type_)

    def _find(self, type_: type[Any]) -> _Provider:
        if self._container is None:
            raise ContainerError(f"{_NOT_ATTACHED} (while resolving {_name(type_)})")
        provider = self._providers.get(type_)
        if provider is not None:
            return provider
        for provided, provider in self._providers.items():
            if inspect.isclass(type_) and issubclass(provided, type_):
                return provider
        name = _name(type_)
        registered = ", ".join(sorted(_name(t) for t in self._providers)) or "none"
        raise ContainerError(
            f"Provider for type {name} not found in the attached dependency-injector "
            f"container. Provided types: {registered}. Add a provider for it, for example "
            f"`handler = providers.Factory({name})`; handlers are not auto-wired."
        )

    def __repr__(self) -> str:
        return f"DependencyInjectorCQRSContainer({type(self._container).__name__})"
