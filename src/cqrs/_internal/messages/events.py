"""Event models: domain events handled in-process, notification events sent to a broker.

Two families with the same interfaces, as in python-cqrs 4.x:

* pydantic (the default): ``Event``, ``DomainEvent``, ``NotificationEvent[Payload]``.
  Frozen models; ``to_dict()`` is ``model_dump(mode="python")``.
* dataclasses: ``DCEvent``, ``DCDomainEvent``, ``DCNotificationEvent``. Frozen dataclasses;
  ``to_dict()`` gives camelCase keys and JSON-ready values.

``IDomainEvent`` and ``INotificationEvent`` are the markers the event emitter routes on: a
domain event goes to the handlers bound in the ``EventMap``, a notification event goes to
the message broker.

``DEFAULT_OUTPUT_TOPIC`` is the default ``topic`` of notification events. It is read from the
environment variable of the same name once, when this module is first imported, and is
``"output_topic"`` when the variable is unset. No ``.env`` file is read.
"""

import dataclasses
import os
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Self, TypeVar

import pydantic
from typing_extensions import dataclass_transform

from cqrs._internal.messages._base import DictMessage
from cqrs._internal.messages._camel import from_camel_dict, to_camel_dict

__all__ = [
    "DEFAULT_OUTPUT_TOPIC",
    "DCDomainEvent",
    "DCEvent",
    "DCNotificationEvent",
    "DomainEvent",
    "Event",
    "IDomainEvent",
    "IEvent",
    "INotificationEvent",
    "NotificationEvent",
    "PayloadT",
    "PydanticDomainEvent",
    "PydanticEvent",
    "PydanticNotificationEvent",
]

DEFAULT_OUTPUT_TOPIC: str = os.environ.get("DEFAULT_OUTPUT_TOPIC", "output_topic")
"""Default ``topic`` of notification events: ``$DEFAULT_OUTPUT_TOPIC`` read at import, else
``"output_topic"``."""

PayloadT = TypeVar("PayloadT")
"""The payload type of a notification event."""


def _utc_now() -> datetime:
    return datetime.now(UTC)


class IEvent(DictMessage):
    """Interface of every event: a value that converts to and from a plain dict.

    Subclass ``DomainEvent`` or ``NotificationEvent`` (or their dataclass variants) rather
    than this class: an event that is neither a domain nor a notification event is not
    routed anywhere. Instantiating it, or a subclass that does not implement both methods,
    raises ``TypeError``.
    """


class IDomainEvent(IEvent):
    """Marker of domain events: dispatched in-process to the handlers bound in ``EventMap``."""


class INotificationEvent(IEvent, Generic[PayloadT]):
    """Marker of notification events: published to the message broker, on ``topic``.

    Both bases, ``NotificationEvent`` and ``DCNotificationEvent``, carry ``event_id`` (a new
    UUID4 per event), ``event_timestamp`` (creation time, UTC), ``event_name``, ``topic`` and
    ``payload``. Those attributes are declared here for type checkers only: this class adds
    no fields to subclasses.
    """

    if TYPE_CHECKING:
        event_id: uuid.UUID
        event_timestamp: datetime
        event_name: str
        topic: str
        payload: PayloadT

    def proto(self) -> Any:
        """Return the event as a protobuf message, for ``ProtobufEventSerializer``.

        Raises ``NotImplementedError`` unless a subclass overrides it.
        """
        raise NotImplementedError(
            f"{type(self).__name__}.proto() is not implemented: override proto() in your "
            "event class to publish it as protobuf"
        )

    @classmethod
    def from_proto(cls, proto: Any) -> Self:
        """Build the event from a protobuf message, for ``ProtobufDeserializer``.

        Raises ``NotImplementedError`` unless a subclass overrides it.
        """
        raise NotImplementedError(
            f"{cls.__name__}.from_proto() is not implemented: override from_proto() in your "
            "event class to read it from protobuf"
        )


# -- pydantic family ------------------------------------------------------------------------


@dataclass_transform(
    kw_only_default=True,
    frozen_default=True,
    field_specifiers=(pydantic.Field, pydantic.PrivateAttr),
)
class _FrozenModelMetaclass(type(pydantic.BaseModel)):
    """Pydantic's own metaclass, unchanged at run time.

    It only tells type checkers that event models are frozen by default. Pydantic's
    metaclass says "not frozen", and a type checker then rejects 4.x code such as
    ``class E(DomainEvent, frozen=True)`` ("a frozen class cannot inherit from a class that
    is not frozen") and misses assignments to event fields.
    """


class PydanticEvent(pydantic.BaseModel, IEvent, metaclass=_FrozenModelMetaclass):
    """Base of pydantic events (``Event``): a frozen pydantic model.

    Assigning to a field raises ``pydantic.ValidationError``; construction raises it on
    invalid input. Subclasses may repeat the setting as a class keyword, as the 4.x docs do
    (``class E(DomainEvent, frozen=True)``), or leave it out.
    """

    model_config: ClassVar[pydantic.ConfigDict] = pydantic.ConfigDict(frozen=True)

    # The same two methods as PydanticDict's: inheriting from that non-frozen model would make
    # type checkers reject the frozen event classes.
    def to_dict(self) -> dict[str, Any]:
        """Return ``model_dump(mode="python")`` (UUIDs and datetimes stay Python objects)."""
        return self.model_dump(mode="python")

    @classmethod
    def from_dict(cls, **kwargs: Any) -> Self:
        """Return ``model_validate(kwargs)``; raises ``pydantic.ValidationError``."""
        return cls.model_validate(kwargs)


Event = PydanticEvent
"""Alias of ``PydanticEvent``."""


class PydanticDomainEvent(PydanticEvent, IDomainEvent):
    """Default domain event base (``DomainEvent``): a frozen pydantic model, no fields.

    It has no id and no timestamp; declare the fields the handlers need::

        class OrderPlaced(DomainEvent, frozen=True):
            order_id: str
    """


DomainEvent = PydanticDomainEvent
"""Alias of ``PydanticDomainEvent``, the default domain event base."""


class PydanticNotificationEvent(PydanticEvent, INotificationEvent[PayloadT], Generic[PayloadT]):
    """Default notification event base (``NotificationEvent``): a frozen, generic model.

    ``NotificationEvent[OrderPayload](event_name="order_placed", payload=...)`` validates
    ``payload`` against ``OrderPayload`` (a dict is accepted and converted); the instance's
    type is the parametrised class. ``payload`` and ``event_name`` are required;
    ``event_id`` defaults to a new UUID4, ``event_timestamp`` to the current time and
    ``topic`` to ``DEFAULT_OUTPUT_TOPIC``. Missing or invalid fields raise
    ``pydantic.ValidationError``. ``from_attributes=True`` lets ``model_validate`` read any
    object that has these attributes. The hash is the hash of ``event_id``. Override
    ``proto()`` and ``from_proto()`` to publish the event as protobuf.

    Unlike 4.x, the default ``event_timestamp`` is timezone-aware UTC
    (``datetime.now(UTC)``) rather than naive local time. A timestamp passed explicitly is
    kept as given.
    """

    model_config: ClassVar[pydantic.ConfigDict] = pydantic.ConfigDict(
        frozen=True, from_attributes=True
    )

    payload: PayloadT
    event_id: uuid.UUID = pydantic.Field(default_factory=uuid.uuid4)
    event_timestamp: datetime = pydantic.Field(default_factory=_utc_now)
    event_name: str
    topic: str = DEFAULT_OUTPUT_TOPIC

    def __hash__(self) -> int:
        return hash(self.event_id)


NotificationEvent = PydanticNotificationEvent
"""Alias of ``PydanticNotificationEvent``, the default notification event base."""


# -- dataclass family -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DCEvent(IEvent):
    """Base of dataclass events: a frozen dataclass with no fields.

    Subclasses must apply ``@dataclasses.dataclass(frozen=True)`` themselves; assigning to a
    field then raises ``dataclasses.FrozenInstanceError``.
    """

    def to_dict(self) -> dict[str, Any]:
        """Return the event as a JSON-ready dict with camelCase keys, recursively.

        UUID -> 32-character hex, datetime/date/time -> ISO string, Enum -> value, nested
        dataclasses -> dicts, pydantic models -> ``model_dump(mode="json")``.
        """
        return to_camel_dict(self)

    @classmethod
    def from_dict(cls, **kwargs: Any) -> Self:
        """Build the event from a dict with camelCase or snake_case keys.

        Values are converted by the field annotations where that is unambiguous: UUID and
        datetime from strings, nested dataclasses from dicts, lists of them, ``X | None``...
        Unknown keys are ignored. Raises ``TypeError`` when a required field is missing and
        ``ValueError`` when a value cannot be converted.
        """
        return from_camel_dict(cls, kwargs)


@dataclasses.dataclass(frozen=True)
class DCDomainEvent(DCEvent, IDomainEvent):
    """Dataclass domain event base: a frozen dataclass with no fields of its own."""


@dataclasses.dataclass(frozen=True)
class DCNotificationEvent(DCEvent, INotificationEvent[PayloadT], Generic[PayloadT]):
    """Dataclass notification event base: a frozen, generic dataclass.

    Positional fields, in this order: ``event_name``, ``payload``, ``event_id`` (default: a
    new UUID4), ``event_timestamp`` (default: now, timezone-aware UTC, where 4.x used naive
    local time) and ``topic`` (default: ``DEFAULT_OUTPUT_TOPIC``).

    ``payload`` is stored as given. ``from_dict`` rebuilds it as a typed value only when a
    subclass binds the payload type (``class OrderPlaced(DCNotificationEvent[Order])``) or
    re-annotates ``payload``; otherwise it stays the dict that ``to_dict`` produced.

    The hash is the hash of ``event_id``. A ``@dataclass(frozen=True)`` subclass gets a
    generated hash instead; since only ``event_id`` of the inherited fields takes part in
    it, that hash still works when the payload is an unhashable dict. Override ``proto()``
    and ``from_proto()`` to publish the event as protobuf.
    """

    event_name: str = dataclasses.field(hash=False)
    payload: PayloadT = dataclasses.field(hash=False)
    event_id: uuid.UUID = dataclasses.field(default_factory=uuid.uuid4)
    event_timestamp: datetime = dataclasses.field(default_factory=_utc_now, hash=False)
    topic: str = dataclasses.field(default_factory=lambda: DEFAULT_OUTPUT_TOPIC, hash=False)

    def __hash__(self) -> int:
        return hash(self.event_id)
