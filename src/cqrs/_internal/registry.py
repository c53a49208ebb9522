"""Registries that bind message types to handlers, validated when a binding is made."""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from typing import Any, NoReturn, TypeVar, cast

from cqrs._internal.errors import ConfigurationError, DuplicateBindingError
from cqrs._internal.generics import get_generic_args_for_origin
from cqrs._internal.handlers.event import EventHandler
from cqrs._internal.handlers.request import RequestHandler, StreamingRequestHandler

__all__ = ["EventMap", "HandlerType", "RequestMap", "describe_types"]

HandlerType = type[RequestHandler[Any, Any]] | type[StreamingRequestHandler[Any, Any]]

_K = TypeVar("_K")
_V = TypeVar("_V")


def describe_types(types: Iterable[type[Any]]) -> str:
    """Render type names for an error message: ``A, B, C`` or ``(none)``."""
    names = sorted(t.__qualname__ for t in types)
    return ", ".join(names) if names else "(none)"


def _require_class(value: object, what: str, where: str) -> type[Any]:
    if not inspect.isclass(value):
        raise ConfigurationError(
            f"{where}: {what} must be a class, got {value!r} ({type(value).__name__})."
        )
    return value


def _check_declared_message(
    message_type: type[Any], handler: Any, bases: tuple[type[Any], ...], where: str
) -> None:
    """Refuse a handler whose declared message type cannot accept ``message_type``."""
    args = get_generic_args_for_origin(handler, bases)
    if not args:
        return
    declared = args[0]
    if isinstance(declared, type) and not issubclass(message_type, declared):
        raise ConfigurationError(
            f"{where}: {handler.__qualname__} handles {declared.__qualname__}, "
            f"not {message_type.__qualname__}. Bind it to {declared.__qualname__} or bind "
            f"a handler written for {message_type.__qualname__}."
        )


class _GuardedDict(dict[_K, _V]):
    """A dict whose entries can only be added through validated binding."""

    _kind = "registry"

    def __delitem__(self, key: _K) -> NoReturn:
        raise TypeError(f"Bindings cannot be removed from a {type(self).__name__}.")

    def pop(self, *args: Any) -> NoReturn:  # type: ignore[override]
        raise TypeError(f"Bindings cannot be removed from a {type(self).__name__}.")

    def popitem(self) -> NoReturn:
        raise TypeError(f"Bindings cannot be removed from a {type(self).__name__}.")

    def clear(self) -> NoReturn:
        raise TypeError(f"Bindings cannot be removed from a {type(self).__name__}.")

    def update(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        """Bind every pair, with the same checks as ``bind`` (4.x let ``update`` bypass them)."""
        other: Any = args[0] if args else {}
        pairs: Iterable[tuple[Any, Any]] = (
            cast(Mapping[Any, Any], other).items() if isinstance(other, Mapping) else other
        )
        for key, value in pairs:
            self[key] = value
        for key, value in kwargs.items():  # pragma: no cover - keys are types, never str
            self[cast(_K, key)] = value

    def __ior__(self, other: Any) -> Any:  # type: ignore[override]
        self.update(other)
        return self

    def setdefault(self, key: _K, default: Any = None) -> _V:  # type: ignore[override]
        if key not in self:
            self[key] = default
        return self[key]


class RequestMap(_GuardedDict[type[Any], Any]):
    """Request type → the handler class that handles it.

    ``bind(CreateUser, CreateUserHandler)`` validates at once: the request type and the handler
    must be classes, the handler a ``RequestHandler`` or ``StreamingRequestHandler`` subclass
    (or a list of ``CORRequestHandler`` classes, a chain), written for that request type,
    and the request type not already bound. Violations raise ``ConfigurationError`` (a
    ``TypeError``) or ``DuplicateBindingError`` (a ``KeyError``), with the fix in the message.

    Lookups (:meth:`handler_for`) use the exact type first, then the nearest bound base class.
    """

    def bind(self, request_type: type[Any], handler: Any) -> None:
        """Bind ``request_type`` to ``handler``; see the class docstring for the checks."""
        self[request_type] = handler

    def __setitem__(self, request_type: type[Any], handler: Any) -> None:
        where = f"RequestMap.bind({getattr(request_type, '__qualname__', request_type)!s}, ...)"
        _require_class(request_type, "the request type", where)
        if request_type in self:
            raise DuplicateBindingError(
                f"{request_type.__qualname__} already exists in registry: it is bound to "
                f"{_handler_name(self[request_type])}. A request type has exactly one handler; "
                "remove one of the two bind() calls."
            )
        self._validate(request_type, handler, where)
        super().__setitem__(request_type, handler)
        self.__dict__.pop("_lookup_cache", None)

    @staticmethod
    def _validate(request_type: type[Any], handler: Any, where: str) -> None:
        if isinstance(handler, list):
            _validate_chain(cast(list[Any], handler), where)
            return
        _require_class(handler, "the handler", where)
        if not issubclass(handler, (RequestHandler, StreamingRequestHandler)):
            raise ConfigurationError(
                f"{where}: {handler.__qualname__} is not a request handler. Subclass "
                "cqrs.RequestHandler[Request, Response] (or cqrs.StreamingRequestHandler for "
                "an async-generator handle) and bind that."
            )
        _check_declared_message(
            request_type, handler, (RequestHandler, StreamingRequestHandler), where
        )

    def handler_for(self, request_type: type[Any]) -> Any | None:
        """Return the binding for ``request_type`` or its nearest bound base class, or None."""
        found = self.get(request_type)
        if found is not None:
            return found
        cache: dict[type[Any], Any] = self.__dict__.setdefault("_lookup_cache", {})
        if request_type not in cache:
            cache[request_type] = next(
                (self[base] for base in request_type.__mro__[1:] if base in self), None
            )
        return cache[request_type]


def _validate_chain(handlers: list[Any], where: str) -> None:
    from cqrs._internal.errors import RequestHandlerTypeError
    from cqrs._internal.handlers.cor import CORRequestHandler

    if not handlers:
        raise ConfigurationError(f"{where}: a chain binding needs at least one handler class.")
    for item in handlers:
        if not (inspect.isclass(item) and issubclass(item, CORRequestHandler)):
            raise RequestHandlerTypeError(
                f"{where}: every class of a chain binding must subclass CORRequestHandler; "
                f"{getattr(item, '__qualname__', item)!s} does not."
            )


def _handler_name(handler: Any) -> str:
    if isinstance(handler, list):
        return "[" + ", ".join(_handler_name(h) for h in cast(list[Any], handler)) + "]"
    return str(getattr(handler, "__qualname__", handler))


class EventMap(_GuardedDict[type[Any], list[Any]]):
    """Event type → the handler classes that handle it, in bind order.

    ``bind(OrderPlaced, SendReceipt)`` appends; binding the same handler twice for one event
    raises ``DuplicateBindingError`` (a ``KeyError``). The handler must be an ``EventHandler``
    subclass written for that event type, otherwise
    ``ConfigurationError`` (a ``TypeError``). Lookups use the exact event type.
    """

    def bind(self, event_type: type[Any], handler: Any) -> None:
        """Add ``handler`` to the handlers of ``event_type``; see the class docstring."""
        where = f"EventMap.bind({getattr(event_type, '__qualname__', event_type)!s}, ...)"
        _require_class(event_type, "the event type", where)
        self._validate(event_type, handler, where)
        handlers = self.get(event_type)
        if handlers is None:
            super().__setitem__(event_type, [handler])
            return
        if handler in handlers:
            raise DuplicateBindingError(
                f"{_handler_name(handler)} is already bound to {event_type.__qualname__}; "
                "remove the second bind() call."
            )
        handlers.append(handler)

    def __setitem__(self, event_type: type[Any], handlers: list[Any]) -> None:
        if event_type in self:
            raise DuplicateBindingError(
                f"{getattr(event_type, '__qualname__', event_type)!s} already exists in "
                "registry; use bind() to add another handler."
            )
        items = handlers if isinstance(handlers, list) else [handlers]  # pyright: ignore[reportUnnecessaryIsInstance]
        for handler in items:
            self.bind(event_type, handler)

    @staticmethod
    def _validate(event_type: type[Any], handler: Any, where: str) -> None:
        _require_class(handler, "the handler", where)
        if not issubclass(handler, EventHandler):
            raise ConfigurationError(
                f"{where}: {handler.__qualname__} is not an event handler. Subclass "
                "cqrs.EventHandler[YourEvent] and bind that."
            )
        _check_declared_message(event_type, handler, (EventHandler,), where)
