"""RabbitMQ publisher and consumer adapters over aio-pika (4.x path; needs the rabbit extra)."""

from cqrs._internal.brokers.amqp.consumer import AMQPConsumer as AMQPConsumer
from cqrs._internal.brokers.amqp.consumer import amqp_consumer_factory as amqp_consumer_factory
from cqrs._internal.brokers.amqp.factories import channel_pool_factory as channel_pool_factory
from cqrs._internal.brokers.amqp.factories import (
    connection_pool_factory as connection_pool_factory,
)
from cqrs._internal.brokers.amqp.producer import AMQPPublisher as AMQPPublisher
from cqrs._internal.brokers.amqp.producer import (
    amqp_publisher_factory as amqp_publisher_factory,
)

__all__ = [
    "AMQPConsumer",
    "AMQPPublisher",
    "amqp_consumer_factory",
    "amqp_publisher_factory",
    "channel_pool_factory",
    "connection_pool_factory",
]
