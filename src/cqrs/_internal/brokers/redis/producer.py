"""Publishing to Redis Streams: ``RedisMessageBroker`` and its pipelined publisher.

Each topic is a stream (key ``prefix + topic``); a message is one entry (``XADD ... MAXLEN ~``,
fields in ``wire.py``: the event id travels as the ``id`` field, so consumers can deduplicate).

* **Stored or raised.** ``send_message`` returns once Redis answered the ``XADD`` with the
  entry id. Connection losses and timeouts are retried with backoff until
  ``confirm_timeout``; then, or when Redis refuses the command (out of memory, a read-only
  replica, a key of another type), :class:`RedisPublishError` is raised. Never silent.
* **Pipelined.** Concurrent ``send_message`` calls share round trips: the ``XADD`` commands
  waiting when a batch goes out are sent as one pipeline (group commit, ``batching.py``), so
  ``asyncio.gather`` of many publishes reaches a raw pipeline's throughput, where awaiting
  each ``XADD`` in turn is capped at one round trip per message.
* **Retries do not duplicate.** When the outcome of a batch is unknown (the connection broke
  after Redis may have stored it), the retry runs a script that looks for each message's id
  among the stream's newest entries (those after the last entry this publisher saw stored,
  at most :data:`RETRY_SCAN` of them) and adds only the missing ones.
* **Durability is Redis's.** Redis keeps streams in memory; what survives a restart depends
  on its persistence: none by default (``--save ""``, ``--appendonly no``: a restart loses
  every stream, consumer group and pending message), the last snapshot with RDB, every
  acknowledged write with ``--appendonly yes --appendfsync always`` (about a second of
  writes with ``everysec``). A publish acknowledged by Redis is only as durable as that.

The broker targets a standalone Redis (or a primary with replicas), not Redis Cluster: a
dead letter is stored and its original acknowledged in one script, over two keys.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Iterable
from typing import Any

from cqrs._internal.backoff import Backoff
from cqrs._internal.brokers.lifecycle import BrokerLifecycle, BrokerState
from cqrs._internal.brokers.message import wire_id
from cqrs._internal.brokers.protocol import Message, MessageBroker, PublishError
from cqrs._internal.brokers.redis.batching import GroupCommit
from cqrs._internal.brokers.redis.connection import check_client, make_client, retryable
from cqrs._internal.brokers.redis.consumer import RedisSubscription, block_seconds
from cqrs._internal.brokers.redis.options import StreamOptions
from cqrs._internal.brokers.redis.scripts import ADD_ONCE
from cqrs._internal.brokers.redis.wire import ID, Fields, entry_fields
from cqrs._internal.redis_urls import client_url, without_password

__all__ = ["CONFIRM_TIMEOUT", "RedisMessageBroker", "RedisPublishError", "RedisPublisher"]

logger = logging.getLogger("cqrs.redis")

CONFIRM_TIMEOUT = 30.0
"""Seconds a publish may take, reconnections included, before it raises."""

MAX_BATCH = 1000
"""Commands per pipeline at most."""

RETRY_SCAN = 10_000
"""How many of a stream's newest entries a retried publish looks through for its message."""

DEFAULT_URL = "redis://127.0.0.1:6379/0"

PERSISTENCE_CHECK = 2.0
"""Seconds the broker waits, when it opens, to read what Redis keeps on disk."""


class RedisPublishError(PublishError):
    """Redis did not confirm a message: it may or may not have been stored."""


@dataclasses.dataclass(slots=True)
class _Outgoing:
    key: str
    fields: Fields
    deadline: float

    @property
    def message_id(self) -> str:
        return self.fields[ID].decode()


class RedisPublisher:
    """Adds messages to streams, pipelining concurrent publishes (see the module docstring).

    ``client`` is a ``redis.asyncio.Redis`` returning bytes; ``url`` names it in errors.
    Counters for logs and tests: :attr:`retried` and :attr:`found_stored`.
    """

    def __init__(
        self,
        client: Any,
        *,
        options: StreamOptions,
        confirm_timeout: float = CONFIRM_TIMEOUT,
        url: str,
    ) -> None:
        self.client = client
        self.options = options
        self.confirm_timeout = confirm_timeout
        self.url = url
        self._newest: dict[str, bytes] = {}
        self.retried = 0
        """Messages whose first send had an unknown outcome (connection lost) and were
        retried."""
        self.found_stored = 0
        """Retried messages that had reached Redis already (and were not added again)."""
        self._batches: GroupCommit[_Outgoing, bytes] = GroupCommit(
            self._send, max_batch=MAX_BATCH, name="cqrs redis publish"
        )
        self._add_once: Any = client.register_script(ADD_ONCE)

    def publish(self, key: str, fields: Fields) -> asyncio.Future[bytes]:
        """Add an entry with ``fields`` to the stream ``key``: the future gets its id once
        Redis stored it, or :class:`RedisPublishError` when Redis refused it or did not
        confirm it within ``confirm_timeout`` seconds (retrying meanwhile)."""
        deadline = asyncio.get_running_loop().time() + self.confirm_timeout
        return self._batches.submit(_Outgoing(key, fields, deadline))

    async def drain(self) -> None:
        """Wait for the publishes in flight."""
        await self._batches.drain()

    # -- one batch -------------------------------------------------------------------------

    async def _send(self, batch: list[_Outgoing]) -> list[bytes | BaseException]:
        maxlen = self.options.maxlen
        try:
            async with asyncio.timeout_at(min(item.deadline for item in batch)):
                if len(batch) == 1:  # a lone publish: a plain command costs less
                    [item] = batch
                    replies: list[Any] = [
                        await self.client.xadd(
                            item.key, item.fields, maxlen=maxlen, approximate=True
                        )
                    ]
                else:
                    pipe = self.client.pipeline(transaction=False)
                    for item in batch:
                        pipe.xadd(item.key, item.fields, maxlen=maxlen, approximate=True)
                    replies = await pipe.execute(raise_on_error=False)
        except Exception as exc:
            if not (retryable(exc) or isinstance(exc, TimeoutError)):
                return [self._error(item, exc) for item in batch]
            return await self._retry(batch, exc)
        results: list[bytes | BaseException] = []
        newest = self._newest
        for item, reply in zip(batch, replies, strict=True):
            if isinstance(reply, Exception):
                results.append(self._error(item, reply))
            else:
                newest[item.key] = reply
                results.append(reply)
        return results

    async def _retry(
        self, batch: list[_Outgoing], first: BaseException
    ) -> list[bytes | BaseException]:
        """Retry a batch whose outcome is unknown, without adding a message twice."""
        results: dict[int, bytes | BaseException] = {}
        waiting = dict(enumerate(batch))
        self.retried += len(batch)
        backoff = Backoff()
        last: BaseException = first
        loop = asyncio.get_running_loop()
        logger.warning(
            "Publishing %d message(s) to Redis at %s failed (%s: %s); retrying.",
            len(batch),
            self.url,
            type(first).__name__,
            first,
        )
        while waiting:
            now = loop.time()
            for index, item in list(waiting.items()):
                if item.deadline <= now:
                    results[index] = self._error(item, last)
                    del waiting[index]
            if not waiting:
                break
            await backoff.sleep(min(item.deadline for item in waiting.values()))
            by_key: dict[str, list[int]] = {}
            for index, item in waiting.items():
                by_key.setdefault(item.key, []).append(index)
            for key, indexes in by_key.items():
                items = [waiting[i] for i in indexes]
                try:
                    async with asyncio.timeout_at(min(item.deadline for item in items)):
                        stored = await self._add_missing(key, items)
                except Exception as exc:
                    if not (retryable(exc) or isinstance(exc, TimeoutError)):
                        for index, item in zip(indexes, items, strict=True):
                            results[index] = self._error(item, exc)
                            del waiting[index]
                    last = exc
                    continue
                for index, entry_id in zip(indexes, stored, strict=True):
                    results[index] = entry_id
                    del waiting[index]
                self._stored(key, stored[-1])
        return [results[index] for index in range(len(batch))]

    async def _add_missing(self, key: str, items: list[_Outgoing]) -> list[bytes]:
        newest = self._newest.get(key)
        args: list[Any] = [
            "-" if newest is None else b"(" + newest,
            RETRY_SCAN,
            "" if self.options.maxlen is None else self.options.maxlen,
        ]
        for item in items:
            args += [item.message_id, len(item.fields)]
            for field, value in item.fields.items():
                args += [field, value]
        stored, already = await self._add_once(keys=[key], args=args)
        self.found_stored += sum(already)
        return stored

    def _stored(self, key: str, entry_id: bytes) -> None:
        """Remember the id of the entry last stored in ``key`` (batches go one at a time, so
        it is the newest this publisher added: the lower bound of a retry's search)."""
        self._newest[key] = entry_id

    def _error(self, item: _Outgoing, exc: BaseException) -> RedisPublishError:
        if retryable(exc) or isinstance(exc, TimeoutError):
            what = (
                f"Redis at {self.url} did not confirm message {item.message_id} for stream "
                f"{item.key!r} within {self.confirm_timeout:g} s ({type(exc).__name__}: "
                f"{exc}); it may not have been stored."
            )
        else:
            what = (
                f"Redis at {self.url} refused message {item.message_id} for stream "
                f"{item.key!r} ({type(exc).__name__}: {exc})."
            )
        error = RedisPublishError(what)
        error.__cause__ = exc
        return error


class RedisMessageBroker(BrokerLifecycle, MessageBroker):
    """Publishes notification events to Redis Streams and subscribes to them.

    ``RedisMessageBroker(client)`` uses a ``redis.asyncio.Redis`` you made (it must return
    bytes; it stays open on :meth:`close`); :meth:`from_url` makes its own client and closes
    it. Each message goes to the stream ``options.prefix + message.topic`` (see the module
    docstring for what a publish guarantees); :meth:`subscribe` reads a stream through the
    consumer group ``options.group``. ``send_message`` raises :class:`RedisPublishError` when
    Redis did not confirm the message.

    Raises ``TypeError`` for a client that is not a ``redis.asyncio.Redis`` or decodes
    responses, and ``ValueError`` for a ``confirm_timeout`` that is not positive.
    """

    def __init__(
        self,
        client: Any,
        *,
        options: StreamOptions | None = None,
        confirm_timeout: float = CONFIRM_TIMEOUT,
    ) -> None:
        check_client(client)
        if not confirm_timeout > 0:
            raise ValueError(f"confirm_timeout must be > 0 seconds, got {confirm_timeout!r}")
        self.client = client
        self.options = options or StreamOptions()
        self.url = client_url(client)
        self.publisher = RedisPublisher(
            client, options=self.options, confirm_timeout=confirm_timeout, url=self.url
        )
        self._owns_client = False
        self._subscriptions: set[RedisSubscription] = set()
        self.persistence: str | None = None
        """What Redis keeps on disk, read when the broker opens: ``"none"``, ``"rdb"``
        (snapshots only), ``"aof everysec"``, ``"aof always"``, ``"aof no"``; ``None`` when
        Redis did not say (``CONFIG`` disabled, or Redis unreachable then)."""

    @classmethod
    def from_url(
        cls,
        url: str = DEFAULT_URL,
        *,
        options: StreamOptions | None = None,
        confirm_timeout: float = CONFIRM_TIMEOUT,
    ) -> RedisMessageBroker:
        """A broker with its own client for ``url``; :meth:`close` closes it. Nothing
        connects until the first publish or subscription. Raises ``ValueError`` for a url
        redis-py cannot read."""
        options = options or StreamOptions()
        client = make_client(url, socket_timeout=_socket_timeout(options))
        broker = cls(client, options=options, confirm_timeout=confirm_timeout)
        broker.url = without_password(url)
        broker.publisher.url = broker.url
        broker._owns_client = True
        return broker

    async def send_message(self, message: Message) -> None:
        """Add ``message`` to its topic's stream and wait until Redis stored it; raises
        :class:`RedisPublishError` when it did not, ``TypeError`` for a payload that is
        not JSON-encodable, ``BrokerStateError`` once the broker is closed."""
        fields = entry_fields(message)
        if self.state is not BrokerState.OPEN:
            await self._ensure_open("publish")
        try:
            await self.publisher.publish(self.options.key(message.topic), fields)
        except RedisPublishError:
            raise
        except Exception as exc:  # raised by the batch itself (a bug or an odd client)
            raise RedisPublishError(
                f"Publishing message {wire_id(message)} to Redis at {self.url} failed "
                f"({type(exc).__name__}: {exc})."
            ) from exc

    async def send_messages(self, messages: Iterable[Message]) -> None:
        """Add many messages: every one is queued for the pipeline before any reply is
        awaited (no task per message), then all replies are awaited. Raises
        :class:`RedisPublishError` saying how many were not stored once every other one
        was, ``TypeError`` for a payload that is not JSON-encodable (before anything is
        sent), ``BrokerStateError`` once the broker is closed. Cancelling it drops the
        messages not sent yet; those sent may be stored."""
        options = self.options
        batch = [(options.key(message.topic), entry_fields(message)) for message in messages]
        if self.state is not BrokerState.OPEN:
            await self._ensure_open("publish")
        publish = self.publisher.publish
        futures = [publish(key, fields) for key, fields in batch]
        failures: list[BaseException] = []
        try:
            for future in futures:
                try:
                    await future
                except Exception as exc:
                    failures.append(exc)
        except asyncio.CancelledError:
            for future in futures:
                future.cancel()
            raise
        if failures:
            raise RedisPublishError(
                f"{len(failures)} of {len(batch)} messages were not stored in Redis at "
                f"{self.url}; the first failure: {failures[0]}"
            ) from failures[0]

    async def subscribe(
        self,
        topic: str,
        *,
        prefetch: int = 10,
        group: str | None = None,
        consumer: str | None = None,
    ) -> RedisSubscription:
        """Read the stream of ``topic`` through the consumer group ``group`` (default:
        ``options.group``; created at the stream's oldest entry if new), as the consumer
        ``consumer`` (default: a new name, ``host-pid-random``; a name given must not be
        used by another live subscription of the group, which would return this one's
        messages when it closes), with at most ``prefetch`` messages unsettled.

        Raises ``ValueError`` for ``prefetch < 1``, ``BrokerStateError`` once the broker is
        closed, and redis-py's errors when Redis cannot create the group within
        ``confirm_timeout`` (retrying meanwhile) or the key holds something that is not a
        stream."""
        if prefetch < 1:
            raise ValueError(f"prefetch must be at least 1, got {prefetch}")
        await self._ensure_open("subscribe")
        subscription = RedisSubscription(
            self.client,
            topic,
            options=self.options,
            prefetch=prefetch,
            group=group or self.options.group,
            consumer=consumer,
            settle_timeout=self.publisher.confirm_timeout,
            on_close=self._subscriptions.discard,
        )
        await subscription.start()
        self._subscriptions.add(subscription)
        return subscription

    async def _connect(self) -> None:
        """Read Redis's persistence settings and warn when a restart would lose messages.
        Never fails: a Redis that does not answer now is retried by the operations."""
        try:
            async with asyncio.timeout(PERSISTENCE_CHECK):
                settings: dict[Any, Any] = await self.client.config_get("appendonly")
                settings.update(await self.client.config_get("appendfsync"))
                settings.update(await self.client.config_get("save"))
        except Exception as exc:  # CONFIG renamed or disabled (managed Redis), Redis down
            logger.debug("could not read the persistence of Redis at %s: %r", self.url, exc)
            return
        text = {_text(key): _text(value) for key, value in settings.items()}
        if text.get("appendonly") == "yes":
            self.persistence = f"aof {text.get('appendfsync', 'everysec')}"
        else:
            self.persistence = "rdb" if text.get("save") else "none"
        if self.persistence == "none":
            logger.warning(
                "Redis at %s keeps nothing on disk (appendonly no, no snapshots): a restart "
                "loses every stream, consumer group and pending message. Run it with "
                "--appendonly yes to keep messages across restarts.",
                self.url,
            )
        elif self.persistence == "rdb":
            logger.warning(
                "Redis at %s keeps only snapshots (save %r): a restart loses what was "
                "written since the last one. Run it with --appendonly yes to keep every "
                "message it confirmed.",
                self.url,
                text.get("save"),
            )

    async def _disconnect(self) -> None:
        for subscription in list(self._subscriptions):
            await subscription.close()
        await self.publisher.drain()
        if self._owns_client:
            await self.client.aclose()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _socket_timeout(options: StreamOptions) -> float:
    """Longer than the longest blocking read of a subscription."""
    return block_seconds(options) + 10.0
