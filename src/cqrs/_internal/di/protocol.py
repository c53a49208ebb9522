"""The container contracts the mediators depend on.

``Container`` is all a mediator needs: ``await container.resolve(HandlerType)``. A container
that can also open scopes (a unit of work whose objects are shared and then finalized together)
implements ``SupportsScope`` as well; the scope strategies in :mod:`.scope` use it when present.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, TypeVar, runtime_checkable

__all__ = ["Container", "SupportsCheck", "SupportsScope"]

C = TypeVar("C")
T = TypeVar("T")


class Container(Protocol[C]):
    """What a mediator needs from a dependency-injection container.

    ``C`` is the type of the wrapped third-party container (``di.Container``, a
    dependency-injector container, a dishka ``AsyncContainer``...). Implement the three
    members below to plug in any other DI library; subclassing this protocol explicitly is
    allowed but not required.
    """

    @property
    def external_container(self) -> C:
        """The wrapped container; the bundled adapters raise ``ValueError`` if none is attached.

        A class that subclasses this protocol without overriding it raises
        ``NotImplementedError`` ("Method not implemented: ...").
        """
        raise NotImplementedError(_not_implemented(self, "external_container"))

    def attach_external_container(self, container: C) -> None:
        """Wrap ``container``; later resolves go through it.

        Raises ``NotImplementedError`` when a subclass does not override it.
        """
        raise NotImplementedError(_not_implemented(self, "attach_external_container"))

    async def resolve(self, type_: type[T]) -> T:
        """Return an instance of ``type_``.

        Raises an error (``ContainerError``, a ``ValueError``, in the bundled adapters) when the
        container cannot produce it, and ``NotImplementedError`` when a subclass of this
        protocol does not override it.
        """
        raise NotImplementedError(_not_implemented(self, "resolve"))


def _not_implemented(container: object, member: str) -> str:
    """The 4.x phrase, then which member of which class to implement."""
    return (
        f"Method not implemented: {type(container).__name__}.{member}. A class that subclasses "
        "cqrs.container.protocol.Container must implement external_container, "
        "attach_external_container and async resolve."
    )


@runtime_checkable
class SupportsScope(Protocol):
    """A container that can open a scope: objects resolved inside it are shared and finalized
    together when it exits (a database session per request, for instance)."""

    def open_scope(
        self, context: Mapping[type, Any] | None = None
    ) -> AbstractAsyncContextManager[Container[Any]]:
        """Open a scope; entering it yields a container whose resolves share the scope.

        ``context`` maps types to ready-made values (the current HTTP request, say) that
        dependencies inside the scope receive instead of building them.
        """
        ...


@runtime_checkable
class SupportsCheck(Protocol):
    """A container that can tell, without building anything, whether it could build a type.

    ``bootstrap(..., check_dependencies=True)`` calls :meth:`check` for every bound handler,
    so that a handler whose dependencies cannot be wired fails at start-up instead of at its
    first request. The bundled ``di``, static and dependency-injector adapters implement it.
    """

    def check(self, type_: type) -> None:
        """Raise the error :meth:`resolve` would raise for ``type_`` when its dependency graph
        cannot be built; construct nothing and call no factory."""
        ...
