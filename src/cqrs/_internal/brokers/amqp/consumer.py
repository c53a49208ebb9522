"""Consuming from RabbitMQ: subscriptions for the runner, and the 4.x ``AMQPConsumer``.

An :class:`AMQPSubscription` owns one channel with ``basic.qos(prefetch)`` and one consumer
on its queue. ``attempt`` is RabbitMQ's own count on a quorum queue (``x-delivery-count`` +
1). A classic queue only tells a first delivery from a redelivery, so there ``nack`` (requeue)
publishes a copy carrying the attempts made in ``x-cqrs-attempts`` to the queue, waits for its
confirm, then acks the original (``attempts.py``): the count is exact and a failing message
reaches its limit; the copy goes to the back of the queue.
``dead_letter(reason)`` publishes a copy, with the reason in ``x-dead-letter-reason``, to the
queue's dead-letter queue, waits for its confirm, and only then acks the original: a failure
in between duplicates the dead letter, never loses it. Closing the subscription closes its
channel, and RabbitMQ returns every unacked message to the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import Any, Self

from cqrs._internal._optional import require
from cqrs._internal.brokers.amqp.attempts import ATTEMPTS_HEADER, attempt_of, copied_headers
from cqrs._internal.brokers.amqp.factories import make_pools
from cqrs._internal.brokers.amqp.topology import DEAD_LETTER_EXCHANGE, QueueOptions, Topology
from cqrs._internal.brokers.delivery import (
    DEAD_LETTER_REASON_HEADER,
    ORIGINAL_TOPIC_HEADER,
    dead_letter_topic,
)
from cqrs._internal.brokers.lifecycle import BrokerStateError
from cqrs._internal.brokers.message import received_message
from cqrs._internal.brokers.protocol import Message
from cqrs._internal.brokers.settle import claim, settlement_lost

with require("aio-pika", extra="rabbit", feature="cqrs.adapters.amqp"):
    import aio_pika
    import aio_pika.exceptions
    from aio_pika.abc import (
        AbstractChannel,
        AbstractIncomingMessage,
        AbstractQueue,
        DeliveryMode,
    )
    from aio_pika.pool import Pool

__all__ = ["AMQPConsumer", "AMQPDelivery", "AMQPSubscription", "amqp_consumer_factory"]

logger = logging.getLogger("cqrs.amqp")

WATCH_EVERY = 1.0
"""Seconds between two checks that a consumer channel is open."""


async def reopen_quietly(channel: AbstractChannel) -> None:
    """Try to reopen a closed channel; a failure (the connection is still down) is left for
    the next try."""
    try:
        async with asyncio.timeout(5):
            await channel.reopen()
    except Exception as exc:
        logger.debug("reopening a closed channel failed: %s", exc)


class AMQPSubscription:
    """Deliveries of one RabbitMQ queue (see ``cqrs._internal.brokers.delivery``).

    Made by ``AMQPMessageBroker.subscribe``; call :meth:`start` before iterating.
    """

    def __init__(
        self,
        connection_pool: Pool[Any],
        topology: Topology,
        exchange_name: str,
        topic: str,
        prefetch: int,
        *,
        on_close: Callable[[AMQPSubscription], object] | None = None,
    ) -> None:
        self._connections = connection_pool
        self._topology = topology
        self._exchange_name = exchange_name
        self._topic = topic
        self._prefetch = prefetch
        self._on_close = on_close
        self._buffer: asyncio.Queue[AbstractIncomingMessage | None] = asyncio.Queue()
        self._channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self._consumer_tag: str | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def topic(self) -> str:
        """The queue this subscription reads."""
        return self._topic

    @property
    def prefetch(self) -> int:
        """How many deliveries may be unacked at once (``basic.qos``)."""
        return self._prefetch

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran."""
        return self._closed

    async def start(self) -> None:
        """Open the channel, declare the queue and start consuming."""
        async with self._connections.acquire() as connection:
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        self._channel = channel
        try:
            await channel.set_qos(prefetch_count=self._prefetch)
            await self._topology.ensure(channel, self._exchange_name, self._topic)
            queue = self._queue = await self._topology.queue(channel, self._topic)
            self._consumer_tag = await queue.consume(self._received)
        except BaseException:
            await channel.close()
            raise
        self._watchdog = asyncio.create_task(self._watch(channel))

    async def _watch(self, channel: AbstractChannel) -> None:
        """Reopen the channel when aio-pika's own recovery left it closed after a
        reconnection (it restores the qos, the queue and the consumer)."""
        closed_checks = 0
        while not self._closed:
            await asyncio.sleep(WATCH_EVERY)
            if not channel.is_closed:
                closed_checks = 0
                continue
            closed_checks += 1
            if closed_checks >= 2:
                await reopen_quietly(channel)

    async def _received(self, message: AbstractIncomingMessage) -> None:
        self._buffer.put_nowait(message)

    def __aiter__(self) -> AsyncIterator[AMQPDelivery]:
        return self

    async def __anext__(self) -> AMQPDelivery:
        """The next delivery; ``StopAsyncIteration`` once closed. Cancel-safe."""
        if self._closed:
            raise StopAsyncIteration
        message = await self._buffer.get()
        if message is None or self._closed:
            self._buffer.put_nowait(None)  # wake the other waiters too
            raise StopAsyncIteration
        return AMQPDelivery(self, message)

    async def close(self) -> None:
        """Stop consuming; RabbitMQ returns every unacked message to the queue."""
        if self._closed:
            return
        self._closed = True
        self._buffer.put_nowait(None)
        channel = self._channel
        watchdog = self._watchdog
        if watchdog is not None:
            watchdog.cancel()
            await asyncio.gather(watchdog, return_exceptions=True)
        if self._on_close is not None:
            self._on_close(self)
        if channel is not None and not channel.is_closed:
            try:
                await channel.close()
            except Exception:  # a broken channel is closed anyway
                logger.debug(
                    "closing the consumer channel of %s failed", self._topic, exc_info=True
                )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def publish_dead_letter(self, message: AbstractIncomingMessage, reason: str) -> None:
        """Publish the dead-letter copy of ``message`` and wait for its confirm."""
        channel = self._channel
        if channel is None:
            raise BrokerStateError("Cannot dead-letter before the subscription started.")
        headers = copied_headers(message.headers)
        headers[DEAD_LETTER_REASON_HEADER] = reason
        headers[ORIGINAL_TOPIC_HEADER] = self._topic
        exchange = await channel.get_exchange(DEAD_LETTER_EXCHANGE, ensure=False)
        await exchange.publish(
            _copy(message, headers, DeliveryMode.PERSISTENT),
            routing_key=dead_letter_topic(self._topic),
            mandatory=True,
        )

    @property
    def counts_in_header(self) -> bool:
        """True on a classic queue: a retry is a copy counting attempts in a header."""
        return self._topology.options.queue_type == "classic"

    async def publish_retry(self, message: AbstractIncomingMessage, attempt: int) -> None:
        """Publish the copy of ``message`` that is its attempt ``attempt + 1`` to this
        queue and wait for its confirm (raises when RabbitMQ does not confirm it)."""
        channel = self._channel
        if channel is None:
            raise BrokerStateError("Cannot retry before the subscription started.")
        headers = copied_headers(message.headers)
        headers[ATTEMPTS_HEADER] = attempt
        await channel.default_exchange.publish(
            _copy(message, headers, message.delivery_mode or DeliveryMode.PERSISTENT),
            routing_key=self._topic,
            mandatory=True,
        )


def _copy(
    message: AbstractIncomingMessage, headers: dict[str, Any], mode: DeliveryMode | int
) -> aio_pika.Message:
    return aio_pika.Message(
        body=message.body,
        headers=headers,
        content_type=message.content_type,
        content_encoding=message.content_encoding,
        message_id=message.message_id,
        correlation_id=message.correlation_id,
        timestamp=message.timestamp,
        type=message.type,
        app_id=message.app_id,
        delivery_mode=mode,
    )


class AMQPDelivery:
    """One message of an :class:`AMQPSubscription` (see ``Delivery``)."""

    __slots__ = ("_message", "_raw", "_settled", "_subscription")

    def __init__(self, subscription: AMQPSubscription, raw: AbstractIncomingMessage) -> None:
        self._subscription = subscription
        self._raw = raw
        self._message: Message | None = None
        self._settled = False

    @property
    def raw(self) -> AbstractIncomingMessage:
        """The aio-pika message."""
        return self._raw

    @property
    def message(self) -> Message:
        """The message as received (``payload_bytes`` is the body)."""
        if self._message is None:
            raw = self._raw
            self._message = received_message(
                raw.body,
                topic=self._subscription.topic,
                message_id=raw.message_id,
                name=raw.type,
                content_type=raw.content_type,
                headers=raw.headers,
            )
        return self._message

    @property
    def attempt(self) -> int:
        """RabbitMQ's count, ``x-delivery-count + 1``, on a quorum queue; on a classic
        queue the attempts counted in ``x-cqrs-attempts`` plus 1, or 2 when redelivered."""
        return attempt_of(self._raw.headers, self._raw.redelivered)

    def _claim(self, action: str) -> None:
        claim(action, settled=self._settled, closed=self._subscription.closed)
        self._settled = True

    async def ack(self) -> None:
        """Settle as done (``basic.ack``). Raises :class:`DeliveryLostError` when the
        channel the message came on is gone (RabbitMQ delivers it again)."""
        self._claim("ack")
        async with _settling("ack", self._raw):
            await self._raw.ack()

    async def nack(self, requeue: bool = True) -> None:
        """Return the message to the queue, or dead-letter it as ``"rejected"``.

        On a quorum queue a ``basic.nack`` (RabbitMQ counts the attempt); on a classic
        queue a confirmed copy counting the attempt, then ``basic.ack`` of this one (a
        failure in between leaves both: a duplicate, never a loss). Raises the publish
        error when RabbitMQ does not confirm the copy; this message then comes back."""
        if not requeue:
            await self.dead_letter("rejected")
            return
        self._claim("nack")
        subscription = self._subscription
        async with _settling("nack", self._raw):
            if subscription.counts_in_header:
                await subscription.publish_retry(self._raw, self.attempt)
                await self._raw.ack()
                return
            await self._raw.nack(requeue=True)

    async def dead_letter(self, reason: str) -> None:
        """Publish the copy with ``reason`` to ``<queue>.dead-letter``, then ack."""
        self._claim("dead-letter")
        await self._subscription.publish_dead_letter(self._raw, reason)
        async with _settling("dead-letter", self._raw):
            await self._raw.ack()


@contextlib.asynccontextmanager
async def _settling(action: str, raw: AbstractIncomingMessage) -> AsyncGenerator[None]:
    """Turn the client's errors for a channel or connection that is gone into
    ``DeliveryLostError``; other errors pass unchanged."""
    try:
        yield
    except (
        aio_pika.exceptions.AMQPError,
        aio_pika.exceptions.ChannelInvalidStateError,
        ConnectionError,
    ) as exc:
        raise settlement_lost(
            action,
            raw.message_id or raw.delivery_tag,
            "the channel it came on",
            exc,
            "RabbitMQ delivers it again",
        ) from exc


class AMQPConsumer:
    """Runs a handler for every message of a queue (4.x ``cqrs.adapters.amqp.AMQPConsumer``).

    ``consume(handler, queue_name)`` declares the queue (durable quorum queue with its
    dead-letter queue, as the publisher does), sets prefetch to 1, hands each
    ``aio_pika.abc.AbstractIncomingMessage`` to ``handler`` (which acks it, typically with
    ``async with message.process():``) and waits until cancelled; the consumer channel is
    closed then, and RabbitMQ returns the unacked message. :meth:`close` closes the pools.
    """

    def __init__(
        self,
        channel_pool: Pool[Any],
        *,
        connection_pool: Pool[Any] | None = None,
        topology: Topology | None = None,
    ) -> None:
        self.channel_pool = channel_pool
        self.connection_pool = connection_pool
        self.topology = topology or Topology(QueueOptions())

    async def close(self) -> None:
        """Close the channels and connections of this consumer's pools."""
        await self.channel_pool.close()
        if self.connection_pool is not None:
            await self.connection_pool.close()

    async def consume(
        self,
        handler: Callable[[AbstractIncomingMessage], Awaitable[None]],
        queue_name: str,
    ) -> None:
        """Consume ``queue_name`` with ``handler`` until cancelled."""
        async with self.channel_pool.acquire() as channel:
            await channel.set_qos(prefetch_count=1)
            await self.topology.ensure(channel, None, queue_name)
            queue = await self.topology.queue(channel, queue_name)
            tag = await queue.consume(handler)
            try:
                await asyncio.get_running_loop().create_future()
            finally:
                await asyncio.shield(_cancel_quietly(queue, tag))


async def _cancel_quietly(queue: AbstractQueue, tag: str) -> None:
    try:
        await queue.cancel(tag)
    except Exception:  # the channel is gone: nothing left to cancel
        logger.debug("cancelling consumer %s failed", tag, exc_info=True)


def amqp_consumer_factory(
    url: str, max_connection_pool_size: int = 2, max_channel_pool_size: int = 10
) -> AMQPConsumer:
    """An :class:`AMQPConsumer` for ``url`` (4.x signature); nothing connects until
    ``consume``."""
    connections, channels = make_pools(url, max_connection_pool_size, max_channel_pool_size)
    return AMQPConsumer(channels, connection_pool=connections)
