"""The outbox's registry of event names (4.x ``OutboxedEventMap``).

A row stores an event's ``event_name`` and its encoded bytes; reading it back needs the type
(and codec) registered under that name. Called on the class, the methods act on one registry
per process (4.x's singleton); called on an instance, on that instance's own registry.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, cast

from cqrs._internal.errors import ConfigurationError, DuplicateBindingError
from cqrs._internal.generics import describe_type
from cqrs._internal.serialization.json import EventCodec, JsonEventSerializer

__all__ = ["OutboxedEventMap", "RegisteredEvent", "resolve_event"]

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class RegisteredEvent:
    """One registration: the event type and its codec (``None``: the repository's default)."""

    event_type: type[Any]
    codec: EventCodec | None


class _SharedOnClass(Generic[P, R]):
    """A method of :class:`OutboxedEventMap` bound to the class's shared registry when read
    from the class, and to the instance when read from an instance."""

    def __init__(self, method: Callable[Concatenate[OutboxedEventMap, P], R]) -> None:
        self._method = method
        self.__doc__ = method.__doc__
        self.__name__ = method.__name__

    def __get__(
        self, instance: OutboxedEventMap | None, owner: type[OutboxedEventMap]
    ) -> Callable[P, R]:
        target = owner.shared() if instance is None else instance
        return cast(Callable[P, R], types.MethodType(self._method, target))


class OutboxedEventMap:
    """Event name -> (event type, optional codec), for writing and reading outbox rows.

    ``OutboxedEventMap.register(...)`` (on the class) fills the process-wide registry that
    repositories use when given no ``event_map``; ``OutboxedEventMap()`` is an isolated
    registry to pass as ``event_map=``. Registering a name twice raises
    ``DuplicateBindingError`` (a ``KeyError``, as 4.x).
    """

    _shared_instance: OutboxedEventMap | None = None

    def __init__(self) -> None:
        self._entries: dict[str, RegisteredEvent] = {}

    @classmethod
    def shared(cls) -> OutboxedEventMap:
        """The registry the class-level calls act on (one per class, made on first use)."""
        found = cls.__dict__.get("_shared_instance")
        if found is None:
            found = cls()
            cls._shared_instance = found
        return cast(OutboxedEventMap, found)

    @_SharedOnClass
    def register(
        self, event_name: str, event_type: type[Any], serializer: EventCodec | None = None
    ) -> None:
        """Store and read events named ``event_name`` as ``event_type``, with ``serializer``
        (else the repository's codec, JSON by default).

        Raises ``DuplicateBindingError`` (a ``KeyError``) when the name is registered already,
        and ``ConfigurationError`` (a ``TypeError``) for a name that is not a non-empty
        string, a type that is not a class, or a serializer that is not an ``EventCodec``.
        """
        if not isinstance(event_name, str) or not event_name:  # pyright: ignore[reportUnnecessaryIsInstance]
            raise ConfigurationError(
                f"OutboxedEventMap.register: event_name must be a non-empty string, "
                f"got {event_name!r}"
            )
        if not isinstance(event_type, type):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise ConfigurationError(
                f"OutboxedEventMap.register({event_name!r}, ...): the event type must be a "
                f"class such as NotificationEvent[Payload], got {event_type!r}"
            )
        if serializer is not None and not isinstance(serializer, EventCodec):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise ConfigurationError(
                f"OutboxedEventMap.register({event_name!r}, ...): the serializer must have "
                "serialize(event), content_type_for(event) and deserialize(bytes, type) "
                f"(an EventCodec), got {type(serializer).__name__}"
            )
        existing = self._entries.get(event_name)
        if existing is not None:
            raise DuplicateBindingError(
                f"OutboxedEventMap: event_name {event_name!r} is already registered for "
                f"{describe_type(existing.event_type)}; each name is registered once "
                "(remove the second register call, or use another event_name)."
            )
        self._entries[event_name] = RegisteredEvent(event_type, serializer)

    @_SharedOnClass
    def get(self, event_name: str) -> type[Any] | None:
        """The type registered under ``event_name``, or ``None``."""
        entry = self._entries.get(event_name)
        return None if entry is None else entry.event_type

    @_SharedOnClass
    def get_serializer(self, event_name: str) -> EventCodec | None:
        """The codec registered under ``event_name``, or ``None`` (none given, or no name)."""
        entry = self._entries.get(event_name)
        return None if entry is None else entry.codec

    @_SharedOnClass
    def names(self) -> list[str]:
        """The registered event names, sorted."""
        return sorted(self._entries)

    @_SharedOnClass
    def as_serializer(self, default: EventCodec | None = None) -> EventCodec:
        """A codec that encodes each event with the codec registered under its
        ``event_name``, falling back to ``default`` (JSON when ``None``)."""
        return _MappedCodec(self, default or JsonEventSerializer())

    def entry(self, event_name: str) -> RegisteredEvent | None:
        """The registration of ``event_name`` in this registry, or ``None``."""
        return self._entries.get(event_name)

    def entry_for_type(self, event_type: type[Any]) -> RegisteredEvent | None:
        """The registration whose type is exactly ``event_type``, or ``None``."""
        for entry in self._entries.values():
            if entry.event_type is event_type:
                return entry
        return None


class _MappedCodec:
    """The codec of :meth:`OutboxedEventMap.as_serializer`."""

    __slots__ = ("_default", "_map")

    def __init__(self, event_map: OutboxedEventMap, default: EventCodec) -> None:
        self._map = event_map
        self._default = default

    def _codec(self, event: Any) -> EventCodec:
        entry = self._map.entry(getattr(event, "event_name", ""))
        return self._default if entry is None or entry.codec is None else entry.codec

    def serialize(self, event: Any) -> bytes:
        """Encode with the codec of the event's name, else the default."""
        return self._codec(event).serialize(event)

    def content_type_for(self, event: Any) -> str | None:
        """The content type of the codec of the event's name, else of the default."""
        return self._codec(event).content_type_for(event)

    def deserialize(self, payload: bytes, event_type: type[Any]) -> Any:
        """Decode with the codec registered for ``event_type``, else the default."""
        entry = self._map.entry_for_type(event_type)
        codec = self._default if entry is None or entry.codec is None else entry.codec
        return codec.deserialize(payload, event_type)


def resolve_event(event_map: OutboxedEventMap, event: Any) -> RegisteredEvent:
    """The registration ``event`` is stored under, checked: its ``event_name`` is registered
    and ``event`` is an instance of the registered type (or of a subclass).

    Raises ``ConfigurationError`` (a ``TypeError``, as 4.x) naming the event and saying what
    to register otherwise.
    """
    name = getattr(event, "event_name", None)
    if not isinstance(name, str) or not hasattr(event, "event_id"):
        raise ConfigurationError(
            "The outbox stores notification events (with event_name, event_id, topic and "
            f"payload, e.g. NotificationEvent[Payload]); got {describe_type(type(event))}"
        )
    entry = event_map.entry(name)
    if entry is None:
        registered = ", ".join(repr(n) for n in event_map.names()) or "(none)"
        where = "OutboxedEventMap" if event_map is OutboxedEventMap.shared() else "event_map"
        raise ConfigurationError(
            f"Cannot add {describe_type(type(event))} to the outbox: no event type is "
            f"registered under its event_name {name!r} (registered: {registered}). Register "
            f"it first: {where}.register({name!r}, {describe_type(type(event))})"
        )
    if not isinstance(event, entry.event_type):
        raise ConfigurationError(
            f"Cannot add {describe_type(type(event))} to the outbox: its event_name {name!r} "
            f"is registered for {describe_type(entry.event_type)}, and it is not an instance "
            f"of that type; create the event as {describe_type(entry.event_type)} (or a "
            "subclass), or register it under an event_name of its own"
        )
    return entry
