"""The interfaces of the broker client adapters (4.x path; needs no extra)."""

from cqrs._internal.brokers.kafka.protocol import AMQPConsumer as AMQPConsumer
from cqrs._internal.brokers.kafka.protocol import AMQPPublisher as AMQPPublisher
from cqrs._internal.brokers.kafka.protocol import KafkaProducer as KafkaProducer

__all__ = ["AMQPConsumer", "AMQPPublisher", "KafkaProducer"]
