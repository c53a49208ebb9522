"""From the order service's outbox to the notification service: the relay and the consumer.

:class:`NotificationPipeline` runs, while the app runs (``async with pipeline:``):

* an ``OutboxRelay`` that claims the committed rows of the outbox, publishes them to the
  broker and marks them ``PRODUCED`` once the broker confirmed them (woken by every commit,
  so a notification leaves at once);
* one ``EventConsumer`` per notification topic, reading the broker into the notification
  service's ``EventMediator`` behind an ``IdempotentEventMediator`` with its SQLite inbox, so a
  redelivered notification runs its handler once.

The broker is the in-memory one by default; :func:`broker_for_url` makes RabbitMQ, NATS
JetStream, Redis Streams or Kafka from a URL (the app's ``DEMO_BROKER``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import urllib.parse
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Protocol, Self

from examples.demo_app.store import Database, Inbox, Outbox

import cqrs
from cqrs.consumers import EventConsumer
from cqrs.errors import PublishError
from cqrs.inbox import IdempotentEventMediator
from cqrs.inbox.sqlalchemy import SqlAlchemyInbox
from cqrs.message_brokers.protocol import Message, MessageBroker
from cqrs.outbox import OutboxRelay

logger = logging.getLogger("examples.demo_app")

CONSUMER_GRACE = 5.0
"""Seconds a stopping consumer gives the notifications it is handling."""

BROKER_URL_FORMS = "amqp://, amqps://, nats://, tls://, redis://, rediss://, kafka://host:port"


class Broker(Protocol):
    """What the pipeline needs of a broker: publish, subscribe, open and close."""

    async def send_message(self, message: Message) -> None: ...

    async def subscribe(self, topic: str, *, prefetch: int = 10) -> Any: ...

    async def open(self) -> None: ...

    async def close(self) -> None: ...


def broker_for_url(url: str) -> Broker:
    """The broker a ``DEMO_BROKER`` URL names (not connected yet).

    Raises ``ValueError`` for a URL of no known scheme, and ``MissingExtraError`` when the
    broker's client is not installed (``pip install 'cqrs-kit[rabbit]'``, ``[nats]``,
    ``[redis]``, ``[kafka]``).
    """
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme in ("amqp", "amqps"):
        from cqrs.message_brokers.amqp import AMQPMessageBroker

        return AMQPMessageBroker.from_url(url)
    if scheme in ("nats", "tls"):
        from cqrs.message_brokers.nats import NatsJetStreamBroker

        return NatsJetStreamBroker.from_url(url)
    if scheme in ("redis", "rediss"):
        from cqrs.message_brokers.redis import RedisMessageBroker

        return RedisMessageBroker.from_url(url)
    if scheme == "kafka":
        from cqrs.message_brokers.kafka import KafkaMessageBroker

        servers = url.removeprefix("kafka://").strip("/")
        return KafkaMessageBroker.from_url(servers)
    raise ValueError(
        f"DEMO_BROKER={url!r} is not a broker URL; use one of {BROKER_URL_FORMS}, or leave "
        "it unset for the in-memory broker"
    )


def describe(url: str | None) -> str:
    """The broker for people: ``in-memory``, or its URL without the password."""
    if not url:
        return "in-memory"
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.netloc.rpartition('@')[2]}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


class _ConfirmedSends(MessageBroker):
    """The relay's broker: publishes through the running broker and reports each message
    the broker confirmed (``send_message`` returned) to ``on_confirmed``."""

    def __init__(self, on_confirmed: Callable[[Message], None]) -> None:
        self.broker: Broker | None = None
        self._on_confirmed = on_confirmed

    async def send_message(self, message: Message) -> None:
        broker = self.broker
        if broker is None:
            raise PublishError("the notification pipeline is not running")
        await broker.send_message(message)
        self._on_confirmed(message)


class NotificationPipeline:
    """The relay and the consumers of the app (see the module docstring).

    ``orders`` is the database with the outbox, ``notifications`` the one with the inbox;
    ``mediator`` the notification service's ``EventMediator``; ``events`` maps a message name
    to the notification type it decodes into; ``topics`` are read, one consumer each.
    ``broker_url`` picks a real broker (:func:`broker_for_url`), else ``memory_broker`` is
    used (and neither opened nor closed here). ``on_published(message)`` is called for every
    notification the broker confirmed.

    ``async with pipeline:`` starts both and stops them on leaving: the relay first
    (it finishes the batch in hand), then the consumers (``CONSUMER_GRACE`` seconds for the
    notifications being handled; the rest stays with the broker), then the broker it opened.
    It may be entered again after that (each time with a new relay and new consumers).
    """

    def __init__(
        self,
        *,
        orders: Database,
        notifications: Database,
        mediator: cqrs.EventMediator,
        events: dict[str, type[cqrs.NotificationEvent[Any]]],
        topics: Callable[[], Sequence[str]],
        memory_broker: Broker,
        broker_url: str | None,
        on_published: Callable[[Message], None],
    ) -> None:
        self.broker_url = broker_url or None
        self._orders = orders
        self._notifications = notifications
        self._mediator = mediator
        self._events = events
        self._topics = topics
        self._memory_broker = memory_broker
        self._sends = _ConfirmedSends(on_published)
        self._inbox_mediator: IdempotentEventMediator | None = None
        self._relay: OutboxRelay | None = None
        self._relay_totals: collections.Counter[str] = collections.Counter()
        self._consumers: list[EventConsumer] = []
        self._consumed: collections.Counter[str] = collections.Counter()
        self._stack: contextlib.AsyncExitStack | None = None

    @property
    def broker(self) -> str:
        """The broker, for people (no password)."""
        return describe(self.broker_url)

    @property
    def running(self) -> bool:
        """Whether the relay and the consumers run (inside ``async with``)."""
        return self._stack is not None

    def wake(self) -> None:
        """A notification was committed: cut the relay's wait short."""
        if self._relay is not None:
            self._relay.wake()

    async def lag(self) -> dict[str, Any]:
        """The outbox's lag (one query; works whether the relay runs or not)."""
        relay = self._relay or OutboxRelay(self._orders.engine, self._sends, model=Outbox)
        return dataclasses.asdict(await relay.lag())

    def stats(self) -> dict[str, dict[str, int]]:
        """The counts of the relay (``relay``), the inbox (``inbox``) and the consumers
        (``consumers``) since the process started."""
        relay = collections.Counter(self._relay_totals)
        if self._relay is not None:
            relay.update(dataclasses.asdict(self._relay.totals))
        consumers = collections.Counter(self._consumed)
        for consumer in self._consumers:
            consumers.update(dataclasses.asdict(consumer.stats))
        inbox = self._inbox_mediator
        return {
            "relay": dict(relay),
            "inbox": {} if inbox is None else dataclasses.asdict(inbox.stats),
            "consumers": dict(consumers),
        }

    async def __aenter__(self) -> Self:
        """Subscribe the consumers, then start the relay. Raises ``ConnectionError`` naming
        ``DEMO_BROKER`` when the broker cannot be reached, ``ValueError`` for a URL of no
        known scheme, ``MissingExtraError`` without the broker's client, and
        ``RuntimeError`` when the pipeline runs already."""
        if self._stack is not None:
            raise RuntimeError("the notification pipeline is running already")
        # Left in reverse: the relay stops first, then the consumers, then the broker.
        async with contextlib.AsyncExitStack() as stack:
            mediator = self._inbox_mediator
            if mediator is None:
                inbox = SqlAlchemyInbox(
                    self._notifications.sessions, consumer="notification-service", model=Inbox
                )
                mediator = self._inbox_mediator = IdempotentEventMediator(self._mediator, inbox)
            real = broker_for_url(self.broker_url) if self.broker_url else None
            broker = real or self._memory_broker
            subscriptions: list[tuple[str, Any]] = []
            try:
                if real is not None:
                    await real.open()
                    stack.push_async_callback(real.close)
                for topic in self._topics():
                    subscription = await broker.subscribe(topic, prefetch=10)
                    stack.push_async_callback(subscription.close)
                    subscriptions.append((topic, subscription))
            except Exception as exc:
                if real is None:
                    raise
                raise ConnectionError(
                    f"DEMO_BROKER={self.broker}: could not connect and subscribe "
                    f"({type(exc).__name__}: {exc}); start the broker, or unset DEMO_BROKER "
                    "for the in-memory one"
                ) from exc
            for topic, subscription in subscriptions:
                consumer = EventConsumer(subscription, mediator, self._events)
                running = asyncio.get_running_loop().create_task(
                    consumer.run(), name=f"demo-consumer-{topic}"
                )
                self._consumers.append(consumer)
                stack.push_async_callback(self._stop_consumer, consumer, running)
            self._sends.broker = broker
            stack.callback(setattr, self._sends, "broker", None)
            relay = OutboxRelay(self._orders.engine, self._sends, model=Outbox, poll_interval=1.0)
            stack.callback(self._forget_relay, relay)
            await stack.enter_async_context(relay)
            self._relay = relay
            self._stack = stack.pop_all()
        logger.info("Notifications: outbox relay -> %s broker -> consumer (inbox).", self.broker)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the relay (after its batch), the consumers, and the broker opened here."""
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    async def _stop_consumer(self, consumer: EventConsumer, running: asyncio.Task[None]) -> None:
        try:
            await consumer.stop(grace=CONSUMER_GRACE)
            await running
        finally:
            self._consumers.remove(consumer)
            self._consumed.update(dataclasses.asdict(consumer.stats))

    def _forget_relay(self, relay: OutboxRelay) -> None:
        self._relay = None
        self._relay_totals.update(dataclasses.asdict(relay.totals))
