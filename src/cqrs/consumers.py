"""Consume a broker into an EventMediator: the runner, its backoff and its counters."""

from cqrs._internal.consumers.runner import Backoff as Backoff
from cqrs._internal.consumers.runner import ConsumerStats as ConsumerStats
from cqrs._internal.consumers.runner import EventConsumer as EventConsumer

__all__ = ["Backoff", "ConsumerStats", "EventConsumer"]
