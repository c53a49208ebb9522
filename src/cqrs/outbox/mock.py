"""The in-memory outbox for tests (4.x path)."""

from cqrs._internal.outbox.memory import MockOutboxedEventRepository as MockOutboxedEventRepository

__all__ = ["MockOutboxedEventRepository"]
