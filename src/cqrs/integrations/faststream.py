"""Route a FastStream RabbitMQ subscriber into ``EventMediator`` under cqrs's retry and
dead-letter policy (new in cqrs). Needs the ``faststream`` extra:
``pip install 'cqrs-kit[faststream]'``.
"""

from cqrs._internal.integrations.faststream import ATTEMPTS_HEADER as ATTEMPTS_HEADER
from cqrs._internal.integrations.faststream import EventSubscriber as EventSubscriber
from cqrs._internal.integrations.faststream import FastStreamDelivery as FastStreamDelivery
from cqrs._internal.integrations.faststream import attempt_of as attempt_of
from cqrs._internal.integrations.faststream import rabbit_exchange as rabbit_exchange
from cqrs._internal.integrations.faststream import rabbit_queue as rabbit_queue
from cqrs._internal.integrations.faststream import subscribe_events as subscribe_events

__all__ = [
    "ATTEMPTS_HEADER",
    "EventSubscriber",
    "FastStreamDelivery",
    "attempt_of",
    "rabbit_exchange",
    "rabbit_queue",
    "subscribe_events",
]
