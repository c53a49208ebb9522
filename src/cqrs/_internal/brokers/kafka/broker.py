"""``KafkaMessageBroker``: notification events to Kafka, and subscriptions for the runner.

This module imports without aiokafka (as 4.x's ``cqrs.message_brokers.kafka`` did): the
producer is handed in; subscribing imports the consumer side, which needs aiokafka.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from cqrs._internal.brokers.kafka.protocol import KafkaProducer as KafkaProducerProtocol
from cqrs._internal.brokers.kafka.wire import (
    check_topic,
    message_headers,
    record_headers,
    retry_topic,
)
from cqrs._internal.brokers.lifecycle import BrokerLifecycle, BrokerState
from cqrs._internal.brokers.message import wire_body, wire_id
from cqrs._internal.brokers.protocol import Message, MessageBroker

if TYPE_CHECKING:
    from cqrs._internal.brokers.kafka.consumer import KafkaSubscription

__all__ = ["COMMIT_TIMEOUT", "REVOKE_GRACE", "KafkaMessageBroker", "PartitionKey"]

PartitionKey = Callable[[Message], str | bytes | None]
"""Gives the record key of a message: records with one key go to one partition, in order."""

COMMIT_TIMEOUT = 30.0
"""Seconds a commit of consumed offsets may take before the settlement that waits raises."""

REVOKE_GRACE = 5.0
"""Seconds a rebalance waits for the messages being handled of the partitions it takes away,
so that they are committed rather than delivered again to the next owner."""

_FORCED_CONSUMER_OPTIONS = ("group_id", "enable_auto_commit", "bootstrap_servers")


def _by_event_id(message: Message) -> str:
    return wire_id(message)


class KafkaMessageBroker(BrokerLifecycle, MessageBroker):
    """Publishes notification events to Kafka and subscribes to its topics.

    ``KafkaMessageBroker(producer)`` is the 4.x constructor: ``producer`` is anything with
    the 4.x ``produce(topic, message, headers)`` (``cqrs.adapters.kafka.KafkaProducer`` from
    ``kafka_producer_factory(dsn)``); ``aiokafka_log_level`` sets the ``aiokafka`` logger,
    as 4.x did. Each message becomes one record on ``message.topic``: the value is the 4.x
    wire body, the key is the event id (or ``key(message)``: give one, such as the
    aggregate id, to keep the events of one key in order on one partition), the headers
    carry the message id (the event id), its name and its content type.

    ``send_message`` returns once Kafka acknowledged the record (``acks="all"`` from the
    factory) and raises ``KafkaPublishError`` when it did not. :meth:`from_url` builds the
    producer too, and the broker then closes it on :meth:`close`.

    :meth:`subscribe` needs a producer made by ``kafka_producer_factory`` (it opens
    consumers on the same cluster). Consumers join the group ``group_id`` (default: one
    group per topic, ``"cqrs.<topic>"``, so every subscription of a topic competes for its
    messages); ``consumer_options`` go to ``aiokafka.AIOKafkaConsumer``.
    """

    def __init__(
        self,
        producer: KafkaProducerProtocol,
        aiokafka_log_level: str = "ERROR",
        *,
        key: PartitionKey | None = None,
        group_id: str | None = None,
        consumer_options: Mapping[str, Any] | None = None,
        commit_timeout: float = COMMIT_TIMEOUT,
        revoke_grace: float = REVOKE_GRACE,
    ) -> None:
        for option in _FORCED_CONSUMER_OPTIONS:
            if option in (consumer_options or {}):
                raise ValueError(
                    f"consumer_options may not set {option!r}: the group is group_id (of "
                    "the broker or of subscribe), offsets are committed after the handlers "
                    "succeeded, and the servers are the producer's"
                )
        self.producer = producer
        self.group_id = group_id
        self.consumer_options: dict[str, Any] = dict(consumer_options or {})
        self.commit_timeout = commit_timeout
        self.revoke_grace = revoke_grace
        self._key: PartitionKey = key or _by_event_id
        self._keyed = _accepts_key(producer)
        self._legacy = bool(getattr(producer, "legacy_value_serializer", False))
        self._owns_producer = False
        self._topics: set[str] = set()
        self._subscriptions: set[KafkaSubscription] = set()
        logging.getLogger("aiokafka").setLevel(aiokafka_log_level)

    @classmethod
    def from_url(
        cls,
        dsn: str,
        *,
        key: PartitionKey | None = None,
        group_id: str | None = None,
        consumer_options: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        aiokafka_log_level: str = "ERROR",
        **producer_options: Any,
    ) -> KafkaMessageBroker:
        """A broker with its own producer for the bootstrap servers ``dsn``
        (``"host:port,..."``); :meth:`close` closes it. ``timeout`` bounds each publish
        (default 30 s); ``producer_options`` go to ``kafka_producer_factory``."""
        from cqrs._internal.brokers.kafka.producer import PUBLISH_TIMEOUT, kafka_producer_factory

        producer = kafka_producer_factory(
            dsn, timeout=PUBLISH_TIMEOUT if timeout is None else timeout, **producer_options
        )
        broker = cls(
            producer,
            aiokafka_log_level,
            key=key,
            group_id=group_id,
            consumer_options=consumer_options,
        )
        broker._owns_producer = True
        return broker

    async def send_message(self, message: Message) -> None:
        """Send ``message`` as one record and wait for Kafka's acknowledgement.

        Raises ``KafkaPublishError`` when it did not come, ``ValueError`` for a topic name
        Kafka does not accept, ``BrokerStateError`` once the broker is closed.
        """
        topic = message.topic
        if topic not in self._topics:
            self._topics.add(check_topic(topic))
        if self._state is not BrokerState.OPEN:
            await self._ensure_open("publish")
        producer: Any = self.producer
        if self._keyed:
            wire = wire_id(message)
            await producer.produce(
                topic,
                self._value(message),
                headers=record_headers(message, wire),
                key=wire if self._key is _by_event_id else self._key(message),
            )
        else:
            await producer.produce(topic, self._value(message), headers=message_headers(message))

    async def send_messages(self, messages: Iterable[Message]) -> None:
        """Send many messages: every record is handed to the producer before any
        acknowledgement is awaited (no task per message), then all are awaited. Failed
        records are tried again one by one; raises ``KafkaPublishError`` saying how many
        were not acknowledged once every other one was. Records of one key keep their order.

        With a 4.x producer (no ``produce_many``) the messages are sent concurrently with
        ``send_message``.
        """
        batch = list(messages)
        for message in batch:
            if message.topic not in self._topics:
                self._topics.add(check_topic(message.topic))
        await self._ensure_open("publish")
        produce_many = getattr(self.producer, "produce_many", None)
        if produce_many is None or not self._keyed:
            await asyncio.gather(*(self.send_message(m) for m in batch))
            return
        await produce_many(
            (
                m.topic,
                self._value(m),
                self._key(m),
                record_headers(m, wire_id(m)),
            )
            for m in batch
        )

    def _value(self, message: Message) -> Any:
        if self._legacy and message.payload_bytes is None and message.content_type is None:
            return message.payload  # 4.x: the producer's own serializer encodes it
        return wire_body(message)

    async def subscribe(
        self, topic: str, *, prefetch: int = 10, group_id: str | None = None
    ) -> KafkaSubscription:
        """Consume ``topic`` in consumer group ``group_id`` (default: the broker's, else
        ``"cqrs.<topic>"``), with at most ``prefetch`` unsettled deliveries.

        The subscription also reads the group's retry topic ``<topic>.retry.<group_id>``
        (where ``nack`` puts copies). Raises ``ValueError`` for ``prefetch < 1`` or a name
        Kafka does not accept, ``TypeError`` when the producer has no connection options,
        ``BrokerStateError`` once the broker is closed, and ``MissingExtraError`` without
        aiokafka.
        """
        if prefetch < 1:
            raise ValueError(f"prefetch must be at least 1, got {prefetch}")
        check_topic(topic)
        group = group_id or self.group_id or f"cqrs.{topic}"
        retries = retry_topic(topic, group)
        client_options = getattr(self.producer, "client_options", None)
        if client_options is None or not self._keyed:
            raise TypeError(
                "subscribe needs the connection options of a producer made by "
                "kafka_producer_factory(dsn); build the broker with "
                "KafkaMessageBroker.from_url(dsn) or from such a producer."
            )
        from cqrs._internal.brokers.kafka.consumer import KafkaSubscription

        await self._ensure_open("subscribe")
        subscription = KafkaSubscription(
            topic,
            group,
            prefetch,
            retry_topic=retries,
            consumer_options={**client_options, **self.consumer_options},
            publish=self.producer.produce,
            commit_timeout=self.commit_timeout,
            revoke_grace=self.revoke_grace,
            on_close=self._subscriptions.discard,
        )
        await subscription.start()
        self._subscriptions.add(subscription)
        return subscription

    async def _connect(self) -> None:
        start = getattr(self.producer, "start", None)
        if start is not None:
            await start()

    async def _disconnect(self) -> None:
        for subscription in list(self._subscriptions):
            await subscription.close()
        if self._owns_producer:
            producer: Any = self.producer
            await producer.close()


def _accepts_key(producer: object) -> bool:
    """Whether ``producer.produce`` takes a ``key`` (ours does; a 4.x producer does not)."""
    produce = getattr(producer, "produce", None)
    if produce is None:
        raise TypeError(
            f"producer must have an async produce(topic, message, headers) method (a "
            f"cqrs.adapters.kafka.KafkaProducer), not {type(producer).__name__}"
        )
    try:
        parameters = inspect.signature(produce).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "key" or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
