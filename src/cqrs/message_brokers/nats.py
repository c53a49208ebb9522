"""The NATS JetStream broker (needs the nats extra)."""

from cqrs._internal.brokers.nats.consumer import NatsDelivery as NatsDelivery
from cqrs._internal.brokers.nats.consumer import NatsSubscription as NatsSubscription
from cqrs._internal.brokers.nats.producer import NatsJetStreamBroker as NatsJetStreamBroker
from cqrs._internal.brokers.nats.producer import NatsPublishError as NatsPublishError
from cqrs._internal.brokers.nats.topology import NatsConsumerOptions as NatsConsumerOptions
from cqrs._internal.brokers.nats.topology import NatsStreamOptions as NatsStreamOptions

__all__ = [
    "NatsConsumerOptions",
    "NatsDelivery",
    "NatsJetStreamBroker",
    "NatsPublishError",
    "NatsStreamOptions",
    "NatsSubscription",
]
