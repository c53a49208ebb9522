"""The RabbitMQ broker (4.x path; needs the rabbit extra)."""

from cqrs._internal.brokers.amqp.producer import AMQPMessageBroker as AMQPMessageBroker
from cqrs._internal.brokers.amqp.producer import PublishError as PublishError
from cqrs._internal.brokers.amqp.topology import QueueOptions as QueueOptions

__all__ = ["AMQPMessageBroker", "PublishError", "QueueOptions"]
