"""Helpers for testing code built on cqrs: in-memory brokers and a static container."""

from cqrs._internal.brokers.memory import CallbackMessageBroker as CallbackMessageBroker
from cqrs._internal.brokers.memory import InMemoryMessageBroker as InMemoryMessageBroker
from cqrs._internal.di.plain import StaticContainer as StaticContainer

__all__ = ["CallbackMessageBroker", "InMemoryMessageBroker", "StaticContainer"]
