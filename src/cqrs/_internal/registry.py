"""Registries that bind message types to handlers, validated when a binding is made.

Every way into a map goes through the same checks: ``bind``, item assignment, ``update``,
``|=``, ``setdefault``, the constructor, and the handler lists themselves (an event's list and
a chain are :class:`BoundHandlers`, a ``list`` that validates what is added to it). A check
looks at the message type, the handler class, the message type the handler was declared for
and the shape of its ``handle`` method. An accepted (handler, message type, kind of binding)
is remembered at module level (:func:`binding_verdict`), so binding the same configuration
again (a second bootstrap) costs a set lookup per binding; a refusal is judged afresh each
time. Duplicates are per map and always checked.
"""

from __future__ import annotations

import inspect
import operator
import re
import reprlib
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NoReturn, Self, SupportsIndex, TypeVar, cast, get_origin, overload

from cqrs._internal.errors import ConfigurationError, DuplicateBindingError, RequestHandlerTypeError
from cqrs._internal.generics import describe_type, resolve_type_args, type_accepts
from cqrs._internal.handlers.cor import CORRequestHandler
from cqrs._internal.handlers.event import EventHandler
from cqrs._internal.handlers.request import RequestHandler, StreamingRequestHandler
from cqrs._internal.messages.events import IEvent
from cqrs._internal.messages.requests import IRequest

__all__ = [
    "BoundHandlers",
    "EventMap",
    "HandlerType",
    "RequestMap",
    "describe_types",
]

HandlerType = type[RequestHandler[Any, Any]] | type[StreamingRequestHandler[Any, Any]]

_Req = TypeVar("_Req", bound=IRequest)
_Ev = TypeVar("_Ev", bound=IEvent)
_K = TypeVar("_K")
_V = TypeVar("_V")

Verdict = tuple[type[ConfigurationError], str] | None
"""What a check found: ``None`` (fine) or the error class and text to raise."""

_REQUEST = "request handler"
_EVENT = "event handler"
_LINK = "chain handler"

_accepted: set[tuple[Any, Any, type[Any], str]] = set()
"""(handler, its handle, message type, kind) that passed the checks; see binding_verdict."""
_ACCEPTED_KEPT = 4096
# Unbound list methods, to fill a BoundHandlers with handlers that were checked already.
_list_append: Callable[[list[Any], Any], None] = list[Any].append
_list_extend: Callable[[list[Any], Iterable[Any]], None] = list[Any].extend
_AWAITABLE_RETURN = re.compile(r"\b(Awaitable|Coroutine|Future)\b")


def describe_types(types: Iterable[type[Any]]) -> str:
    """Render type names for an error message: ``A, B, C`` or ``(none)``."""
    names = sorted(_name(t) for t in types)
    return ", ".join(names) if names else "(none)"


def binding_verdict(kind: str, message_type: type[Any], handler: Any) -> Verdict:
    """The verdict on binding ``handler`` to ``message_type`` as a ``kind``.

    ``kind`` is ``"request handler"``, ``"event handler"`` or ``"chain handler"``. The verdict
    depends only on the classes, never on the map, so an accepted binding is remembered
    module-wide, keyed by the handler, its ``handle`` attribute, the message type and the
    kind, and the next binding of it costs a set lookup. The set keeps at most 4096 entries
    (it starts over when full) and holds the classes in it. A refusal is not remembered: it
    is judged again each time, with the same message. A ``handle`` patched onto the class
    (in a test, say) is a new key, so it is judged as it is now.
    """
    key = (handler, getattr(handler, "handle", None), message_type, kind)
    try:
        if key in _accepted:
            return None
    except TypeError:  # an unhashable handler: not a class, always refused
        return _JUDGES[kind](message_type, handler)
    verdict = _JUDGES[kind](message_type, handler)
    if verdict is None:
        if len(_accepted) >= _ACCEPTED_KEPT:
            _accepted.clear()
        _accepted.add(key)
    return verdict


def _raise(verdict: tuple[type[ConfigurationError], str], where: str) -> NoReturn:
    error_class, text = verdict
    raise error_class(f"{where}: {text}")


# -- the checks ---------------------------------------------------------------------------


def _judge_request(request_type: type[Any], handler: Any) -> Verdict:
    if not isinstance(handler, type):
        return _not_a_class(handler, "cqrs.RequestHandler", "request")
    cls: type[Any] = cast(type[Any], handler)
    if not issubclass(handler, (RequestHandler, StreamingRequestHandler)):
        return ConfigurationError, _not_a_request_handler(cls)
    streaming = issubclass(cls, StreamingRequestHandler)
    base: type[Any] = StreamingRequestHandler if streaming else RequestHandler
    return _declared_problem(cls, base, request_type) or _handle_problem(
        cls, _REQUEST, streaming=streaming
    )


def _judge_event(event_type: type[Any], handler: Any) -> Verdict:
    if not isinstance(handler, type):
        return _not_a_class(handler, "cqrs.EventHandler", "event")
    cls: type[Any] = cast(type[Any], handler)
    if not issubclass(cls, EventHandler):
        return ConfigurationError, _not_an_event_handler(cast(type[Any], handler), event_type)
    return _declared_problem(cast(type[Any], handler), EventHandler, event_type) or (
        _handle_problem(cast(type[Any], handler), _EVENT, streaming=False)
    )


def _judge_link(request_type: type[Any], handler: Any) -> Verdict:
    cls: type[Any] | None = cast(type[Any], handler) if isinstance(handler, type) else None
    if cls is None or not issubclass(handler, CORRequestHandler):
        name = reprlib.repr(handler) if cls is None else _name(cls)
        hint = (
            " To bind a single RequestHandler, bind it alone: bind(Request, Handler)."
            if cls is not None and issubclass(cls, RequestHandler)
            else ""
        )
        return RequestHandlerTypeError, (
            "every class of a chain binding must subclass CORRequestHandler; "
            f"{name} does not.{hint}"
        )
    return _declared_problem(cls, CORRequestHandler, request_type) or _handle_problem(
        cls, _LINK, streaming=False
    )


_JUDGES: dict[str, Callable[[type[Any], Any], Verdict]] = {
    _REQUEST: _judge_request,
    _EVENT: _judge_event,
    _LINK: _judge_link,
}


def _not_a_class(value: object, base: str, message: str) -> Verdict:
    if hasattr(type(value), "handle"):
        cls = _name(type(value))
        return ConfigurationError, (
            f"the handler must be a class, got an instance of {cls}. Bind the class {cls} "
            f"itself: the container creates a handler for every {message}."
        )
    origin = get_origin(value)
    if isinstance(origin, type):
        return ConfigurationError, (
            f"the handler must be a class, got the subscripted generic {describe_type(value)}. "
            f"Declare a subclass (class MyHandler({describe_type(value)}): ...) and bind that."
        )
    return ConfigurationError, (
        f"the handler must be a class, got {reprlib.repr(value)} ({_name(type(value))}). "
        f"Bind a subclass of {base}."
    )


def _not_a_request_handler(handler: type[Any]) -> str:
    name = _name(handler)
    if issubclass(handler, EventHandler):
        return (
            f"{name} is not a request handler: it is an event handler. Bind it with "
            "EventMap.bind in domain_events_mapper, and bind a cqrs.RequestHandler here."
        )
    if issubclass(handler, CORRequestHandler):
        return (
            f"{name} is not a request handler by itself: it is a chain link "
            f"(CORRequestHandler). Bind the chain as a list: bind(Request, [{name}, ...])."
        )
    return (
        f"{name} is not a request handler. Subclass cqrs.RequestHandler[Request, Response] "
        "(or cqrs.StreamingRequestHandler for an async-generator handle) and bind that."
    )


def _not_an_event_handler(handler: type[Any], event_type: type[Any]) -> str:
    name = _name(handler)
    if issubclass(handler, (RequestHandler, StreamingRequestHandler, CORRequestHandler)):
        return (
            f"{name} is not an event handler: it is a request handler. Bind it with "
            "RequestMap.bind in commands_mapper or queries_mapper, and bind a "
            f"cqrs.EventHandler[{_name(event_type)}] here."
        )
    return (
        f"{name} is not an event handler. Subclass "
        f"cqrs.EventHandler[{_name(event_type)}] and bind that."
    )


def _declared_problem(handler: type[Any], base: type[Any], message_type: type[Any]) -> Verdict:
    """Refuse a handler whose declared message type certainly cannot take ``message_type``."""
    args = resolve_type_args(handler, base)
    if not args:
        return None
    declared = args[0]
    module = sys.modules.get(handler.__module__)
    if type_accepts(declared, message_type, vars(module) if module is not None else None):
        return None
    name, wanted = _name(handler), _name(message_type)
    if isinstance(declared, TypeVar):
        limits: tuple[Any, ...] = declared.__constraints__ or (declared.__bound__,)
        limit = " | ".join(describe_type(t) for t in limits)
        what, fits = f"{describe_type(declared)} (a type variable limited to {limit})", limit
    else:
        what = fits = describe_type(declared)
    result = ", YourResult" if base is not EventHandler else ""
    suggested = re.sub(r"\W+", "", wanted) + "Handler"
    return ConfigurationError, (
        f"{name} handles {what}, not {wanted}. Bind {name} to {fits} (or a subclass), or "
        f"bind {wanted} to a handler declared for it, e.g. "
        f"class {suggested}(cqrs.{base.__name__}[{wanted}{result}])."
    )


def _handle_problem(handler: type[Any], role: str, *, streaming: bool) -> Verdict:
    """Refuse a ``handle`` that the mediator cannot drive: sync, or the wrong kind of async."""
    handle: Any = getattr(handler, "handle", None)
    if handle is None or getattr(handle, "__isabstractmethod__", False):
        return None  # an interface the container maps to an implementation
    try:
        inner: Any = inspect.unwrap(handle)
    except ValueError:
        inner = handle
    partial_method: Any = getattr(inner, "_partialmethod", None)  # functools.partialmethod
    if partial_method is not None:
        inner = getattr(partial_method, "func", inner)
    name = f"{_name(handler)}.handle"

    def either(test: Callable[[Any], bool]) -> bool:
        return test(handle) or test(inner)

    if streaming:
        if either(inspect.isasyncgenfunction):
            return None
        if either(inspect.iscoroutinefunction):
            return ConfigurationError, (
                f"{name} is 'async def' without 'yield': a StreamingRequestHandler yields its "
                "results (async def handle(self, request): ... yield item). For one result, "
                "subclass cqrs.RequestHandler and call mediator.send()."
            )
        if _is_plain_function(inner):
            return ConfigurationError, (
                f"{name} is a plain 'def': a StreamingRequestHandler's handle must be an "
                "async generator function ('async def' with 'yield'), as in python-cqrs 4.x; "
                "a plain def that returns an async iterator is not supported. Write it as "
                "async def handle(self, request): async for item in ...: yield item."
            )
        return None
    if either(inspect.iscoroutinefunction):
        return None
    if either(inspect.isasyncgenfunction):
        advice = (
            "for a request that streams results, subclass cqrs.StreamingRequestHandler and "
            "call mediator.stream()"
            if role == _REQUEST
            else "emit several events through the 'events' property instead"
        )
        return ConfigurationError, (
            f"{name} is an async generator ('async def' with 'yield'), but the mediator awaits "
            f"it for one result: remove the 'yield', or {advice}."
        )
    if _is_plain_function(inner) and not _returns_awaitable(inner):
        return ConfigurationError, (
            f"{name} is a plain 'def', but the mediator awaits it: write it as "
            "'async def handle(...)'. (If it returns an awaitable on purpose, write "
            "'async def handle(...): return await ...' or annotate its return type as "
            "Awaitable[...].)"
        )
    return None


def _is_plain_function(value: Any) -> bool:
    return inspect.isfunction(getattr(value, "__func__", value))


def _returns_awaitable(function: Any) -> bool:
    annotations: Any = getattr(function, "__annotations__", None)
    if not isinstance(annotations, Mapping) or "return" not in annotations:
        return False
    returns: Any = cast(Mapping[str, Any], annotations)["return"]
    text = returns if isinstance(returns, str) else repr(returns)
    return _AWAITABLE_RETURN.search(text) is not None


def _message_not_a_class(value: object, what: str, where: str) -> ConfigurationError:
    origin = get_origin(value)
    if isinstance(origin, type):
        return ConfigurationError(
            f"{where}: {what} must be a class, got the subscripted generic "
            f"{describe_type(value)}. Handlers are found by type(message), and its instances "
            f"have the type {_name(origin)}: bind {_name(origin)}, or declare "
            f"a subclass (class MyMessage({describe_type(value)}): ...) and bind that."
        )
    return ConfigurationError(
        f"{where}: {what} must be a class, got {reprlib.repr(value)} "
        f"({_name(type(value))}). Bind the message class itself."
    )


def _name(value: object) -> str:
    if isinstance(value, type):
        return describe_type(value)
    return str(getattr(value, "__qualname__", value))


def _handler_name(handler: Any) -> str:
    if isinstance(handler, list):
        return "[" + ", ".join(_handler_name(h) for h in cast(list[Any], handler)) + "]"
    return _name(handler)


def _duplicate_in(handlers: Iterable[Any], where: str, message_type: type[Any]) -> None:
    seen: list[Any] = []
    for handler in handlers:
        if handler in seen:
            raise DuplicateBindingError(
                f"{where}: {_handler_name(handler)} is already bound to "
                f"{_name(message_type)}; a handler is bound once per event, remove the "
                "second binding."
            )
        seen.append(handler)


# -- the handler lists --------------------------------------------------------------------


class BoundHandlers(list[Any]):
    """The handler classes bound to one message type: a ``list`` that checks what it gets.

    ``EventMap`` keeps one per event type and ``RequestMap`` one per chain binding, in bind
    order; reading one is reading a list. Every way of adding to it (``append``, ``insert``,
    ``extend``, ``+=``, item and slice assignment) runs the checks of ``bind`` first and, on
    a bad handler, raises ``ConfigurationError`` (a ``TypeError``) and leaves the list as it
    was. In an event's list a handler that is already there raises ``DuplicateBindingError``
    (a ``KeyError``); so does ``*=`` with a factor above one. Removing and reordering work as
    on any list. A copy, a pickle and ``list(...)`` of it hold the same handlers.
    """

    __slots__ = ("_kind", "_message_type", "_owner")

    _kind: str
    _message_type: type[Any]
    _owner: _GuardedDict[Any, Any] | None

    def __init__(self, message_type: type[Any], kind: str, handlers: Iterable[Any] = ()) -> None:
        super().__init__()
        self._message_type = message_type
        self._kind = kind
        self._owner = None
        self.extend(handlers)

    @classmethod
    def _checked(
        cls,
        message_type: type[Any],
        kind: str,
        handlers: list[Any],
        owner: _GuardedDict[Any, Any],
    ) -> BoundHandlers:
        """A list of ``handlers`` that the caller has already checked, held by ``owner``."""
        bound = cls.__new__(cls)
        bound._message_type = message_type
        bound._kind = kind
        bound._owner = owner
        _list_extend(bound, handlers)
        return bound

    def _changed(self) -> None:
        """Count the change on the map that holds this list (compiled bindings go stale)."""
        owner = self._owner
        if owner is not None:
            owner.changes += 1

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self._message_type, self._kind, list(self)))

    def _where(self, operation: str) -> str:
        owner = "EventMap" if self._kind == _EVENT else "RequestMap"
        return f"{owner}[{_name(self._message_type)}].{operation}(...)"

    def _admit(self, operation: str, new: Iterable[Any], after: list[Any]) -> None:
        """Check each of ``new`` and, for events, that ``after`` has no duplicate."""
        for handler in new:
            verdict = binding_verdict(self._kind, self._message_type, handler)
            if verdict is not None:
                _raise(verdict, self._where(operation))
        if self._kind == _EVENT:
            _duplicate_in(after, self._where(operation), self._message_type)

    def append(self, handler: Any, /) -> None:
        """Add ``handler`` at the end, after the checks of ``bind``."""
        self._admit("append", (handler,), [*self, handler])
        super().append(handler)
        self._changed()

    def insert(self, index: SupportsIndex, handler: Any, /) -> None:
        """Insert ``handler`` before ``index``, after the checks of ``bind``."""
        after = list(self)
        after.insert(index, handler)
        self._admit("insert", (handler,), after)
        super().insert(index, handler)
        self._changed()

    def extend(self, handlers: Iterable[Any], /) -> None:
        """Add every handler of ``handlers`` at the end, after checking them all."""
        new = list(handlers)
        self._admit("extend", new, [*self, *new])
        super().extend(new)
        self._changed()

    def __iadd__(self, handlers: Iterable[Any], /) -> Self:  # type: ignore[override]
        self.extend(handlers)
        return self

    def __imul__(self, factor: SupportsIndex, /) -> Self:
        if self._kind == _EVENT and len(self) > 0 and operator.index(factor) > 1:
            _duplicate_in([*self, *self], self._where("__imul__"), self._message_type)
        result = super().__imul__(factor)
        self._changed()
        return result

    @overload
    def __setitem__(self, index: SupportsIndex, handler: Any, /) -> None: ...
    @overload
    def __setitem__(self, index: slice, handlers: Iterable[Any], /) -> None: ...
    def __setitem__(self, index: SupportsIndex | slice, value: Any, /) -> None:
        after = list(self)
        if isinstance(index, slice):
            new = list(cast(Iterable[Any], value))
            after[index] = new
            self._admit("__setitem__", new, after)
            super().__setitem__(index, new)
        else:
            after[index] = value
            self._admit("__setitem__", (value,), after)
            super().__setitem__(index, value)
        self._changed()

    def __delitem__(self, index: SupportsIndex | slice, /) -> None:
        super().__delitem__(index)
        self._changed()

    def remove(self, handler: Any, /) -> None:
        """Remove the first occurrence of ``handler``."""
        super().remove(handler)
        self._changed()

    def pop(self, index: SupportsIndex = -1, /) -> Any:
        """Remove and return the handler at ``index``."""
        handler = super().pop(index)
        self._changed()
        return handler

    def clear(self) -> None:
        """Remove every handler."""
        super().clear()
        self._changed()

    def reverse(self) -> None:
        """Reverse the order the handlers run in."""
        super().reverse()
        self._changed()

    def sort(self, *, key: Any = None, reverse: bool = False) -> None:
        """Sort the handlers (``key`` is required: classes do not compare)."""
        super().sort(key=key, reverse=reverse)
        self._changed()


# -- the maps -----------------------------------------------------------------------------


class _GuardedDict(dict[_K, _V]):
    """A dict whose entries can only be added through validated binding."""

    changes: int = 0
    """How many times the bindings changed (a bind, or a change to a handler list): what was
    compiled from the map while it had another count is stale."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # pyright: ignore[reportMissingSuperCall]
        if args or kwargs:
            self.update(*args, **kwargs)

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

    ``bind(CreateUser, CreateUserHandler)`` validates at once: the request type must be a
    class, the handler a ``RequestHandler`` or ``StreamingRequestHandler`` subclass (or a list
    of ``CORRequestHandler`` classes, a chain) declared for that request type or something
    that takes it (a base class, ``Any``, a type variable whose bound fits, a union or
    ``Annotated`` that contains it, a generic alias of it), with an ``async def handle``
    (an async generator for a streaming handler), and the request type not already bound.
    Violations raise ``ConfigurationError`` (a ``TypeError``) or ``DuplicateBindingError`` (a
    ``KeyError``), with the fix in the message. A chain is stored as a :class:`BoundHandlers`
    list, so links added to it later are checked too.

    Lookups (:meth:`handler_for`) use the exact type first, then the nearest bound base class.
    """

    @overload
    def bind(self, request_type: type[_Req], handler: type[RequestHandler[_Req, Any]]) -> None: ...
    @overload
    def bind(
        self, request_type: type[_Req], handler: type[StreamingRequestHandler[_Req, Any]]
    ) -> None: ...
    @overload
    def bind(
        self, request_type: type[_Req], handler: Sequence[type[CORRequestHandler[_Req, Any]]]
    ) -> None: ...
    def bind(self, request_type: type[Any], handler: Any) -> None:
        """Bind ``request_type`` to ``handler``; see the class docstring for the checks.

        The overloads let a type checker refuse a handler declared for another request.
        """
        self[request_type] = handler

    def __setitem__(self, request_type: type[Any], handler: Any) -> None:
        if not isinstance(request_type, type):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise _message_not_a_class(request_type, "the request type", _where_request(None))
        if request_type in self:
            raise DuplicateBindingError(
                f"{_name(request_type)} already exists in registry: it is bound to "
                f"{_handler_name(self[request_type])}. A request type has exactly one handler; "
                "remove one of the two bind() calls."
            )
        if isinstance(handler, list):
            handler = self._chain(request_type, cast(list[Any], handler))
        else:
            verdict = binding_verdict(_REQUEST, request_type, handler)
            if verdict is not None:
                _raise(verdict, _where_request(request_type))
        super().__setitem__(request_type, handler)
        self.__dict__.pop("_lookup_cache", None)
        self.changes += 1

    def _chain(self, request_type: type[Any], handlers: list[Any]) -> BoundHandlers:
        if not handlers:
            raise ConfigurationError(
                f"{_where_request(request_type)}: a chain binding needs at least one handler class."
            )
        for link in handlers:
            verdict = binding_verdict(_LINK, request_type, link)
            if verdict is not None:
                _raise(verdict, _where_request(request_type))
        return BoundHandlers._checked(request_type, _LINK, list(handlers), self)  # pyright: ignore[reportPrivateUsage]

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


def _where_request(request_type: object) -> str:
    return f"RequestMap.bind({'...' if request_type is None else _name(request_type)}, ...)"


class EventMap(_GuardedDict[type[Any], list[Any]]):
    """Event type → the handler classes that handle it, in bind order.

    ``bind(OrderPlaced, SendReceipt)`` appends; binding the same handler twice for one event
    raises ``DuplicateBindingError`` (a ``KeyError``). The handler must be an ``EventHandler``
    subclass declared for that event type or something that takes it (a base class, ``Any``,
    a type variable whose bound fits, a union, ``Annotated``, a generic alias of it), with an
    ``async def handle``; otherwise ``ConfigurationError`` (a ``TypeError``). ``map[E]`` is a
    :class:`BoundHandlers` list that checks what is added to it in the same way, so
    ``map[E].append(...)`` cannot bypass ``bind``. Lookups use the exact event type.
    """

    def bind(self, event_type: type[_Ev], handler: type[EventHandler[_Ev]]) -> None:
        """Add ``handler`` to the handlers of ``event_type``; see the class docstring."""
        if not isinstance(event_type, type):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise _message_not_a_class(event_type, "the event type", "EventMap.bind(...)")
        verdict = binding_verdict(_EVENT, event_type, handler)
        if verdict is not None:
            _raise(verdict, f"EventMap.bind({_name(event_type)}, ...)")
        handlers = self.get(event_type)
        if handlers is None:
            bound = BoundHandlers._checked(event_type, _EVENT, [handler], self)  # pyright: ignore[reportPrivateUsage]
            super().__setitem__(event_type, bound)
            self.changes += 1
            return
        if handler in handlers:
            raise DuplicateBindingError(
                f"{_handler_name(handler)} is already bound to {_name(event_type)}; "
                "remove the second bind() call."
            )
        _list_append(handlers, handler)
        self.changes += 1

    def __setitem__(self, event_type: type[Any], handlers: list[Any]) -> None:
        if not isinstance(event_type, type):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise _message_not_a_class(event_type, "the event type", "EventMap[...] = ...")
        if event_type in self:
            raise DuplicateBindingError(
                f"{_name(event_type)} already exists in registry; use bind() to add "
                "another handler."
            )
        items: list[Any] = (
            list(cast(Iterable[Any], handlers))
            if isinstance(handlers, list | tuple)  # pyright: ignore[reportUnnecessaryIsInstance]
            else [handlers]
        )
        where = f"EventMap.bind({_name(event_type)}, ...)"
        for handler in items:
            verdict = binding_verdict(_EVENT, event_type, handler)
            if verdict is not None:
                _raise(verdict, where)
        _duplicate_in(items, where, event_type)
        bound = BoundHandlers._checked(event_type, _EVENT, items, self)  # pyright: ignore[reportPrivateUsage]
        super().__setitem__(event_type, bound)
        self.changes += 1
