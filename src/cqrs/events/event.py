"""Event message types (4.x path)."""

from cqrs._internal.messages.events import DEFAULT_OUTPUT_TOPIC as DEFAULT_OUTPUT_TOPIC
from cqrs._internal.messages.events import DCDomainEvent as DCDomainEvent
from cqrs._internal.messages.events import DCEvent as DCEvent
from cqrs._internal.messages.events import DCNotificationEvent as DCNotificationEvent
from cqrs._internal.messages.events import DomainEvent as DomainEvent
from cqrs._internal.messages.events import Event as Event
from cqrs._internal.messages.events import IDomainEvent as IDomainEvent
from cqrs._internal.messages.events import IEvent as IEvent
from cqrs._internal.messages.events import INotificationEvent as INotificationEvent
from cqrs._internal.messages.events import NotificationEvent as NotificationEvent
from cqrs._internal.messages.events import PayloadT as PayloadT
from cqrs._internal.messages.events import PydanticDomainEvent as PydanticDomainEvent
from cqrs._internal.messages.events import PydanticEvent as PydanticEvent
from cqrs._internal.messages.events import PydanticNotificationEvent as PydanticNotificationEvent

__all__ = [
    "DCDomainEvent",
    "DCEvent",
    "DCNotificationEvent",
    "DEFAULT_OUTPUT_TOPIC",
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
