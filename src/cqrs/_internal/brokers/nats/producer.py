"""Publishing to NATS JetStream: ``NatsJetStreamBroker``.

* **Acknowledged or raised.** Every publish waits for JetStream's ``PubAck`` (the message is
  stored); a message not acknowledged within ``confirm_timeout`` seconds (retrying through
  reconnections and server restarts with backoff meanwhile), or refused, raises
  :class:`NatsPublishError`. Never silent.
* **Pipelined.** Concurrent publishes (``asyncio.gather`` of many ``send_message``) share one
  connection and are in flight together, at most ``max_in_flight`` at once, their
  acknowledgements collected on one inbox (``acks.py``); a publisher that awaited each
  acknowledgement in turn would be capped at one round trip per message.
* **Stored once.** The message id is the event id, sent as ``Nats-Msg-Id``: a publish retried
  after its acknowledgement was lost is dropped by JetStream as a duplicate (within the
  stream's ``duplicate_window``), so retries do not duplicate messages.
* **Durable by default**: a file-backed work-queue stream and durable consumers, created
  once per broker and idempotently (see ``topology.py``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from cqrs._internal._optional import require
from cqrs._internal.brokers.lifecycle import BrokerLifecycle, BrokerState, BrokerStateError
from cqrs._internal.brokers.message import wire_body
from cqrs._internal.brokers.nats.acks import PubAcks
from cqrs._internal.brokers.nats.connection import close_client, connect
from cqrs._internal.brokers.nats.consumer import NatsSubscription
from cqrs._internal.brokers.nats.topology import (
    NatsConsumerOptions,
    NatsStreamOptions,
    Topology,
    durable_name,
)
from cqrs._internal.brokers.nats.wire import MESSAGE_ID_HEADER, publish_headers
from cqrs._internal.brokers.protocol import Message, MessageBroker, PublishError

with require("nats-py", extra="nats", feature="cqrs.message_brokers.nats"):
    from nats.aio.client import Client
    from nats.errors import Error as NatsError
    from nats.errors import MaxPayloadError
    from nats.js import JetStreamContext
    from nats.js.errors import APIError, BadRequestError, NoStreamResponseError

__all__ = ["NatsJetStreamBroker", "NatsPublishError"]

logger = logging.getLogger("cqrs.nats")

DEFAULT_URL = "nats://127.0.0.1:4222"
CONFIRM_TIMEOUT = 30.0
"""Seconds a publish may take, reconnections included, before it raises."""
CONNECT_TIMEOUT = 30.0
"""Seconds ``open`` and ``subscribe`` wait for a first connection."""
MAX_IN_FLIGHT = 256
"""Publishes awaiting their acknowledgement at once, per broker."""
ATTEMPT_TIMEOUT = 5.0
"""Seconds one publish attempt waits for its acknowledgement before it is sent again."""
_RETRY_FIRST, _RETRY_MAX = 0.05, 2.0


class NatsPublishError(PublishError):
    """JetStream did not acknowledge a message: it may not have been stored."""


class NatsJetStreamBroker(BrokerLifecycle, MessageBroker):
    """Publishes notification events to NATS JetStream and subscribes to its topics.

    ``NatsJetStreamBroker(servers)`` (or :meth:`from_url`) connects on first use. Each
    message goes to the subject ``<subject_prefix>.<message.topic>`` of the stream of
    ``stream`` (:class:`NatsStreamOptions`: ``CQRS`` holding ``cqrs.>``, file storage, work-queue
    retention); :meth:`subscribe` reads a topic through its durable pull consumer
    (:class:`NatsConsumerOptions`). The body is the 4.x wire body (JSON of ``event.to_dict()``);
    ``Nats-Msg-Id`` is the event id. ``connect_options`` go to nats-py's ``connect`` (user,
    password, token, tls, ...).

    ``send_message`` raises :class:`NatsPublishError` when JetStream did not acknowledge
    the message within ``confirm_timeout`` seconds, ``BrokerStateError`` once the broker is
    closed, and ``ValueError`` for a topic that cannot be a NATS subject or a stream that
    cannot be created as configured (a stream of that name holds other subjects).
    """

    def __init__(
        self,
        servers: str | Sequence[str] = DEFAULT_URL,
        *,
        stream: NatsStreamOptions | None = None,
        consumer: NatsConsumerOptions | None = None,
        confirm_timeout: float = CONFIRM_TIMEOUT,
        connect_timeout: float = CONNECT_TIMEOUT,
        max_in_flight: int = MAX_IN_FLIGHT,
        name: str | None = None,
        connect_options: Mapping[str, Any] | None = None,
    ) -> None:
        if confirm_timeout <= 0 or connect_timeout <= 0:
            raise ValueError(
                f"confirm_timeout and connect_timeout must be positive, got "
                f"{confirm_timeout} and {connect_timeout}"
            )
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
        self.servers = servers
        self.topology = Topology(stream or NatsStreamOptions(), consumer or NatsConsumerOptions())
        self.confirm_timeout = confirm_timeout
        self.connect_timeout = connect_timeout
        self.name = name
        self._connect_options = dict(connect_options or {})
        self._in_flight = asyncio.Semaphore(max_in_flight)
        self._client: Client | None = None
        self._js: JetStreamContext | None = None
        self._acks: PubAcks | None = None
        self._subjects: dict[str, str] = {}
        self._subscriptions: set[NatsSubscription] = set()

    @classmethod
    def from_url(
        cls,
        url: str = DEFAULT_URL,
        *,
        stream: NatsStreamOptions | None = None,
        consumer: NatsConsumerOptions | None = None,
        confirm_timeout: float = CONFIRM_TIMEOUT,
        connect_timeout: float = CONNECT_TIMEOUT,
        max_in_flight: int = MAX_IN_FLIGHT,
        name: str | None = None,
        connect_options: Mapping[str, Any] | None = None,
    ) -> NatsJetStreamBroker:
        """A broker for ``url``: the constructor, under the name
        ``AMQPMessageBroker.from_url`` has."""
        return cls(
            url,
            stream=stream,
            consumer=consumer,
            confirm_timeout=confirm_timeout,
            connect_timeout=connect_timeout,
            max_in_flight=max_in_flight,
            name=name,
            connect_options=connect_options,
        )

    @property
    def client(self) -> Client:
        """The nats-py connection (raises ``BrokerStateError`` unless the broker is open)."""
        if self._client is None or self.state is not BrokerState.OPEN:
            raise BrokerStateError(f"{type(self).__name__} is not open; open it first.")
        return self._client

    # -- lifecycle -------------------------------------------------------------------------

    async def _connect(self) -> None:
        client = await connect(
            self.servers,
            within=self.connect_timeout,
            name=self.name,
            options=self._connect_options,
            on_reconnected=self._reconnected,
        )
        try:
            acks = PubAcks(client)
            await acks.start()
        except BaseException:
            await close_client(client)
            raise
        self._client = client
        self._js = client.jetstream()  # pyright: ignore[reportUnknownMemberType]
        self._acks = acks

    async def _reconnected(self) -> None:
        for subscription in list(self._subscriptions):
            subscription.reconnected()

    async def _disconnect(self) -> None:
        for subscription in list(self._subscriptions):
            await subscription.close()
        client = self._client
        if client is None:
            return
        try:
            if client.is_connected:
                await client.flush(timeout=5)
        except (NatsError, OSError, TimeoutError) as exc:
            logger.debug("flushing before close failed: %s", exc)
        await close_client(client)

    # -- publishing ------------------------------------------------------------------------

    def _subject(self, topic: str) -> str:
        subject = self._subjects.get(topic)
        if subject is None:
            subject = self._subjects[topic] = self.topology.stream.subject(topic)
        return subject

    async def send_message(self, message: Message) -> None:
        """Publish ``message`` and wait for JetStream's acknowledgement (see the class)."""
        await self.publish(
            self._subject(message.topic), wire_body(message), publish_headers(message)
        )

    async def publish(self, subject: str, body: bytes, headers: dict[str, str]) -> None:
        """Publish ``body`` with ``headers`` on ``subject`` (inside the stream) and return
        once JetStream stored it (or had it already: same ``Nats-Msg-Id``). Retries
        connection failures with backoff for ``confirm_timeout`` seconds; raises
        :class:`NatsPublishError` then, or at once when JetStream refuses the message."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.confirm_timeout
        if self.state is not BrokerState.OPEN:
            await self._open_for_publish(deadline, subject, headers)
        async with self._in_flight:
            delay = _RETRY_FIRST
            while True:
                acks = self._acks
                if acks is None or self.state is BrokerState.CLOSED:
                    raise NatsPublishError(
                        f"Message {headers.get(MESSAGE_ID_HEADER)} for {subject!r} was not "
                        "acknowledged: the broker was closed meanwhile; it may not have been "
                        "stored."
                    )
                try:
                    if not self.topology.stream_ready:
                        assert self._js is not None
                        await self.topology.ensure_stream(self._js)
                    remaining = deadline - loop.time()
                    await acks.publish(subject, body, headers, min(ATTEMPT_TIMEOUT, remaining))
                    return
                except (BadRequestError, MaxPayloadError) as exc:
                    raise self._error(headers, subject, exc, "refused it") from exc
                except NoStreamResponseError as exc:
                    # No stream answers (deleted, or JetStream not ready after a restart).
                    self.topology.forget_stream()
                    error: BaseException = exc
                except (APIError, NatsError, OSError, TimeoutError) as exc:
                    error = exc
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise self._error(headers, subject, error, "did not acknowledge it")
                logger.warning(
                    "Publishing %s to %s failed (%s: %s); retrying in %.2g s.",
                    headers.get(MESSAGE_ID_HEADER),
                    subject,
                    type(error).__name__,
                    error,
                    min(delay, remaining),
                )
                await asyncio.sleep(min(delay, remaining))
                delay = min(delay * 2, _RETRY_MAX)

    async def _open_for_publish(
        self, deadline: float, subject: str, headers: dict[str, str]
    ) -> None:
        remaining = deadline - asyncio.get_running_loop().time()
        try:
            async with asyncio.timeout(remaining):
                await self._ensure_open("publish")
        except (ConnectionError, NatsError, OSError, TimeoutError) as exc:
            raise self._error(headers, subject, exc, "could not be reached") from exc

    def _error(
        self, headers: dict[str, str], subject: str, exc: BaseException, what: str
    ) -> NatsPublishError:
        message_id = headers.get(MESSAGE_ID_HEADER, "without Nats-Msg-Id")
        return NatsPublishError(
            f"JetStream {what}: message {message_id} for {subject!r} was not acknowledged "
            f"within {self.confirm_timeout:g} s ({type(exc).__name__}: {exc}); it may not "
            "have been stored."
        )

    # -- subscribing -----------------------------------------------------------------------

    async def subscribe(
        self, topic: str, *, prefetch: int = 10, durable: str | None = None
    ) -> NatsSubscription:
        """Read ``topic`` through the durable consumer ``durable`` (default:
        :func:`durable_name` of the topic; subscriptions with one durable name compete for
        the messages), at most ``prefetch`` unsettled at once. Messages published before
        the first subscription are delivered too.

        Raises ``ValueError`` for ``prefetch < 1``, a topic that cannot be a subject, or a
        consumer that cannot exist as asked; ``BrokerStateError`` once the broker is closed;
        ``ConnectionError`` when NATS cannot be reached within ``connect_timeout``.
        """
        if prefetch < 1:
            raise ValueError(f"prefetch must be at least 1, got {prefetch}")
        self._subject(topic)
        await self._ensure_open("subscribe")
        assert self._client is not None
        assert self._js is not None
        subscription = NatsSubscription(
            self._client,
            self._js,
            self.topology,
            topic=topic,
            durable=durable or durable_name(topic),
            prefetch=prefetch,
            publish=self.publish,
            on_close=self._subscriptions.discard,
        )
        await subscription.start()
        self._subscriptions.add(subscription)
        return subscription
