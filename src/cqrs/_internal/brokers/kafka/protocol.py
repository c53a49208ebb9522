"""The 4.x ``cqrs.adapters.protocol`` interfaces: what a broker needs from a client adapter.

4.x keeps the Kafka and the RabbitMQ interfaces in one module, and so do we (this one needs
neither aiokafka nor aio-pika). ``KafkaMessageBroker`` takes any :class:`KafkaProducer`;
``AMQPMessageBroker`` any :class:`AMQPPublisher`; ``cqrs.adapters.amqp.AMQPPublisher`` and
``AMQPConsumer`` and ``cqrs.adapters.kafka.KafkaProducer`` have these shapes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from aio_pika.abc import AbstractIncomingMessage, AbstractMessage

__all__ = ["AMQPConsumer", "AMQPPublisher", "KafkaProducer"]


@runtime_checkable
class KafkaProducer(Protocol):
    """Sends one record to Kafka (4.x ``cqrs.adapters.protocol.KafkaProducer``)."""

    async def produce(
        self, topic: str, message: Any, headers: dict[str, str] | None = None
    ) -> None:
        """Send ``message`` (the value: bytes, or what the producer's serializer encodes) to
        ``topic`` with ``headers``; return once Kafka stored it, raise if it did not."""
        ...


@runtime_checkable
class AMQPPublisher(Protocol):
    """Publishes aio-pika messages (4.x ``cqrs.adapters.protocol.AMQPPublisher``)."""

    async def publish(self, message: AbstractMessage, queue_name: str, exchange_name: str) -> None:
        """Publish ``message`` to ``exchange_name`` with routing key ``queue_name``."""
        ...


@runtime_checkable
class AMQPConsumer(Protocol):
    """Runs a handler for every message of a queue (4.x
    ``cqrs.adapters.protocol.AMQPConsumer``)."""

    async def consume(
        self,
        handler: Callable[[AbstractIncomingMessage], Awaitable[None]],
        queue_name: str,
    ) -> None:
        """Consume ``queue_name`` with ``handler`` until cancelled."""
        ...
