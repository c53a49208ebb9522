"""Events: message types, handlers, the emitter and the map (4.x package)."""

from cqrs._internal.events.emitter import EventEmitter as EventEmitter
from cqrs._internal.events.publishers import ConcurrentPublisher as ConcurrentPublisher
from cqrs._internal.events.publishers import EventPublisher as EventPublisher
from cqrs._internal.events.publishers import SequentialPublisher as SequentialPublisher
from cqrs._internal.events.session import EventSession as EventSession
from cqrs._internal.handlers.event import EventHandler as EventHandler
from cqrs._internal.messages.events import DCDomainEvent as DCDomainEvent
from cqrs._internal.messages.events import DCEvent as DCEvent
from cqrs._internal.messages.events import DCNotificationEvent as DCNotificationEvent
from cqrs._internal.messages.events import DomainEvent as DomainEvent
from cqrs._internal.messages.events import Event as Event
from cqrs._internal.messages.events import IDomainEvent as IDomainEvent
from cqrs._internal.messages.events import IEvent as IEvent
from cqrs._internal.messages.events import INotificationEvent as INotificationEvent
from cqrs._internal.messages.events import NotificationEvent as NotificationEvent
from cqrs._internal.messages.events import PydanticDomainEvent as PydanticDomainEvent
from cqrs._internal.messages.events import PydanticEvent as PydanticEvent
from cqrs._internal.messages.events import PydanticNotificationEvent as PydanticNotificationEvent
from cqrs._internal.registry import EventMap as EventMap

__all__ = [
    "EventEmitter",
    "EventHandler",
    "DCDomainEvent",
    "DCEvent",
    "DCNotificationEvent",
    "DomainEvent",
    "Event",
    "IDomainEvent",
    "IEvent",
    "INotificationEvent",
    "NotificationEvent",
    "PydanticDomainEvent",
    "PydanticEvent",
    "PydanticNotificationEvent",
    "EventMap",
    "EventPublisher",
    "EventSession",
    "SequentialPublisher",
    "ConcurrentPublisher",
]
