"""Helpers for testing code built on cqrs: in-memory brokers and a static container."""

from cqrs._internal.brokers.memory import CallbackMessageBroker as CallbackMessageBroker
from cqrs._internal.brokers.memory import InMemoryMessageBroker as InMemoryMessageBroker
from cqrs._internal.di.plain import StaticContainer as StaticContainer
from cqrs._internal.testing.conformance import ConformanceError as ConformanceError
from cqrs._internal.testing.conformance import ConformanceReport as ConformanceReport
from cqrs._internal.testing.conformance import check_message_broker as check_message_broker

__all__ = [
    "CallbackMessageBroker",
    "InMemoryMessageBroker",
    "StaticContainer",
    "ConformanceError",
    "ConformanceReport",
    "check_message_broker",
]
