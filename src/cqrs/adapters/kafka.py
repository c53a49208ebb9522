"""The Kafka producer adapter over aiokafka (4.x path; needs the kafka extra)."""

from cqrs._internal.brokers.kafka.producer import KafkaProducer as KafkaProducer
from cqrs._internal.brokers.kafka.producer import SaslMechanism as SaslMechanism
from cqrs._internal.brokers.kafka.producer import SecurityProtocol as SecurityProtocol
from cqrs._internal.brokers.kafka.producer import Serializer as Serializer
from cqrs._internal.brokers.kafka.producer import kafka_producer_factory as kafka_producer_factory

__all__ = [
    "KafkaProducer",
    "SaslMechanism",
    "SecurityProtocol",
    "Serializer",
    "kafka_producer_factory",
]
