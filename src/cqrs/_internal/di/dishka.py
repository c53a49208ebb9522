"""The adapter for dishka's ``AsyncContainer`` (the ``dishka`` extra)."""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import Any, TypeVar

from cqrs._internal._optional import require
from cqrs._internal.errors import ContainerError

with require("dishka", extra="dishka", feature="cqrs.container.dishka (DishkaCQRSContainer)"):
    from dishka import AsyncContainer

__all__ = ["DishkaCQRSContainer"]

T = TypeVar("T")


class DishkaCQRSContainer:
    """Resolves through a dishka ``AsyncContainer``: ``resolve(T)`` is ``await container.get(T)``.

    Give the container to the constructor, to :meth:`of`, or later to
    :meth:`attach_external_container`. :meth:`open_scope` enters the next dishka scope
    (``REQUEST`` under an ``APP`` container), so objects of that scope are shared until it
    exits and are finalized then. dishka's own errors (no factory, scope violations) propagate;
    resolving before a container is attached raises :class:`ContainerError` (a ``ValueError``).
    """

    __slots__ = ("_container",)

    def __init__(self, container: AsyncContainer | None = None) -> None:
        self._container = container

    @classmethod
    def of(cls, container: AsyncContainer) -> DishkaCQRSContainer:
        """Wrap an ``AsyncContainer``, for instance a request container that is already open."""
        return cls(container)

    @property
    def external_container(self) -> AsyncContainer:
        """The wrapped ``AsyncContainer``; raises :class:`ContainerError` when none is attached."""
        if self._container is None:
            raise ContainerError(
                "External container not attached: DishkaCQRSContainer has no dishka "
                "AsyncContainer to resolve from. Pass one to the constructor or call "
                "attach_external_container(make_async_container(...)) first."
            )
        return self._container

    def attach_external_container(self, container: AsyncContainer) -> None:
        """Resolve through ``container`` from now on."""
        self._container = container

    async def resolve(self, type_: type[T]) -> T:
        """Return ``await container.get(type_)``; dishka's errors propagate."""
        container = self._container
        if container is None:
            container = self.external_container  # raises
        return await container.get(type_)

    def open_scope(self, context: Mapping[type, Any] | None = None) -> _DishkaScope:
        """Enter ``container(context=...)``; entering yields a wrapper over the child container.

        ``context`` values are provided to dependencies declared with ``from_context``.
        """
        return _DishkaScope(self.external_container, context)

    def __repr__(self) -> str:
        return f"DishkaCQRSContainer({self._container!r})"


class _DishkaScope:
    """The async context manager returned by :meth:`DishkaCQRSContainer.open_scope`."""

    __slots__ = ("_child", "_context", "_parent")

    def __init__(self, parent: AsyncContainer, context: Mapping[type, Any] | None) -> None:
        self._parent = parent
        self._context = context
        self._child: AsyncContainer | None = None

    async def __aenter__(self) -> DishkaCQRSContainer:
        context = dict(self._context) if self._context else None
        child = self._parent(context=context)
        self._child = await child.__aenter__()
        return DishkaCQRSContainer(self._child)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        child, self._child = self._child, None
        if child is not None:
            await child.__aexit__(exc_type, exc, tb)
