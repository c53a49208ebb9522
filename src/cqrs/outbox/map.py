"""The outbox's event-name registry (4.x path)."""

from cqrs._internal.outbox.map import OutboxedEventMap as OutboxedEventMap

__all__ = ["OutboxedEventMap"]
