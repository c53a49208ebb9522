"""Consuming Redis Streams: subscriptions (one consumer of a consumer group) for the runner.

A :class:`RedisSubscription` is one consumer (``host-pid-random``) of the stream's consumer
group. A reader task fills a buffer with ``XREADGROUP ... COUNT n`` (never more than
``prefetch`` messages held: buffered plus unsettled) and, every ``claim_idle / 3`` seconds,
takes over messages other consumers left behind with ``XAUTOCLAIM`` (idle for
``claim_idle``: their process died or was cut off). A keeper task renews the messages this
subscription holds (resets their idle time) every ``claim_idle / 3`` seconds, so a slow
handler keeps its message.

Settling:

* ``ack()``: returns at once; the ``XACK`` goes out in the background, the acks made
  meanwhile in the same command. A failed ``XACK`` (Redis unreachable for
  ``settle_timeout``) is counted in ``ack_failures`` and logged: the message stays pending
  and is delivered again after ``claim_idle``. :meth:`RedisSubscription.commit` waits for
  the acks made so far and raises such a failure; ``close()`` waits for them too;
* ``nack(requeue=True)``: the message is claimed again by this consumer, which counts one
  more delivery, and goes to the head of the buffer (its ``attempt`` grows by one);
* ``dead_letter(reason)`` (and ``nack(requeue=False)``, reason ``"rejected"``): one script
  adds the copy, with the ``x-dead-letter-reason`` and ``x-original-topic`` headers, to the
  stream ``<topic>.dead-letter`` and acknowledges the original;
* connection losses are retried with backoff until ``settle_timeout``; acks and dead letters
  are idempotent, so a retry after a lost reply does no harm.

``attempt`` is Redis's delivery count of the message in the group (``XPENDING``), so it
survives a restart of the consumer. A message delivered ``delivery_limit`` times without
being settled is dead-lettered by the next subscription that would take it over.

Closing a subscription returns every message it holds to the group at once (they are made
idle, so the next ``XAUTOCLAIM`` of any subscription takes them; those fetched but never
handed out get their delivery count back). A consumer that is killed returns nothing: its
messages wait ``claim_idle`` seconds before another subscription takes them over. Either
way nothing is lost, and delivery is at least once.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import Any, Self, TypeVar, cast

from cqrs._internal.backoff import Backoff
from cqrs._internal.brokers.delivery import (
    DEAD_LETTER_REASON_HEADER,
    ORIGINAL_TOPIC_HEADER,
    DeliveryLostError,
    dead_letter_topic,
)
from cqrs._internal.brokers.protocol import Message
from cqrs._internal.brokers.redis.connection import is_no_group, retryable
from cqrs._internal.brokers.redis.options import StreamOptions
from cqrs._internal.brokers.redis.scripts import (
    CLAIM,
    DEAD_LETTER,
    RELEASE,
    RELEASED_IDLE_MS,
    RENEW,
    REQUEUE,
    SWEEP,
)
from cqrs._internal.brokers.redis.wire import HEADER_PREFIX, Fields, entry_message
from cqrs._internal.brokers.settle import already_settled, subscription_closed

__all__ = ["RedisDelivery", "RedisSubscription", "block_seconds", "consumer_name"]

logger = logging.getLogger("cqrs.redis")

T = TypeVar("T")

MAX_BLOCK = 2.0
"""Seconds one ``XREADGROUP`` waits for new messages at most."""

SWEEP_AFTER = 60.0
"""Consumers of a group idle for this long (or ``10 * claim_idle``, if longer) and holding
nothing are deleted when a subscription starts."""

_ACK_BATCH = 1000
"""Message ids one ``XACK`` carries at most."""

RELEASE_TIMEOUT = 5.0
"""Seconds a closing subscription tries to return its messages (if Redis does not answer,
they are taken over after ``claim_idle`` instead)."""


def block_seconds(options: StreamOptions) -> float:
    """How long one ``XREADGROUP`` waits: ``claim_idle / 3``, at most :data:`MAX_BLOCK`."""
    return min(MAX_BLOCK, options.claim_idle / 3)


def consumer_name() -> str:
    """A new consumer name: ``host-pid-random``."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


@dataclasses.dataclass(slots=True)
class _Entry:
    """A stream entry held by this subscription and its delivery count in the group."""

    id: bytes
    fields: Fields
    count: int


def _read_items(reply: Any) -> list[Any]:
    """The entry lists of an ``XREADGROUP`` reply: ``[[key, entries], ...]`` (RESP2),
    ``{key: [entries]}`` (RESP3), or nothing after a timeout."""
    if not reply:
        return []
    if isinstance(reply, dict):
        return [items for wrapped in cast(dict[Any, Any], reply).values() for items in wrapped]
    return [items for _, items in reply]


def _fields(flat: list[bytes]) -> Fields:
    return dict(zip(flat[::2], flat[1::2], strict=True))


class RedisSubscription:
    """One consumer of a stream's consumer group (see the module docstring).

    Made by ``RedisMessageBroker.subscribe``; call :meth:`start` before iterating. Counters
    for logs and tests: :attr:`trimmed` (messages trimmed away by ``maxlen`` before they were
    settled: lost), :attr:`leases_lost` (held messages another consumer took over while this
    one could not renew them), :attr:`groups_recreated` (the group vanished: Redis lost its
    data), :attr:`dead_lettered_at_limit` (messages given up at ``delivery_limit``) and
    :attr:`ack_failures` (acks that never reached Redis: those messages come again).
    """

    def __init__(
        self,
        client: Any,
        topic: str,
        *,
        options: StreamOptions,
        prefetch: int,
        group: str,
        consumer: str | None = None,
        settle_timeout: float = 30.0,
        on_close: Callable[[RedisSubscription], object] | None = None,
    ) -> None:
        if prefetch < 1:
            raise ValueError(f"prefetch must be at least 1, got {prefetch}")
        self._client = client
        self._topic = topic
        self._key = options.key(topic)
        self._dead_key = options.key(dead_letter_topic(topic))
        self._options = options
        self._prefetch = prefetch
        self.group = group
        self.consumer = consumer or consumer_name()
        self._settle_timeout = settle_timeout
        self._on_close = on_close
        self._buffer: collections.deque[_Entry] = collections.deque()
        self._unsettled: dict[bytes, RedisDelivery] = {}
        self._settling: set[bytes] = set()
        self._requeueing = 0
        self._ready = asyncio.Event()
        self._room = asyncio.Event()
        self._quiet = asyncio.Event()
        self._quiet.set()
        self._closed = False
        self._failure: BaseException | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._cursor = b"0-0"
        self._next_claim = 0.0
        self._acks_queued: list[bytes] = []
        self._acker: asyncio.Task[None] | None = None
        self._ack_error: BaseException | None = None
        self._claim: Any = client.register_script(CLAIM)
        self._renew: Any = client.register_script(RENEW)
        self._requeue: Any = client.register_script(REQUEUE)
        self._dead_letter: Any = client.register_script(DEAD_LETTER)
        self._release: Any = client.register_script(RELEASE)
        self._sweep: Any = client.register_script(SWEEP)
        self.trimmed = 0
        self.leases_lost = 0
        self.groups_recreated = 0
        self.dead_lettered_at_limit = 0
        self.ack_failures = 0

    @property
    def topic(self) -> str:
        """The topic this subscription reads."""
        return self._topic

    @property
    def key(self) -> str:
        """The stream key it reads."""
        return self._key

    @property
    def prefetch(self) -> int:
        """How many messages may be held (buffered or unsettled) at once."""
        return self._prefetch

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran."""
        return self._closed

    # -- starting and stopping -------------------------------------------------------------

    async def start(self) -> None:
        """Create the consumer group if needed (retrying connection errors until
        ``settle_timeout``), delete consumers dead processes left holding nothing, and start
        reading. Raises redis-py's error when the key holds something that is not a stream
        or Redis stays unreachable."""
        await self._retrying(self._create_group)
        try:
            await self._sweep(
                keys=[self._key],
                args=[
                    self.group,
                    int(max(SWEEP_AFTER, 10 * self._options.claim_idle) * 1000),
                    self.consumer,
                ],
            )
        except Exception as exc:  # only housekeeping: the next subscription tries again
            logger.debug("sweeping idle consumers of %s failed: %r", self._key, exc)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._read(), name=f"cqrs redis reader {self._key}"),
            loop.create_task(self._keep(), name=f"cqrs redis keeper {self._key}"),
        ]

    async def _create_group(self) -> bool:
        """Create the group at the stream's oldest entry; False if it existed."""
        try:
            await self._client.xgroup_create(self._key, self.group, id="0", mkstream=True)
        except Exception as exc:
            if not str(exc).startswith("BUSYGROUP"):
                raise
            return False
        return True

    async def close(self) -> None:
        """Stop reading and return every message held to the group (idempotent): the
        deliveries not settled yet raise ``DeliverySettledError`` from now on, and any
        subscription of the group (this process's next one, or another's) receives them
        again. Settlements already under way are finished first."""
        if self._closed:
            return
        self._closed = True
        self._ready.set()
        self._room.set()
        tasks, self._tasks = self._tasks, []
        await _cancel(tasks)
        try:
            async with asyncio.timeout(self._settle_timeout):
                await self._acks_sent()
                await self._quiet.wait()
        except TimeoutError:
            logger.warning("closing %s: settlements still running were abandoned", self._key)
        if self._on_close is not None:
            self._on_close(self)
        fresh = [entry.id for entry in self._buffer]
        self._buffer.clear()
        self._unsettled.clear()
        try:
            _, trimmed = await self._retrying(
                lambda: self._release(
                    keys=[self._key], args=[self.group, self.consumer, RELEASED_IDLE_MS, *fresh]
                ),
                RELEASE_TIMEOUT,
            )
            self._count_trimmed(int(trimmed))
        except Exception as exc:
            logger.warning(
                "Could not return the messages held by consumer %s of %s (%s: %s); other "
                "subscriptions take them over after claim_idle (%g s).",
                self.consumer,
                self._key,
                type(exc).__name__,
                exc,
                self._options.claim_idle,
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

    # -- handing out -----------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[RedisDelivery]:
        return self

    async def __anext__(self) -> RedisDelivery:
        """The next delivery; ``StopAsyncIteration`` once closed. Cancel-safe: the reader
        fills the buffer in its own task. Raises the reader's error when Redis refused a
        read for a reason waiting cannot cure (the key is not a stream)."""
        while True:
            if self._closed:
                raise StopAsyncIteration
            if self._buffer:
                entry = self._buffer.popleft()
                if not self._buffer:
                    self._room.set()  # the reader waits for an empty buffer or a settlement
                delivery = RedisDelivery(self, entry)
                self._unsettled[entry.id] = delivery
                return delivery
            if self._failure is not None:
                raise self._failure
            self._ready.clear()
            await self._ready.wait()

    def _held(self) -> int:
        return len(self._buffer) + len(self._unsettled) + self._requeueing

    def _holds(self, entry_id: bytes) -> bool:
        return (
            entry_id in self._unsettled
            or entry_id in self._settling
            or any(entry.id == entry_id for entry in self._buffer)
        )

    # -- the reader ------------------------------------------------------------------------

    async def _read(self) -> None:
        backoff = Backoff()
        failing = False
        while not self._closed:
            room = self._prefetch - self._held()
            # While the buffer still has work, wait until half the prefetch is free: fewer,
            # larger reads.
            if room <= 0 or (self._buffer and room < (self._prefetch + 1) // 2):
                self._room.clear()
                await self._room.wait()
                continue
            try:
                entries = await self._fetch(room)
            except Exception as exc:
                if is_no_group(exc):
                    self._cursor = b"0-0"
                    try:
                        created = await self._create_group()
                    except Exception as again:
                        logger.debug("creating the group again failed: %r", again)
                        await backoff.sleep()
                        continue
                    if created:
                        self.groups_recreated += 1
                        logger.warning(
                            "The consumer group %r of stream %s was gone (the key was deleted, "
                            "or Redis restarted without persistence and lost it: its messages "
                            "are lost); it was created again.",
                            self.group,
                            self._key,
                        )
                    continue
                if not (retryable(exc) or isinstance(exc, TimeoutError)):
                    logger.error(
                        "Reading stream %s failed: %r; the subscription stops.", self._key, exc
                    )
                    self._failure = exc
                    self._ready.set()
                    return
                if not failing:
                    logger.warning(
                        "Reading stream %s failed (%s: %s); retrying.",
                        self._key,
                        type(exc).__name__,
                        exc,
                    )
                failing = True
                await backoff.sleep()
                continue
            if failing:
                logger.warning("Reading stream %s works again.", self._key)
            failing = False
            backoff.reset()
            if entries and not self._closed:
                self._buffer.extend(entries)
                self._ready.set()

    async def _fetch(self, room: int) -> list[_Entry]:
        loop = asyncio.get_running_loop()
        now = loop.time()
        period = self._options.claim_idle / 3
        if now >= self._next_claim or self._cursor != b"0-0":
            claimed = await self._take_over(room)
            if self._cursor == b"0-0":
                self._next_claim = now + period
            if claimed:
                return claimed
        block = min(block_seconds(self._options), max(0.001, self._next_claim - loop.time()))
        reply: Any = await self._client.xreadgroup(
            self.group,
            self.consumer,
            {self._key: ">"},
            count=room,
            block=max(1, int(block * 1000)),
        )
        return [
            _Entry(entry_id, fields, 1)
            for items in _read_items(reply)
            for entry_id, fields in items
            if fields is not None
        ]

    async def _take_over(self, room: int) -> list[_Entry]:
        """``XAUTOCLAIM`` messages idle for ``claim_idle`` (one step of a scan of the
        group's pending list); those past ``delivery_limit`` are dead-lettered."""
        cursor, raw, deleted, counts = await self._claim(
            keys=[self._key],
            args=[self.group, self.consumer, self._options.claim_idle_ms, self._cursor, room],
        )
        self._cursor = cursor
        self._count_trimmed(len(deleted))
        limit = self._options.delivery_limit
        entries: list[_Entry] = []
        for (entry_id, flat), count in zip(raw, counts, strict=True):
            if self._holds(entry_id):  # ours already: renewals were late
                continue
            entry = _Entry(entry_id, _fields(flat), int(count))
            if limit is not None and entry.count > limit:
                await self._give_up(entry, limit)
                continue
            entries.append(entry)
        return entries

    def _count_trimmed(self, count: int) -> None:
        if not count:
            return
        self.trimmed += count
        logger.error(
            "%d message(s) of stream %s were trimmed away (maxlen %s) before being settled: "
            "they are lost. Raise maxlen or add consumers.",
            count,
            self._key,
            self._options.maxlen,
        )

    async def _give_up(self, entry: _Entry, limit: int) -> None:
        reason = (
            f"delivered {limit} times without being settled (delivery_limit): its handler "
            "may stop the consumer process"
        )
        try:
            await self._dead_letter_entry(entry, reason)
        except Exception as exc:  # taken over again later, and given up then
            logger.warning("dead-lettering %r at the delivery limit failed: %r", entry.id, exc)
            return
        self.dead_lettered_at_limit += 1
        logger.error("Message %r of stream %s was dead-lettered: %s.", entry.id, self._key, reason)

    # -- the keeper ------------------------------------------------------------------------

    async def _keep(self) -> None:
        period = self._options.claim_idle / 3
        while not self._closed:
            await asyncio.sleep(period)
            ids = [entry.id for entry in self._buffer]
            ids += [*self._unsettled, *self._settling]
            if not ids:
                continue
            try:
                lost: list[bytes] = await self._renew(
                    keys=[self._key], args=[self.group, self.consumer, *ids]
                )
            except Exception as exc:
                logger.debug("renewing the messages held on %s failed: %r", self._key, exc)
                continue
            if lost:
                self._lost(set(lost))

    def _lost(self, lost: set[bytes]) -> None:
        """Messages another consumer took over: drop those not handed out yet."""
        self.leases_lost += len(lost)
        kept = [entry for entry in self._buffer if entry.id not in lost]
        self._buffer = collections.deque(kept)
        logger.warning(
            "%d message(s) held by consumer %s of %s were taken over by another consumer "
            "(this one could not renew them within claim_idle); they may be handled twice.",
            len(lost),
            self.consumer,
            self._key,
        )
        self._room.set()

    # -- settling --------------------------------------------------------------------------

    def _take(self, delivery: RedisDelivery, action: str) -> None:
        """Mark ``delivery`` as being settled, or raise ``DeliverySettledError``."""
        if self._closed:
            raise subscription_closed(action)
        entry_id = delivery.entry_id_bytes
        if self._unsettled.get(entry_id) is not delivery:
            raise already_settled(action)
        del self._unsettled[entry_id]
        self._settling.add(entry_id)
        self._quiet.clear()

    def _settled(self, entry_id: bytes) -> None:
        self._settling.discard(entry_id)
        if not self._settling:
            self._quiet.set()
        self._room.set()

    def ack(self, delivery: RedisDelivery) -> None:
        """Queue the ``XACK`` of the delivery's message; it is sent in the background with
        the other acks queued meanwhile (see the module docstring)."""
        self._take(delivery, "ack")
        self._acks_queued.append(delivery.entry_id_bytes)
        if self._acker is None:
            self._acker = asyncio.get_running_loop().create_task(
                self._send_acks(), name=f"cqrs redis acks {self._key}"
            )

    async def _send_acks(self) -> None:
        try:
            while self._acks_queued:
                ids, self._acks_queued = (
                    self._acks_queued[:_ACK_BATCH],
                    self._acks_queued[_ACK_BATCH:],
                )
                try:
                    await self._retrying(
                        lambda ids=ids: self._client.xack(self._key, self.group, *ids)
                    )
                except Exception as exc:  # the messages stay pending: delivered again
                    self.ack_failures += len(ids)
                    self._ack_error = exc
                    logger.warning(
                        "Acknowledging %d message(s) of %s failed (%s: %s); they are delivered "
                        "again after claim_idle (%g s).",
                        len(ids),
                        self._key,
                        type(exc).__name__,
                        exc,
                        self._options.claim_idle,
                    )
                finally:
                    for entry_id in ids:
                        self._settled(entry_id)
        finally:
            self._acker = None

    async def _acks_sent(self) -> None:
        while (acker := self._acker) is not None:
            await asyncio.shield(acker)

    async def commit(self) -> None:
        """Wait until the acks made so far reached Redis. Raises
        :class:`~cqrs.errors.DeliveryLostError` when an ``XACK`` failed since the last
        ``commit()`` (Redis unreachable for ``settle_timeout``): those messages are delivered
        again."""
        await self._acks_sent()
        error, self._ack_error = self._ack_error, None
        if error is not None:
            raise DeliveryLostError(
                f"Acknowledgements on {self._key} did not reach Redis within settle_timeout "
                f"({self._settle_timeout:g} s; {type(error).__name__}: {error}); those "
                f"messages are delivered again after claim_idle ({self._options.claim_idle:g} s)."
            ) from error

    async def requeue(self, delivery: RedisDelivery) -> None:
        """Deliver the message again (head of the buffer), one delivery more in Redis."""
        self._take(delivery, "nack")
        entry_id = delivery.entry_id_bytes
        self._requeueing += 1
        try:
            again: Any = await self._retrying(
                lambda: self._requeue(keys=[self._key], args=[self.group, self.consumer, entry_id])
            )
        finally:
            self._requeueing -= 1
            self._settled(entry_id)
        if again is None:
            logger.warning(
                "Message %r of %s was not requeued: another consumer took it over, or it was "
                "trimmed away.",
                entry_id,
                self._key,
            )
            return
        count, flat = again
        # Even when closing: close() returns the buffer's messages with their count.
        self._buffer.appendleft(_Entry(entry_id, _fields(flat), int(count)))
        self._ready.set()

    async def dead_letter(self, delivery: RedisDelivery, reason: str) -> None:
        """Store the dead-letter copy with ``reason`` and ``XACK`` the original, at once."""
        self._take(delivery, "dead-letter")
        try:
            await self._dead_letter_entry(delivery.entry, reason)
        finally:
            self._settled(delivery.entry_id_bytes)

    async def _dead_letter_entry(self, entry: _Entry, reason: str) -> None:
        copy = dict(entry.fields)
        copy[HEADER_PREFIX + DEAD_LETTER_REASON_HEADER.encode()] = reason.encode()
        copy[HEADER_PREFIX + ORIGINAL_TOPIC_HEADER.encode()] = self._topic.encode()
        maxlen = self._options.maxlen
        args: list[Any] = [self.group, entry.id, "" if maxlen is None else maxlen]
        for field, value in copy.items():
            args += [field, value]
        await self._retrying(lambda: self._dead_letter(keys=[self._key, self._dead_key], args=args))

    async def _retrying(self, call: Callable[[], Awaitable[T]], within: float | None = None) -> T:
        """``await call()``, retrying connection errors and timeouts with backoff for
        ``within`` seconds (default: ``settle_timeout``); then the last error is raised."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self._settle_timeout if within is None else within)
        backoff = Backoff()
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    return await call()
            except Exception as exc:
                if not (retryable(exc) or isinstance(exc, TimeoutError)):
                    raise
                if loop.time() >= deadline:
                    raise
            await backoff.sleep(deadline)


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel ``tasks`` and wait for them. The cancellation is repeated until they end:
    redis-py sends commands under ``asyncio.wait_for``, which on Python 3.11 loses a
    cancellation that arrives as the send completes (the task would then wait for the
    reply of its ``XREADGROUP BLOCK``)."""
    pending = [task for task in tasks if not task.done()]
    while pending:
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=0.01)
        pending = [task for task in pending if not task.done()]
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            logger.debug("task %s ended with %r", task.get_name(), task.exception())


class RedisDelivery:
    """One message of a :class:`RedisSubscription` (see ``Delivery``)."""

    __slots__ = ("_message", "_subscription", "entry")

    def __init__(self, subscription: RedisSubscription, entry: _Entry) -> None:
        self._subscription = subscription
        self.entry = entry
        self._message: Message | None = None

    @property
    def entry_id(self) -> str:
        """The stream entry id (``<ms>-<seq>``)."""
        return self.entry.id.decode()

    @property
    def entry_id_bytes(self) -> bytes:
        """The stream entry id as Redis returned it."""
        return self.entry.id

    @property
    def fields(self) -> Fields:
        """The entry's fields as stored."""
        return self.entry.fields

    @property
    def message(self) -> Message:
        """The message as received (``payload_bytes`` is the ``body`` field, ``message_id``
        the ``id`` field: the event id)."""
        if self._message is None:
            self._message = entry_message(self._subscription.topic, self.entry.fields)
        return self._message

    @property
    def attempt(self) -> int:
        """Redis's delivery count of this message in the group: 1 the first time."""
        return self.entry.count

    async def ack(self) -> None:
        """Settle as done: the ``XACK`` is sent in the background (a failure is counted in
        the subscription's ``ack_failures``, and the message comes again; ``commit()``
        reports it). Raises ``DeliverySettledError`` when already settled."""
        self._subscription.ack(self)

    async def nack(self, requeue: bool = True) -> None:
        """Deliver again (``requeue=True``: attempt + 1), or dead-letter as ``"rejected"``."""
        if not requeue:
            await self.dead_letter("rejected")
            return
        await self._subscription.requeue(self)

    async def dead_letter(self, reason: str) -> None:
        """Move the message to ``<topic>.dead-letter`` with ``reason`` in the
        ``x-dead-letter-reason`` header."""
        await self._subscription.dead_letter(self, reason)
