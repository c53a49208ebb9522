"""The 4.x outbox relay loop (4.x path)."""

from cqrs._internal.outbox.producer import EventProducer as EventProducer
from cqrs._internal.outbox.producer import SessionFactory as SessionFactory

__all__ = ["EventProducer", "SessionFactory"]
