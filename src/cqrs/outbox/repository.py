"""The outbox storage protocol, its row and status types (4.x path)."""

from cqrs._internal.outbox.models import EventStatus as EventStatus
from cqrs._internal.outbox.models import OutboxedEvent as OutboxedEvent
from cqrs._internal.outbox.repository import OutboxedEventRepository as OutboxedEventRepository

__all__ = ["EventStatus", "OutboxedEvent", "OutboxedEventRepository"]
