"""Publishing to RabbitMQ: the 4.x ``AMQPPublisher`` and ``AMQPMessageBroker``.

Differences from 4.x, on purpose:

* **Confirmed or raised.** Every publish waits for RabbitMQ's confirm; a message that is
  nacked, unroutable, or not confirmed within ``confirm_timeout`` seconds (retrying through
  connection losses with backoff meanwhile) raises :class:`PublishError`. Never silent.
* **Durable by default**: durable exchange, durable quorum queue, persistent messages (4.x:
  transient queue, auto-delete exchange, transient messages, lost on a restart). A queue
  that 4.x declared with other settings must be deleted once (RabbitMQ refuses to redeclare
  a queue differently: ``PRECONDITION_FAILED``).
* **Declared once** per queue and process, not on every publish.
* **Pipelined.** Concurrent publishes share one confirm channel and are in flight together
  (``asyncio.gather`` of many ``send_message`` calls), rather than each waiting for a pooled
  channel and its confirm in turn.
* **The message id is the event id**, and the AMQP ``type`` is the message name.

Delivery is at least once: a publish retried after a lost connection may have reached the
queue already (deduplicate on the message id).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from cqrs._internal._optional import require
from cqrs._internal.brokers.amqp.consumer import AMQPSubscription, reopen_quietly
from cqrs._internal.brokers.amqp.factories import make_pools
from cqrs._internal.brokers.amqp.topology import QueueOptions, Topology
from cqrs._internal.brokers.lifecycle import BrokerLifecycle
from cqrs._internal.brokers.message import wire_body, wire_id
from cqrs._internal.brokers.protocol import Message, MessageBroker, PublishError

with require("aio-pika", extra="rabbit", feature="cqrs.message_brokers.amqp"):
    import aio_pika
    from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractMessage, DeliveryMode
    from aio_pika.exceptions import CONNECTION_EXCEPTIONS, DeliveryError
    from aio_pika.pool import Pool
    from aiormq.abc import DeliveredMessage


__all__ = ["AMQPMessageBroker", "AMQPPublisher", "PublishError", "amqp_publisher_factory"]

logger = logging.getLogger("cqrs.amqp")

CONFIRM_TIMEOUT = 30.0
"""Seconds a publish may take, reconnections included, before it raises."""

_RETRY_FIRST, _RETRY_MAX = 0.05, 2.0


class AMQPPublisher:
    """Publishes aio-pika messages with confirms (4.x ``cqrs.adapters.amqp.AMQPPublisher``).

    ``channel_pool`` yields channels with publisher confirms (see ``channel_pool_factory``);
    the publisher takes one and pipelines every publish on it. ``connection_pool`` (set by
    :func:`amqp_publisher_factory`) lets a broker open consumer channels too.
    """

    def __init__(
        self,
        channel_pool: Pool[Any],
        *,
        connection_pool: Pool[Any] | None = None,
        queue_options: QueueOptions | None = None,
        confirm_timeout: float = CONFIRM_TIMEOUT,
    ) -> None:
        self.channel_pool = channel_pool
        self.connection_pool = connection_pool
        self.topology = Topology(queue_options or QueueOptions())
        self.confirm_timeout = confirm_timeout
        self._channel: AbstractChannel | None = None
        self._exchanges: dict[str, AbstractExchange] = {}
        self._channel_lock: asyncio.Lock | None = None

    async def publish(self, message: AbstractMessage, queue_name: str, exchange_name: str) -> None:
        """Publish ``message`` to ``exchange_name`` with routing key ``queue_name`` (the queue
        is declared and bound on first use) and wait for the confirm.

        Connection losses are retried with backoff until ``confirm_timeout``; then, or when
        RabbitMQ nacks the message or cannot route it twice in a row, raises
        :class:`PublishError` naming the message and the last error.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.confirm_timeout
        delay = _RETRY_FIRST
        unroutable = 0
        while True:
            try:
                channel = await self._publishing_channel()
                await self.topology.ensure(channel, exchange_name, queue_name)
                exchange = self._exchanges.get(exchange_name)
                if exchange is None:
                    exchange = await channel.get_exchange(exchange_name, ensure=False)
                    self._exchanges[exchange_name] = exchange
                async with asyncio.timeout_at(deadline):
                    confirm = await exchange.publish(
                        message, routing_key=queue_name, mandatory=True
                    )
                if isinstance(confirm, DeliveredMessage):  # returned, on a channel that does
                    raise DeliveryError(confirm, confirm.delivery)  # not raise for returns
                return
            except DeliveryError as exc:
                # Returned as unroutable (the queue was deleted: declare it again) or nacked.
                unroutable += 1
                self.topology.forget(exchange_name, queue_name)
                if unroutable >= 2 or loop.time() >= deadline:
                    raise self._error(message, queue_name, exc) from exc
            except (*CONNECTION_EXCEPTIONS, TimeoutError) as exc:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise self._error(message, queue_name, exc) from exc
                logger.warning(
                    "Publishing %s to %s failed (%s: %s); retrying in %.2g s.",
                    message.message_id,
                    queue_name,
                    type(exc).__name__,
                    exc,
                    min(delay, remaining),
                )
                await asyncio.sleep(min(delay, remaining))
                delay = min(delay * 2, _RETRY_MAX)
                channel = self._channel
                if channel is not None and channel.is_closed and delay >= _RETRY_MAX:
                    await reopen_quietly(channel)  # aio-pika's own recovery gave up

    def _error(self, message: AbstractMessage, queue: str, exc: BaseException) -> PublishError:
        return PublishError(
            f"RabbitMQ did not confirm message {message.message_id} for queue {queue!r} "
            f"within {self.confirm_timeout:g} s ({type(exc).__name__}: {exc}); it may not "
            "have been stored."
        )

    async def _publishing_channel(self) -> AbstractChannel:
        """The channel every publish of this publisher shares, taken from the pool once (a
        robust channel: it comes back by itself after a connection loss)."""
        channel = self._channel
        if channel is not None:
            return channel
        if self._channel_lock is None:
            self._channel_lock = asyncio.Lock()
        async with self._channel_lock:
            channel = self._channel
            if channel is None:
                channel = self._channel = await self.channel_pool.acquire().__aenter__()
            return channel

    async def close(self) -> None:
        """Close the channels and connections of this publisher's pools."""
        self._channel = None
        await self.channel_pool.close()
        if self.connection_pool is not None:
            await self.connection_pool.close()


def amqp_publisher_factory(
    url: str,
    max_connection_pool_size: int = 2,
    max_channel_pool_size: int = 10,
    *,
    queue_options: QueueOptions | None = None,
    confirm_timeout: float = CONFIRM_TIMEOUT,
) -> AMQPPublisher:
    """An :class:`AMQPPublisher` for ``url`` (4.x signature; the keyword-only options are
    ours). Nothing connects until the first publish."""
    connections, channels = make_pools(url, max_connection_pool_size, max_channel_pool_size)
    return AMQPPublisher(
        channels,
        connection_pool=connections,
        queue_options=queue_options,
        confirm_timeout=confirm_timeout,
    )


class AMQPMessageBroker(BrokerLifecycle, MessageBroker):
    """Publishes notification events to RabbitMQ and subscribes to its queues.

    ``AMQPMessageBroker(publisher, exchange_name)`` is the 4.x constructor: each message goes
    to ``exchange_name`` with ``message.topic`` as routing key and queue name. The body is
    the 4.x wire body (JSON of ``event.to_dict()``); ``content_type`` and headers are sent
    only when set, as in 4.x; ``message_id`` is the event id, ``type`` the message name, and
    the message is persistent. ``pika_log_level`` sets the ``aio_pika`` and ``aiormq``
    loggers, as 4.x did.

    :meth:`from_url` builds the publisher too, and the broker then closes it on
    :meth:`close`. :meth:`subscribe` needs a publisher made by
    :func:`amqp_publisher_factory` (it opens consumer channels on its connection pool).
    ``send_message`` raises :class:`PublishError` when RabbitMQ did not confirm the message.
    """

    def __init__(
        self,
        publisher: Any,
        exchange_name: str,
        pika_log_level: str = "ERROR",
        *,
        persistent: bool = True,
    ) -> None:
        self.publisher = publisher
        self.exchange_name = exchange_name
        self._delivery_mode = DeliveryMode.PERSISTENT if persistent else DeliveryMode.NOT_PERSISTENT
        self._owns_publisher = False
        self._subscriptions: set[AMQPSubscription] = set()
        logging.getLogger("aio_pika").setLevel(pika_log_level)
        logging.getLogger("aiormq").setLevel(pika_log_level)

    @classmethod
    def from_url(
        cls,
        url: str,
        exchange_name: str = "cqrs",
        *,
        queue_options: QueueOptions | None = None,
        confirm_timeout: float = CONFIRM_TIMEOUT,
        pika_log_level: str = "ERROR",
    ) -> AMQPMessageBroker:
        """A broker with its own publisher for ``url``; :meth:`close` closes it."""
        publisher = amqp_publisher_factory(
            url, queue_options=queue_options, confirm_timeout=confirm_timeout
        )
        broker = cls(publisher, exchange_name, pika_log_level)
        broker._owns_publisher = True
        return broker

    async def send_message(self, message: Message) -> None:
        """Publish ``message`` and wait for RabbitMQ's confirm; raises :class:`PublishError`
        when it did not come, ``BrokerStateError`` once the broker is closed."""
        await self._ensure_open("publish")
        await self.publisher.publish(
            aio_pika.Message(
                body=wire_body(message),
                content_type=message.content_type,
                headers=message.headers,  # pyright: ignore[reportArgumentType]
                message_id=wire_id(message),
                type=message.message_name or None,
                delivery_mode=self._delivery_mode,
            ),
            queue_name=message.topic,
            exchange_name=self.exchange_name,
        )

    async def subscribe(self, topic: str, *, prefetch: int = 10) -> AMQPSubscription:
        """Consume the queue ``topic`` (declared if needed) with ``prefetch`` unacked
        messages at most. Raises ``ValueError`` for ``prefetch < 1``, ``TypeError`` when the
        publisher has no connection pool, ``BrokerStateError`` once the broker is closed."""
        if prefetch < 1:
            raise ValueError(f"prefetch must be at least 1, got {prefetch}")
        connections = getattr(self.publisher, "connection_pool", None)
        if connections is None:
            raise TypeError(
                "subscribe needs the connection pool of a publisher made by "
                "amqp_publisher_factory(url); build the broker with "
                "AMQPMessageBroker.from_url(url) or from such a publisher."
            )
        await self._ensure_open("subscribe")
        subscription = AMQPSubscription(
            connections,
            self.publisher.topology,
            self.exchange_name,
            topic,
            prefetch,
            on_close=self._subscriptions.discard,
        )
        await subscription.start()
        self._subscriptions.add(subscription)
        return subscription

    async def _disconnect(self) -> None:
        for subscription in list(self._subscriptions):
            await subscription.close()
        if self._owns_publisher:
            await self.publisher.close()
