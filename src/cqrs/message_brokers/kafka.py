"""The Kafka broker (4.x path; imports without aiokafka, which publishing and subscribing
need: the kafka extra)."""

from cqrs._internal.brokers.kafka.broker import KafkaMessageBroker as KafkaMessageBroker
from cqrs._internal.brokers.kafka.errors import KafkaCommitError as KafkaCommitError
from cqrs._internal.brokers.kafka.errors import KafkaPublishError as KafkaPublishError
from cqrs._internal.brokers.kafka.errors import PartitionRevokedError as PartitionRevokedError

__all__ = ["KafkaCommitError", "KafkaMessageBroker", "KafkaPublishError", "PartitionRevokedError"]
