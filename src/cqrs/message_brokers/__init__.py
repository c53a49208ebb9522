"""Message brokers (4.x package)."""

from cqrs._internal.brokers.protocol import Message as Message
from cqrs._internal.brokers.protocol import MessageBroker as MessageBroker

__all__ = ["Message", "MessageBroker"]
