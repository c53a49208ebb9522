"""The errors of the Kafka broker (no aiokafka needed to import or catch them)."""

from __future__ import annotations

from cqrs._internal.brokers.delivery import DeliverySettledError
from cqrs._internal.brokers.protocol import PublishError
from cqrs._internal.errors import CQRSError

__all__ = ["KafkaCommitError", "KafkaPublishError", "PartitionRevokedError"]


class KafkaPublishError(PublishError):
    """Kafka did not acknowledge a record (``acks``) in time, or refused it: it may not
    have been stored. The message names the topic, the record and the last error."""


class KafkaCommitError(CQRSError, ConnectionError):
    """Kafka did not confirm the commit of consumed offsets in time, or refused it (the
    group rebalanced). The settled messages are committed by a later commit or, if the
    consumer stops first, delivered again."""


class PartitionRevokedError(DeliverySettledError):
    """A delivery was settled after its partition moved to another consumer of the group
    (a rebalance): that consumer delivers the message again."""
