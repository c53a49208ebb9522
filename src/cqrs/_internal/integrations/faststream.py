"""FastStream glue: a RabbitMQ subscriber of a FastStream app that hands events to
``EventMediator`` under cqrs's retry and dead-letter policy.

:func:`subscribe_events` registers the subscriber on a FastStream ``RabbitBroker`` (or
``RabbitRouter``) with FastStream's own acknowledgement turned off (``AckPolicy.MANUAL``) and
its body decoding bypassed, so that every message goes through this module:

* decoded exactly as ``cqrs.consumers.EventConsumer`` decodes (``consumers/decode.py``);
  a message that can never be an event (not JSON, unknown event name, wrong schema) is
  dead-lettered at once with the reason, and never redelivered;
* sent with ``mediator.send`` and acked only after it returned;
* on a handler failure, retried ``max_attempts`` times in all with ``backoff(attempt)``
  seconds before each retry, then dead-lettered with the error as the reason.

A retry publishes a copy of the message to the same queue, carrying the number of attempts
made in the :data:`ATTEMPTS_HEADER` header, waits for RabbitMQ's confirm and only then acks
the original, so attempts are counted exactly on classic and quorum queues alike (a classic
queue's redelivered flag can only tell 1 from 2) and a failing message never loops. A
dead-letter publishes a copy to ``<queue>.dead-letter`` through the exchange
``cqrs.dead-letter`` (the convention of ``cqrs.message_brokers.amqp``) with the reason in
``x-dead-letter-reason``, then acks. A failure in between duplicates a copy, never loses the
message. A handler still running when the app stops past FastStream's ``graceful_timeout``
is cancelled and its message left unacked: RabbitMQ delivers it again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from cqrs._internal._optional import require
from cqrs._internal.brokers.amqp import attempts
from cqrs._internal.brokers.amqp.attempts import ATTEMPTS_HEADER
from cqrs._internal.brokers.amqp.topology import DEAD_LETTER_EXCHANGE, QueueOptions
from cqrs._internal.brokers.delivery import (
    DEAD_LETTER_REASON_HEADER,
    ORIGINAL_TOPIC_HEADER,
    Delivery,
    DeliverySettledError,
    dead_letter_topic,
)
from cqrs._internal.brokers.message import received_message
from cqrs._internal.brokers.protocol import Message, PublishError
from cqrs._internal.consumers.decode import EventSource
from cqrs._internal.consumers.policy import DEFAULT_BACKOFF, MessagePolicy, SupportsSend

with require("faststream", extra="faststream", feature="cqrs.integrations.faststream"):
    import aio_pika
    from aio_pika import IncomingMessage
    from aio_pika.abc import AbstractIncomingMessage, DeliveryMode
    from aiormq.abc import AbstractChannel, AbstractConnection
    from faststream import AckPolicy
    from faststream.rabbit import (
        Channel,
        ExchangeType,
        QueueType,
        RabbitBroker,
        RabbitExchange,
        RabbitQueue,
        RabbitRouter,
    )
    from faststream.rabbit.message import RabbitMessage
    from faststream.rabbit.subscriber import RabbitSubscriber
    from pamqp.commands import Basic

__all__ = [
    "ATTEMPTS_HEADER",
    "EventSubscriber",
    "FastStreamDelivery",
    "attempt_of",
    "rabbit_exchange",
    "rabbit_queue",
    "subscribe_events",
]

logger = logging.getLogger("cqrs.faststream")

CONFIRM_TIMEOUT = 30.0
"""Seconds a retry or dead-letter copy may wait for RabbitMQ's confirm."""

# -- attempts and the queue as cqrs declares it ---------------------------------------------------


def attempt_of(message: RabbitMessage | AbstractIncomingMessage) -> int:
    """The attempt this delivery is: 1 for the first, 2 for the second, and so on.

    The attempts made before the copy was published (its :data:`ATTEMPTS_HEADER`, 0 for an
    original) plus this copy's delivery number as RabbitMQ counts it: ``x-delivery-count + 1``
    on a quorum queue, else 2 when redelivered and 1 when not. Accepts FastStream's message
    or the aio-pika one (what a FastStream broker middleware sees as ``self.msg``).
    """
    raw = message.raw_message if isinstance(message, RabbitMessage) else message
    return attempts.attempt_of(raw.headers, raw.redelivered)


def rabbit_queue(name: str, options: QueueOptions | None = None) -> RabbitQueue:
    """The FastStream ``RabbitQueue`` of ``name`` declared exactly as
    ``cqrs.message_brokers.amqp.AMQPMessageBroker`` declares it (by default a durable
    quorum queue dead-lettering into ``<name>.dead-letter``), so a FastStream subscriber
    and a cqrs publisher can share it. RabbitMQ refuses (``PRECONDITION_FAILED``) to
    declare an existing queue with other settings: pass the ``options`` it was made with."""
    options = options or QueueOptions()
    if options.queue_type == "quorum":
        queue = RabbitQueue(name, queue_type=QueueType.QUORUM, durable=True)
    else:
        queue = RabbitQueue(name, durable=options.durable)
    queue.arguments = options.arguments(name)  # exactly these: no added x-queue-type
    return queue


def rabbit_exchange(name: str, options: QueueOptions | None = None) -> RabbitExchange:
    """The direct exchange ``name`` as ``AMQPMessageBroker`` declares it (durable unless
    ``options.durable`` is false)."""
    durable = (options or QueueOptions()).durable
    return RabbitExchange(name, type=ExchangeType.DIRECT, durable=durable)


# -- the dead-letter side, declared once ----------------------------------------------------------


class _DeadLetters:
    """Declares the dead-letter exchange and ``<queue>.dead-letter`` (with its binding) once,
    on a channel of its own, so a refused declaration never closes the consumer's channel.
    Concurrent first uses share one declaration; a failed one is retried by the next use."""

    def __init__(self, queue: str, options: QueueOptions) -> None:
        self.queue = queue
        self.routing_key = dead_letter_topic(queue)
        self._options = options
        self._done = False
        self._pending: asyncio.Future[None] | None = None

    def forget(self) -> None:
        """Declare again on the next use (the server lost the queue)."""
        self._done = False

    async def ensure(self, connection: AbstractConnection) -> None:
        """Declare unless done; raises the broker's error when RabbitMQ refuses."""
        if self._done:
            return
        if self._pending is not None:
            await asyncio.shield(self._pending)
            return
        pending = self._pending = asyncio.get_running_loop().create_future()
        try:
            await self._declare(connection)
        except BaseException as exc:
            pending.set_exception(exc)
            pending.exception()
            raise
        else:
            self._done = True
            pending.set_result(None)
        finally:
            self._pending = None

    async def _declare(self, connection: AbstractConnection) -> None:
        durable = self._options.durable
        channel = await connection.channel()
        try:
            await channel.exchange_declare(
                DEAD_LETTER_EXCHANGE, exchange_type="direct", durable=durable
            )
            await channel.queue_declare(
                self.routing_key,
                durable=durable,
                arguments=self._options.arguments(self.routing_key),
            )
            await channel.queue_bind(self.routing_key, DEAD_LETTER_EXCHANGE, self.routing_key)
        finally:
            if not getattr(channel, "is_closed", False):
                await channel.close()


# -- one delivery ---------------------------------------------------------------------------


class FastStreamDelivery:
    """One message of a FastStream subscriber as a cqrs ``Delivery`` (``ack``, ``nack``,
    ``dead_letter``, ``attempt``; see ``cqrs._internal.brokers.delivery``), plus
    :meth:`retry`. Each must be settled once: a second settlement raises
    ``DeliverySettledError``. Settling through FastStream's message keeps FastStream's
    own bookkeeping (``message.committed``) right."""

    __slots__ = ("_dead_letters", "_decoded", "_message", "_settled", "confirm_timeout")

    def __init__(
        self,
        message: RabbitMessage,
        dead_letters: _DeadLetters,
        confirm_timeout: float = CONFIRM_TIMEOUT,
    ) -> None:
        self._message = message
        self._dead_letters = dead_letters
        self._decoded: Message | None = None
        self._settled = False
        self.confirm_timeout = confirm_timeout

    @property
    def stream_message(self) -> RabbitMessage:
        """FastStream's message."""
        return self._message

    @property
    def raw(self) -> IncomingMessage:
        """The aio-pika message."""
        return self._message.raw_message

    @property
    def topic(self) -> str:
        """The queue the message was consumed from."""
        return self._dead_letters.queue

    @property
    def message(self) -> Message:
        """The message as received (``payload_bytes`` is the exact body)."""
        if self._decoded is None:
            raw = self.raw
            self._decoded = received_message(
                raw.body,
                topic=self.topic,
                message_id=raw.message_id,
                name=raw.type,
                content_type=raw.content_type,
                headers=raw.headers,
            )
        return self._decoded

    @property
    def attempt(self) -> int:
        """See :func:`attempt_of`."""
        return attempt_of(self.raw)

    def _claim(self, action: str) -> None:
        if self._settled:
            raise DeliverySettledError(
                f"Cannot {action} a delivery that was already settled; settle each once."
            )
        self._settled = True

    async def ack(self) -> None:
        """Settle as done (``basic.ack``)."""
        self._claim("ack")
        await self._message.ack()

    async def nack(self, requeue: bool = True) -> None:
        """Return the message to its queue (``basic.nack``; its ``attempt`` is RabbitMQ's
        redelivery count then), or dead-letter it as ``"rejected"``."""
        if not requeue:
            await self.dead_letter("rejected")
            return
        self._claim("nack")
        await self._message.nack(requeue=True)

    async def retry(self) -> None:
        """Publish a copy to the queue with ``attempt`` in :data:`ATTEMPTS_HEADER`, wait for
        its confirm, then ack this one. Raises ``PublishError`` when RabbitMQ does not
        confirm the copy (this message then stays unacked and comes back)."""
        self._claim("retry")
        headers = self._copied_headers()
        headers[ATTEMPTS_HEADER] = self.attempt
        await self._publish("", self.topic, headers, self.raw.delivery_mode)
        await self._message.ack()

    async def dead_letter(self, reason: str) -> None:
        """Publish the copy with ``reason`` to ``<queue>.dead-letter`` (declared on first
        use), wait for its confirm, then ack. Raises ``PublishError`` when RabbitMQ does
        not confirm it (this message then stays unacked and comes back)."""
        self._claim("dead-letter")
        await self._dead_letters.ensure(self.raw.channel.connection)
        headers = self._copied_headers()
        headers[DEAD_LETTER_REASON_HEADER] = reason
        headers[ORIGINAL_TOPIC_HEADER] = self.topic
        try:
            await self._publish(
                DEAD_LETTER_EXCHANGE,
                self._dead_letters.routing_key,
                headers,
                DeliveryMode.PERSISTENT,
            )
        except PublishError:
            self._dead_letters.forget()  # unroutable: the queue may be gone
            raise
        await self._message.ack()

    def _copied_headers(self) -> dict[str, Any]:
        return attempts.copied_headers(self.raw.headers)

    async def _publish(
        self,
        exchange: str,
        routing_key: str,
        headers: dict[str, Any],
        mode: DeliveryMode | int | None,
    ) -> None:
        raw = self.raw
        copy = aio_pika.Message(
            raw.body,
            headers=headers,
            content_type=raw.content_type,
            content_encoding=raw.content_encoding,
            delivery_mode=mode,
            priority=raw.priority,
            correlation_id=raw.correlation_id,
            reply_to=raw.reply_to,
            message_id=raw.message_id,
            timestamp=raw.timestamp,
            type=raw.type,
            app_id=raw.app_id,
        )
        channel: AbstractChannel = raw.channel
        what = f"the copy of message {raw.message_id} for {routing_key!r}"
        try:
            confirm: object = await channel.basic_publish(
                copy.body,
                exchange=exchange,
                routing_key=routing_key,
                properties=copy.properties,
                mandatory=True,
                timeout=self.confirm_timeout,
            )
        except TimeoutError as exc:
            raise PublishError(
                f"RabbitMQ did not confirm {what} within {self.confirm_timeout:g} s."
            ) from exc
        if isinstance(confirm, Basic.Ack):
            return
        if confirm is None:
            raise PublishError(
                f"Cannot confirm {what}: the subscriber's channel has publisher confirms "
                "off; subscribe with a Channel(publisher_confirms=True) (the default)."
            )
        raise PublishError(
            f"RabbitMQ did not store {what} ({type(confirm).__name__}: returned unroutable "
            "or nacked)."
        )


# -- the subscriber -------------------------------------------------------------------------


async def _retry(delivery: FastStreamDelivery) -> None:
    await delivery.retry()


class EventSubscriber:
    """A FastStream subscriber routed into ``mediator.send`` (made by
    :func:`subscribe_events`): ``subscriber`` is FastStream's, ``stats`` counts what it did
    (the ``ConsumerStats`` of ``EventConsumer``), ``queue`` is the queue name."""

    def __init__(
        self,
        subscriber: RabbitSubscriber,
        policy: MessagePolicy[FastStreamDelivery],
        dead_letters: _DeadLetters,
        confirm_timeout: float,
    ) -> None:
        self.subscriber = subscriber
        self.queue = dead_letters.queue
        self.stats = policy.stats
        self._policy = policy
        self._dead_letters = dead_letters
        self._confirm_timeout = confirm_timeout
        self._declaring = True

    async def handle(self, message: RabbitMessage) -> None:
        """Decode, send, then ack; retry or dead-letter by the policy of
        ``EventConsumer`` (``consumers/policy.py``). Never raises for a bad message or a
        failing handler; ``CancelledError`` leaves the message unsettled."""
        delivery = FastStreamDelivery(message, self._dead_letters, self._confirm_timeout)
        if self._declaring:
            self._declaring = False
            await self._declare_dead_letters(delivery)
        await self._policy.handle(delivery)

    async def _declare_dead_letters(self, delivery: FastStreamDelivery) -> None:
        """Declare the dead-letter side up front, so RabbitMQ's own dead-lettering (past a
        quorum queue's delivery limit) has a target; a failure is retried on first use."""
        try:
            await self._dead_letters.ensure(delivery.raw.channel.connection)
        except Exception as exc:
            logger.warning(
                "Declaring %s failed (%s: %s); retried when a message is dead-lettered.",
                self._dead_letters.routing_key,
                type(exc).__name__,
                exc,
            )


async def _the_message(message: RabbitMessage) -> RabbitMessage:
    """FastStream decoder handing the handler FastStream's message itself, body untouched:
    the adapter decodes it (FastStream must not fail on, or spend time parsing, a body the
    adapter will dead-letter), and a plain parameter is much cheaper than injecting the
    message from FastStream's context (one worker-thread call and task group per message).
    Async on purpose: FastStream runs a sync decoder in a worker thread, per message."""
    return message


def subscribe_events(
    broker: RabbitBroker | RabbitRouter,
    queue: str | RabbitQueue,
    mediator: SupportsSend,
    events: EventSource,
    *,
    exchange: str | RabbitExchange | None = None,
    prefetch: int = 10,
    max_attempts: int = 5,
    backoff: Callable[[int], float] = DEFAULT_BACKOFF,
    on_dead_letter: Callable[[Delivery, str], object] | None = None,
    queue_options: QueueOptions | None = None,
    confirm_timeout: float = CONFIRM_TIMEOUT,
) -> EventSubscriber:
    """Subscribe ``broker`` (a FastStream ``RabbitBroker`` or ``RabbitRouter``) to
    ``queue`` and send every event in it through ``mediator``
    (``EventMediator`` or anything with ``send``).

    ``events`` is what ``EventConsumer`` takes: one event type, a mapping of
    ``event_name`` to event type, or a 4.x deserializer such as ``JsonDeserializer(Model)``.
    A queue given by name is declared as :func:`rabbit_queue` declares it (with
    ``queue_options``); a ``RabbitQueue`` is used as it is (any type: attempts are counted
    in a header). ``exchange`` (a name: a durable direct exchange, as cqrs's publisher
    declares it) binds the queue with its name as routing key. At most ``prefetch``
    messages are unacked, and handled concurrently, at once. A failed handler is retried
    up to ``max_attempts`` in all, ``backoff(attempt)`` seconds before each retry, then
    dead-lettered; ``on_dead_letter(delivery, reason)`` (sync or async) is called for
    every message given up. Retry and dead-letter copies wait up to ``confirm_timeout``
    seconds for RabbitMQ's confirm.

    Nothing connects here: FastStream starts the subscriber with the broker. Raises
    ``ValueError`` for ``prefetch`` or ``max_attempts`` below 1 and ``TypeError`` for an
    ``events`` it cannot decode into.
    """
    if prefetch < 1:
        raise ValueError(f"prefetch must be at least 1, got {prefetch}")
    policy = MessagePolicy[FastStreamDelivery](
        mediator,
        events,
        max_attempts,
        backoff,
        on_dead_letter,
        logger,
        retry=_retry,
        retry_action="retry",
        redelivery="RabbitMQ will deliver it again once the channel closes.",
    )
    options = queue_options or QueueOptions()
    declared = rabbit_queue(queue, options) if isinstance(queue, str) else queue
    bound = rabbit_exchange(exchange, options) if isinstance(exchange, str) else exchange
    subscriber = broker.subscriber(
        declared,
        bound,
        channel=Channel(prefetch_count=prefetch, publisher_confirms=True),
        ack_policy=AckPolicy.MANUAL,
        decoder=_the_message,
        no_reply=True,
    )
    route = EventSubscriber(
        subscriber, policy, _DeadLetters(declared.name, options), confirm_timeout
    )

    async def cqrs_events(message: Any) -> None:
        message.clear_cache()  # it held itself, as the decoded body
        await route.handle(message)

    subscriber(cqrs_events)
    return route
