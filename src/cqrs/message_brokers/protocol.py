"""The message and the broker interface (4.x path)."""

from cqrs._internal.brokers.protocol import Message as Message
from cqrs._internal.brokers.protocol import MessageBroker as MessageBroker

__all__ = ["Message", "MessageBroker"]
