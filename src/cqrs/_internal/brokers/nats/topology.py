"""Where JetStream keeps the messages: one stream, one subject and one durable consumer per
topic, each created once per broker and idempotently.

**One stream, a subject prefix.** Every topic is the subject ``<prefix>.<topic>`` of a
single stream (by default ``CQRS`` holding ``cqrs.>``), and its dead letters the subject
``<prefix>.<topic>.dead-letter`` of the same stream. One stream is created once, whatever
the number of topics, and a deployment sees one place to size, mirror or back up; a topic
is not a stream of its own, so creating one costs nothing on the server.

**A work queue by default.** The stream's retention is ``workqueue``: a message stays until a
consumer acks (or terminates) it and is then removed, as from a RabbitMQ queue, so storage
does not grow with what was consumed. Each topic has one durable pull consumer
(:func:`durable_name`), which all subscriptions of the topic share and compete on.
``retention="limits"`` keeps consumed messages (bounded by ``max_age``/``max_bytes``) and
allows several durable consumers per topic (fan-out: give each service its own
``durable``). The stream is on **file storage** and refuses new messages when full
(``discard: new``) rather than dropping unconsumed ones: the publish then raises.

**De-duplication.** Messages carry their event id in ``Nats-Msg-Id``; JetStream drops a
second message with the same id within ``duplicate_window`` (2 minutes), so a publish
retried after a lost acknowledgement is stored once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Literal

from cqrs._internal._optional import require

with require("nats-py", extra="nats", feature="cqrs.message_brokers.nats"):
    from nats.js import JetStreamContext
    from nats.js.api import (
        AckPolicy,
        ConsumerConfig,
        DeliverPolicy,
        DiscardPolicy,
        RetentionPolicy,
        StorageType,
        StreamConfig,
    )
    from nats.js.errors import BadRequestError

__all__ = ["NatsConsumerOptions", "NatsStreamOptions", "Topology", "durable_name"]

logger = logging.getLogger("cqrs.nats")

STREAM_NAME_IN_USE = 10058
"""JetStream's error code: a stream of that name exists with another configuration."""
SUBJECTS_OVERLAP = 10065
"""JetStream's error code: the subjects are already taken by another stream."""
NOT_UNIQUE_ON_WORKQUEUE = 10100
"""JetStream's error code: a work-queue stream already has a consumer for that subject."""

_BAD_NAME = re.compile(r"[\s.*>/\\]")
_TOKEN = re.compile(r"[^\s.*>]+")
_DURABLE_SAFE = re.compile(r"[^A-Za-z0-9_-]")


def _check_subject(text: str, what: str) -> None:
    tokens = text.split(".")
    if not text or not all(_TOKEN.fullmatch(token) for token in tokens):
        raise ValueError(
            f"{what} {text!r} cannot be part of a NATS subject: use non-empty parts separated "
            "by single dots, without spaces or the wildcards '*' and '>'."
        )


@dataclasses.dataclass(frozen=True)
class NatsStreamOptions:
    """How the stream is created (see the module docstring).

    ``name`` is the stream, ``subject_prefix`` the first part of every topic's subject.
    ``retention`` is ``"workqueue"`` (acked messages are removed; one consumer per topic) or
    ``"limits"`` (kept until ``max_age`` seconds / ``max_bytes`` / ``max_msgs``).
    ``storage="memory"`` loses everything on a server restart. ``duplicate_window`` is how
    long, in seconds, JetStream remembers message ids to drop duplicates. Raises
    ``ValueError`` for a name or prefix NATS would refuse, or a non-positive window.
    """

    name: str = "CQRS"
    subject_prefix: str = "cqrs"
    retention: Literal["workqueue", "limits"] = "workqueue"
    storage: Literal["file", "memory"] = "file"
    duplicate_window: float = 120.0
    max_age: float | None = None
    max_bytes: int | None = None
    max_msgs: int | None = None
    replicas: int = 1

    def __post_init__(self) -> None:
        if not self.name or _BAD_NAME.search(self.name):
            raise ValueError(
                f"stream name {self.name!r} is not a valid JetStream name: use letters, "
                "digits, '-' and '_' (no dots, spaces, slashes or wildcards)."
            )
        _check_subject(self.subject_prefix, "subject_prefix")
        if self.duplicate_window <= 0:
            raise ValueError(f"duplicate_window must be positive, got {self.duplicate_window}")
        if self.replicas < 1:
            raise ValueError(f"replicas must be at least 1, got {self.replicas}")

    @property
    def subjects(self) -> str:
        """The stream's subject filter: ``<prefix>.>``."""
        return f"{self.subject_prefix}.>"

    def subject(self, topic: str) -> str:
        """The subject of ``topic``; raises ``ValueError`` for a topic that cannot be one."""
        _check_subject(topic, "topic")
        return f"{self.subject_prefix}.{topic}"

    def config(self) -> StreamConfig:
        """The JetStream configuration of the stream."""
        return StreamConfig(
            name=self.name,
            subjects=[self.subjects],
            retention=RetentionPolicy.WORK_QUEUE
            if self.retention == "workqueue"
            else RetentionPolicy.LIMITS,
            storage=StorageType.FILE if self.storage == "file" else StorageType.MEMORY,
            discard=DiscardPolicy.NEW,
            duplicate_window=self.duplicate_window,
            max_age=self.max_age,
            max_bytes=self.max_bytes,
            max_msgs=self.max_msgs,
            num_replicas=self.replicas,
        )


@dataclasses.dataclass(frozen=True)
class NatsConsumerOptions:
    """How each topic's durable pull consumer is created.

    ``ack_wait``: seconds JetStream waits for a settlement before it delivers a message
    again (a subscription keeps the messages it holds alive with progress acks, so a slow
    handler is not redelivered while it runs; only a dead consumer's messages come back
    after ``ack_wait``). ``max_deliver``: deliveries after which JetStream gives a message
    up; a live subscription then moves it to the dead-letter subject (``-1``: never give
    up). ``max_ack_pending``: unsettled messages across all subscriptions of the topic
    (``None``: the server's default). Raises ``ValueError`` for values NATS would refuse.
    """

    ack_wait: float = 30.0
    max_deliver: int = 20
    max_ack_pending: int | None = None

    def __post_init__(self) -> None:
        if self.ack_wait < 1:
            raise ValueError(f"ack_wait must be at least 1 second, got {self.ack_wait}")
        if self.max_deliver == 0 or self.max_deliver < -1:
            raise ValueError(f"max_deliver must be -1 or at least 1, got {self.max_deliver}")

    def config(self, durable: str, subject: str) -> ConsumerConfig:
        """The JetStream configuration of the durable consumer ``durable`` of ``subject``."""
        return ConsumerConfig(
            durable_name=durable,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            filter_subject=subject,
            ack_wait=self.ack_wait,
            max_deliver=self.max_deliver,
            max_ack_pending=self.max_ack_pending,
        )


def durable_name(topic: str) -> str:
    """The default durable consumer of ``topic``: the topic itself when it is a valid
    consumer name, else the topic with every other character replaced by ``_`` and a hash
    of the topic appended (``orders.dead-letter`` -> ``orders_dead-letter-1f0c2a9e``), so
    two topics never share a consumer."""
    safe = _DURABLE_SAFE.sub("_", topic)
    if safe == topic:
        return topic
    return f"{safe}-{hashlib.sha256(topic.encode()).hexdigest()[:8]}"


class Topology:
    """Creates the stream, and each durable consumer, once per broker.

    Concurrent first uses share one creation; a failed one is tried again by the next use.
    Creation is idempotent on the server: an identical stream or consumer is left as it is.
    """

    def __init__(self, stream: NatsStreamOptions, consumer: NatsConsumerOptions) -> None:
        self.stream = stream
        self.consumer = consumer
        self._done: set[str] = set()
        self._pending: dict[str, asyncio.Future[None]] = {}

    @property
    def stream_ready(self) -> bool:
        """True once this broker created (or found) the stream."""
        return "stream" in self._done

    def forget_stream(self) -> None:
        """Create the stream (and the consumers) again on next use: the server lost them."""
        self._done.clear()

    def forget_consumer(self, durable: str) -> None:
        """Create this consumer again on its next use."""
        self._done.discard("consumer:" + durable)

    async def ensure_stream(self, js: JetStreamContext) -> None:
        """Create the stream unless this broker already did.

        Raises ``ValueError`` when a stream of that name exists without this prefix in its
        subjects, or another stream holds these subjects; nats-py's errors otherwise.
        """
        if "stream" in self._done:
            return
        await self._once("stream", lambda: self._create_stream(js))

    async def ensure_consumer(self, js: JetStreamContext, durable: str, subject: str) -> None:
        """Create (or update) the durable consumer ``durable`` of ``subject`` unless this
        broker already did. Raises ``ValueError`` when it cannot exist as asked (another
        consumer has the subject of a work-queue stream, or ``durable`` filters another
        subject)."""
        await self.ensure_stream(js)
        key = "consumer:" + durable
        if key in self._done:
            return
        await self._once(key, lambda: self._create_consumer(js, durable, subject))

    async def _once(self, key: str, create: Callable[[], Awaitable[None]]) -> None:
        pending = self._pending.get(key)
        if pending is not None:
            await asyncio.shield(pending)
            return
        future = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            await create()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: only the waiters re-raise it
            raise
        else:
            self._done.add(key)
            future.set_result(None)
        finally:
            del self._pending[key]

    async def _create_stream(self, js: JetStreamContext) -> None:
        options = self.stream
        try:
            await js.add_stream(options.config())  # pyright: ignore[reportUnknownMemberType]
        except BadRequestError as exc:
            if exc.err_code == SUBJECTS_OVERLAP:
                raise ValueError(
                    f"cannot create stream {options.name!r}: another stream already holds "
                    f"subjects overlapping {options.subjects!r}; choose another "
                    "NatsStreamOptions(subject_prefix=...) or name that stream."
                ) from exc
            if exc.err_code != STREAM_NAME_IN_USE:
                raise
            info = await js.stream_info(options.name)
            subjects = info.config.subjects or []
            if options.subjects not in subjects:
                raise ValueError(
                    f"stream {options.name!r} exists with subjects {subjects}, which do not "
                    f"include {options.subjects!r}; choose another NatsStreamOptions(name=...) "
                    "or subject_prefix."
                ) from exc
            logger.info(
                "Using the existing stream %r as it is configured (it differs from %s).",
                options.name,
                options,
            )

    async def _create_consumer(self, js: JetStreamContext, durable: str, subject: str) -> None:
        stream = self.stream.name
        try:
            config = self.consumer.config(durable, subject)
            info = await js.add_consumer(stream, config)  # pyright: ignore[reportUnknownMemberType]
        except BadRequestError as exc:
            if exc.err_code == NOT_UNIQUE_ON_WORKQUEUE:
                raise ValueError(
                    f"cannot create consumer {durable!r} for {subject!r}: the work-queue "
                    f"stream {stream!r} already has a consumer for that subject; subscribe "
                    "with the same durable name, or use NatsStreamOptions(retention='limits') "
                    "for several consumers of one topic."
                ) from exc
            raise
        if info.config.filter_subject != subject:
            raise ValueError(
                f"consumer {durable!r} of stream {stream!r} reads "
                f"{info.config.filter_subject!r}, not {subject!r}; subscribe with another "
                "durable name."
            )
