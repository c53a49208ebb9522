"""Consuming from Kafka: a consumer group member as a ``Subscription`` for the runner.

Kafka keeps no per-message state: a consumer group has one committed position per
partition, and it has no redelivery count. So:

* **Commit after the handlers, in order.** ``ack`` marks the record done; a commit task
  commits whenever something was settled, one commit at a time (the settlements made
  meanwhile share the next one), so an ack costs no round trip (like an AMQP ack, it is not
  confirmed; :meth:`KafkaSubscription.commit` waits for one). The committed position of a
  partition only moves past a run of done records (:class:`PartitionLedger`): a record done
  before an earlier one of its partition waits for that one, and is never committed past
  it. A consumer that dies leaves everything after its last commit to the next member of
  the group: delivered at least once.
* **Attempts travel in a header.** ``nack(requeue=True)`` publishes a copy of the record,
  with :data:`ATTEMPT_HEADER` one higher, to the group's retry topic
  ``<topic>.retry.<group>`` (which the subscription reads too; other consumer groups of the
  topic never see it), waits for Kafka's acknowledgement, and then marks the original done.
  The first delivery of a record is attempt 1. Closing a subscription returns its unsettled
  deliveries the same way (attempt + 1). A consumer that *dies* returns them without a
  copy: the next member reads the originals again, with the attempt they had.
* **Dead letters** go to ``<topic>.dead-letter`` (the same for every group) with the reason,
  the original topic and the group in headers; the copy is acknowledged before the original
  is marked done, so a failure in between duplicates it rather than losing it.
* **Rebalances.** When partitions are taken away, fetched records of them not yet handed
  out are dropped, the deliveries being handled get ``revoke_grace`` seconds to settle, what
  is done is committed, and settling a delivery of a revoked partition afterwards raises
  :class:`PartitionRevokedError` (its new owner delivers it again): a revoked partition is
  never committed by this member again.

Order: records of one partition are handed out in offset order (with ``concurrency=1`` in
the runner, handled in that order); retry copies come after the records already on the
partition.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Self

from cqrs._internal._optional import require
from cqrs._internal.brokers.delivery import (
    DEAD_LETTER_REASON_HEADER,
    ORIGINAL_TOPIC_HEADER,
    DeliverySettledError,
    dead_letter_topic,
)
from cqrs._internal.brokers.kafka.errors import KafkaCommitError, PartitionRevokedError
from cqrs._internal.brokers.kafka.ledger import PartitionLedger
from cqrs._internal.brokers.kafka.wire import (
    ATTEMPT_HEADER,
    CONSUMER_GROUP_HEADER,
    attempt_of,
    read_headers,
    record_message,
)
from cqrs._internal.brokers.lifecycle import BrokerStateError
from cqrs._internal.brokers.protocol import Message
from cqrs._internal.brokers.settle import claim, subscription_closed

with require("aiokafka", extra="kafka", feature="KafkaMessageBroker.subscribe"):
    from aiokafka import (  # pyright: ignore[reportMissingTypeStubs]
        AIOKafkaConsumer,
        ConsumerRebalanceListener,
    )
    from aiokafka.errors import (  # pyright: ignore[reportMissingTypeStubs]
        ConsumerStoppedError,
        KafkaError,
    )

__all__ = ["MAX_UNCOMMITTED", "KafkaDelivery", "KafkaSubscription"]

logger = logging.getLogger("cqrs.kafka")

Publish = Callable[..., Awaitable[object]]
"""``publish(topic, value, headers=..., key=...)``: the producer's ``produce``."""

FETCH_WAIT_MS = 500
"""How long one fetch waits for records before looking at the subscription again."""

MAX_UNCOMMITTED = 10_000
"""Fetched records of one partition beyond its first unfinished one (a slow handler) at
which fetching that partition pauses, bounding memory and what a crash would redeliver."""

_BACKOFF_FIRST, _BACKOFF_MAX = 0.1, 5.0


@dataclasses.dataclass(slots=True)
class _Fetched:
    """A record waiting to be handed out: its partition's ledger and how many times this
    process already handed it out without settling it (a copy that could not be sent)."""

    ledger: PartitionLedger
    record: Any
    again: int = 0


class KafkaSubscription:
    """Deliveries of one topic (and its retry topic) for one consumer group member.

    Made by ``KafkaMessageBroker.subscribe``; call :meth:`start` before iterating. See the
    module docstring for what ``ack``, ``nack``, ``dead_letter`` and :meth:`close` do.
    """

    def __init__(
        self,
        topic: str,
        group_id: str,
        prefetch: int,
        *,
        retry_topic: str,
        consumer_options: Mapping[str, Any],
        publish: Publish,
        commit_timeout: float,
        revoke_grace: float,
        max_uncommitted: int = MAX_UNCOMMITTED,
        on_close: Callable[[KafkaSubscription], object] | None = None,
    ) -> None:
        self._topic = topic
        self._group_id = group_id
        self._prefetch = prefetch
        self._retry_topic = retry_topic
        self._publish = publish
        self._commit_timeout = commit_timeout
        self._revoke_grace = revoke_grace
        self._max_uncommitted = max_uncommitted
        self._on_close = on_close
        options: dict[str, Any] = {"auto_offset_reset": "earliest", **consumer_options}
        options.update(group_id=group_id, enable_auto_commit=False)
        self._consumer_options = options
        self._consumer: Any = None
        self._ledgers: dict[Any, PartitionLedger] = {}
        self._ready: collections.deque[_Fetched] = collections.deque()
        self._outstanding: set[KafkaDelivery] = set()
        self._readable = asyncio.Event()
        self._room = asyncio.Event()
        self._settled_event = asyncio.Event()
        self._commit_wanted = asyncio.Event()
        self._commit_waiters: list[asyncio.Future[None]] = []
        self._commit_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self.commit_failures = 0
        """Commits Kafka refused or did not confirm in time (each is tried again)."""
        self.revocations = 0
        """Rebalances that took partitions away from this member."""
        self._closing = False
        self._final_commit = False
        self._closed = False

    # -- properties ----------------------------------------------------------------------

    @property
    def topic(self) -> str:
        """The topic this subscription reads (its retry topic too)."""
        return self._topic

    @property
    def group_id(self) -> str:
        """The consumer group this subscription is a member of."""
        return self._group_id

    @property
    def retry_topic(self) -> str:
        """Where ``nack`` puts the copies of this group: ``<topic>.retry.<group_id>``."""
        return self._retry_topic

    @property
    def prefetch(self) -> int:
        """How many deliveries may be unsettled at once."""
        return self._prefetch

    @property
    def closed(self) -> bool:
        """True once :meth:`close` started."""
        return self._closing

    @property
    def assignment(self) -> frozenset[tuple[str, int]]:
        """The (topic, partition) pairs this member holds now."""
        return frozenset((tp.topic, tp.partition) for tp in self._ledgers)

    # -- life ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Create the consumer, join the group (in the background) and start fetching.
        Raises aiokafka's connection errors when the cluster cannot be reached."""
        consumer: Any = AIOKafkaConsumer(**self._consumer_options)
        consumer.subscribe([self._topic, self._retry_topic], listener=_Listener(self))
        try:
            await consumer.start()
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer
        self._tasks = [
            asyncio.create_task(self._pump(), name=f"cqrs.kafka.fetch[{self._topic}]"),
            asyncio.create_task(self._committer(), name=f"cqrs.kafka.commit[{self._topic}]"),
        ]

    async def close(self) -> None:
        """Stop receiving; return every unsettled delivery (a copy with attempt + 1 on the
        retry topic, then the original is done); commit; leave the group (idempotent).

        A copy that cannot be sent leaves its original uncommitted: the next member of the
        group reads it again, with the attempt it had.
        """
        if self._closing:
            return
        self._closing = True
        self._readable.set()
        pump = self._tasks[0] if self._tasks else None
        if pump is not None:
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
        try:
            # Settlements under way (a copy being sent) get the revoke grace to finish.
            await self._settling_ends(lambda d: d.settled, self._revoke_grace)
            returned = sorted(
                (d for d in self._outstanding if not d.settled),
                key=lambda d: (*d.partition, d.offset),
            )
            by_partition: dict[tuple[str, int], list[KafkaDelivery]] = {}
            for delivery in returned:
                delivery.mark_returned()
                if delivery.ledger.active:
                    by_partition.setdefault(delivery.partition, []).append(delivery)
            results = await asyncio.gather(
                *(self._return_in_order(run) for run in by_partition.values()),
                return_exceptions=True,
            )
            for result in results:
                if isinstance(result, BaseException):
                    logger.warning(
                        "Returning an unsettled message of %s failed (%s: %s); it is "
                        "delivered again as it was.",
                        self._topic,
                        type(result).__name__,
                        result,
                    )
            self._final_commit = True
            try:
                await self._commit_now(list(self._ledgers.items()))
            except Exception as exc:
                logger.warning("The last commit of %s failed: %s", self._topic, exc)
                self._fail_waiters(exc)
            else:
                self._release_waiters()
        finally:
            self._closed = True
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._fail_waiters(DeliverySettledError("the subscription was closed"))
            for ledger in self._ledgers.values():
                ledger.active = False
            if self._consumer is not None:
                await self._consumer.stop()
            if self._on_close is not None:
                self._on_close(self)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- handing out ---------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[KafkaDelivery]:
        return self

    async def __anext__(self) -> KafkaDelivery:
        """The next delivery, at most ``prefetch`` unsettled; ``StopAsyncIteration`` once
        closed. Cancel-safe: nothing is taken until it returns."""
        while True:
            if self._closing:
                raise StopAsyncIteration
            if self._ready and len(self._outstanding) < self._prefetch:
                fetched = self._ready.popleft()
                if not fetched.ledger.active:
                    continue
                delivery = KafkaDelivery(self, fetched)
                self._outstanding.add(delivery)
                return delivery
            self._readable.clear()
            await self._readable.wait()

    def _released(self, delivery: KafkaDelivery) -> None:
        """``delivery`` no longer counts against the prefetch."""
        self._outstanding.discard(delivery)
        self._room.set()
        self._readable.set()
        self._settled_event.set()

    def _hand_out_again(self, delivery: KafkaDelivery) -> None:
        """A settlement failed before its original was done: deliver it again from here
        (its partition is still ours), with the attempt one higher."""
        fetched = delivery.fetched
        if fetched.ledger.active and not self._closing:
            self._ready.appendleft(_Fetched(fetched.ledger, fetched.record, fetched.again + 1))
        self._released(delivery)

    async def _pump(self) -> None:
        """Fetch records while there is room for them (``prefetch`` minus the unsettled and
        the ready ones)."""
        backoff = _BACKOFF_FIRST
        consumer = self._consumer
        while True:
            room = self._prefetch - len(self._ready) - len(self._outstanding)
            if room <= 0:
                self._room.clear()
                await self._room.wait()
                continue
            self._pause_backlogged()
            try:
                batches: dict[Any, list[Any]] = await consumer.getmany(
                    timeout_ms=FETCH_WAIT_MS, max_records=room
                )
            except ConsumerStoppedError:
                return
            except Exception as exc:  # the fetch loop must outlive any one failure
                logger.warning(
                    "Fetching %s failed (%s: %s); trying again in %.2g s.",
                    self._topic,
                    type(exc).__name__,
                    exc,
                    backoff,
                    exc_info=not isinstance(exc, KafkaError),
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)
                continue
            backoff = _BACKOFF_FIRST
            for tp, records in batches.items():
                ledger = self._ledgers.get(tp)
                if ledger is None or not ledger.accepting:
                    continue
                for record in records:
                    if ledger.fetched(record.offset):
                        self._ready.append(_Fetched(ledger, record))
            if self._ready:
                self._readable.set()

    def _pause_backlogged(self) -> None:
        consumer = self._consumer
        paused: set[Any] = set(consumer.paused())
        backlogged = {
            tp for tp, ledger in self._ledgers.items() if len(ledger) >= self._max_uncommitted
        }
        with contextlib.suppress(KafkaError):  # a partition revoked meanwhile
            if backlogged - paused:
                consumer.pause(*(backlogged - paused))
            if paused - backlogged:
                consumer.resume(*(paused - backlogged))

    # -- settling ------------------------------------------------------------------------

    async def _copy(self, delivery: KafkaDelivery, topic: str, headers: dict[str, bytes]) -> None:
        record = delivery.fetched.record
        await self._publish(topic, record.value, headers=headers, key=record.key)

    async def _return_in_order(self, run: list[KafkaDelivery]) -> None:
        """Close: for each delivery of one partition, in offset order, a copy with the next
        attempt on the retry topic, then the original is done. Stops at the first copy that
        cannot be sent (that original and the later ones stay uncommitted)."""
        for delivery in run:
            headers = delivery.copy_headers(delivery.attempt + 1)
            await self._copy(delivery, self._retry_topic, headers)
            delivery.ledger.finish(delivery.offset)

    async def _settle_by_copy(
        self, delivery: KafkaDelivery, topic: str, headers: dict[str, bytes]
    ) -> None:
        """Publish a copy, then mark the original done and commit; if the copy cannot be
        sent, deliver the original again from here and raise."""
        try:
            await self._copy(delivery, topic, headers)
        except BaseException:
            self._hand_out_again(delivery)
            raise
        self._finish(delivery)

    def _finish(self, delivery: KafkaDelivery) -> None:
        """Mark the record done and wake the committer (no I/O: the committer commits)."""
        ledger = delivery.ledger
        if not ledger.active:
            self._released(delivery)
            raise PartitionRevokedError(
                f"Partition {delivery.partition} of {self._topic!r} was revoked while message "
                f"{delivery.message.message_id} was being settled; its new owner delivers "
                "it again."
            )
        if self._final_commit:
            self._released(delivery)
            raise DeliverySettledError(
                f"Message {delivery.message.message_id} was settled after its subscription "
                "made its last commit; it will be delivered again."
            )
        ledger.finish(delivery.offset)
        self._released(delivery)
        self._commit_wanted.set()

    async def commit(self) -> None:
        """Wait until what is settled now is committed (the commits run by themselves; this
        is for a caller that needs to know). Raises :class:`KafkaCommitError` when that
        commit failed (the next one tries again), ``BrokerStateError`` once closed."""
        if self._closing:
            raise BrokerStateError("Cannot commit on a closed subscription; it committed on close.")
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._commit_waiters.append(waiter)
        self._commit_wanted.set()
        await waiter

    async def _committer(self) -> None:
        """Commit whenever something was settled: one commit at a time, so the settlements
        made during a commit share the next one. A failed commit is tried again after a
        backoff (what it covered stays done; a rebalance or a stop commits it otherwise)."""
        backoff = _BACKOFF_FIRST
        while True:
            await self._commit_wanted.wait()
            self._commit_wanted.clear()
            waiters, self._commit_waiters = self._commit_waiters, []
            try:
                await self._commit_now(list(self._ledgers.items()))
            except Exception as exc:
                self.commit_failures += 1
                logger.warning("Committing the offsets of %s failed: %s", self._topic, exc)
                _fail(waiters, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)
                self._commit_wanted.set()
            else:
                backoff = _BACKOFF_FIRST
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_result(None)

    async def _commit_now(self, ledgers: Iterable[tuple[Any, PartitionLedger]]) -> None:
        """Commit the dirty partitions among ``ledgers``; raises :class:`KafkaCommitError`."""
        async with self._commit_lock:
            offsets = {
                tp: (ledger, ledger.commit_offset)
                for tp, ledger in ledgers
                if ledger.dirty and ledger.active
            }
            if not offsets:
                return
            try:
                async with asyncio.timeout(self._commit_timeout):
                    await self._consumer.commit({tp: offset for tp, (_, offset) in offsets.items()})
            except TimeoutError as exc:
                raise KafkaCommitError(
                    f"Kafka did not confirm the commit of {self._topic!r} (group "
                    f"{self._group_id!r}) within {self._commit_timeout:g} s."
                ) from exc
            except KafkaError as exc:
                raise KafkaCommitError(
                    f"Kafka refused the commit of {self._topic!r} (group {self._group_id!r}): "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            for ledger, offset in offsets.values():
                assert offset is not None
                ledger.committed(offset)

    def _release_waiters(self) -> None:
        waiters, self._commit_waiters = self._commit_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _fail_waiters(self, exc: BaseException) -> None:
        waiters, self._commit_waiters = self._commit_waiters, []
        _fail(waiters, exc)

    async def _settling_ends(self, which: Callable[[KafkaDelivery], bool], grace: float) -> None:
        """Wait until no outstanding delivery matches ``which``, at most ``grace`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while any(which(d) for d in self._outstanding):
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._settled_event.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._settled_event.wait()

    # -- rebalances ----------------------------------------------------------------------

    async def partitions_revoked(self, revoked: Iterable[Any]) -> None:
        """Before a rebalance: drop what is not handed out, let the deliveries being handled
        settle (``revoke_grace``), commit what is done, and forget these partitions."""
        ledgers = {tp: self._ledgers[tp] for tp in revoked if tp in self._ledgers}
        logger.debug("group %s: partitions %s revoked", self._group_id, sorted(ledgers))
        if not ledgers:
            return
        self.revocations += 1
        gone = set(map(id, ledgers.values()))
        for ledger in ledgers.values():
            ledger.accepting = False
        self._ready = collections.deque(f for f in self._ready if id(f.ledger) not in gone)
        if not self._closing:
            await self._settling_ends(lambda d: id(d.ledger) in gone, self._revoke_grace)
        if not self._closing:
            try:
                await self._commit_now(ledgers.items())
            except Exception as exc:
                logger.warning(
                    "Committing %s before giving its partitions away failed: %s", self._topic, exc
                )
        for tp, ledger in ledgers.items():
            ledger.active = False
            if self._ledgers.get(tp) is ledger:
                del self._ledgers[tp]
        # Deliveries of revoked partitions no longer count against the prefetch; settling
        # one raises PartitionRevokedError.
        self._outstanding = {d for d in self._outstanding if d.ledger.active}
        self._room.set()
        self._readable.set()

    def partitions_assigned(self, assigned: Iterable[Any]) -> None:
        """After a rebalance: a fresh ledger for each partition this member did not hold."""
        assigned = list(assigned)
        logger.debug("group %s: partitions %s assigned", self._group_id, sorted(assigned))
        for tp in assigned:
            if tp not in self._ledgers:
                self._ledgers[tp] = PartitionLedger()
        self._room.set()


def _fail(waiters: list[asyncio.Future[None]], exc: BaseException) -> None:
    for waiter in waiters:
        if not waiter.done():
            if isinstance(exc, KafkaCommitError | DeliverySettledError):
                waiter.set_exception(type(exc)(*exc.args))
            else:
                waiter.set_exception(KafkaCommitError(f"{type(exc).__name__}: {exc}"))


class _Listener:
    """aiokafka's rebalance callbacks (a registered ``ConsumerRebalanceListener``),
    forwarded to the subscription."""

    def __init__(self, subscription: KafkaSubscription) -> None:
        self._subscription = subscription

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._subscription.partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self._subscription.partitions_assigned(assigned)


ConsumerRebalanceListener.register(_Listener)


class KafkaDelivery:
    """One record of a :class:`KafkaSubscription` (see ``Delivery``)."""

    __slots__ = ("_message", "_returned", "_settled", "_subscription", "fetched")

    def __init__(self, subscription: KafkaSubscription, fetched: _Fetched) -> None:
        self._subscription = subscription
        self.fetched = fetched
        self._message: Message | None = None
        self._settled = False
        self._returned = False

    @property
    def record(self) -> Any:
        """The aiokafka ``ConsumerRecord``."""
        return self.fetched.record

    @property
    def ledger(self) -> PartitionLedger:
        """The ledger of the partition assignment this record came from."""
        return self.fetched.ledger

    @property
    def offset(self) -> int:
        """The record's offset in its partition."""
        return self.fetched.record.offset

    @property
    def partition(self) -> tuple[str, int]:
        """(topic, partition) of the record: the topic or its retry topic."""
        record = self.fetched.record
        return (record.topic, record.partition)

    @property
    def settled(self) -> bool:
        """True once acked, nacked, dead-lettered or returned by ``close``."""
        return self._settled

    @property
    def message(self) -> Message:
        """The message as received (``payload_bytes`` is the record's value)."""
        if self._message is None:
            record = self.fetched.record
            self._message = record_message(
                record.value, read_headers(record.headers), self._subscription.topic
            )
        return self._message

    @property
    def attempt(self) -> int:
        """The record's ``x-attempt`` header (1 when missing), plus the times this process
        handed it out before without settling it."""
        return attempt_of(read_headers(self.fetched.record.headers)) + self.fetched.again

    def copy_headers(self, attempt: int | None) -> dict[str, bytes]:
        """The record's headers for a copy: with ``attempt`` in ``x-attempt`` (``None``:
        without it)."""
        headers = read_headers(self.fetched.record.headers)
        headers.pop(ATTEMPT_HEADER, None)
        if attempt is not None:
            headers[ATTEMPT_HEADER] = str(attempt).encode("ascii")
        return headers

    def mark_returned(self) -> None:
        """Settled by ``close`` (its copy, if any, is the subscription's business)."""
        self._settled = True
        self._returned = True

    def _claim(self, action: str) -> None:
        if self._returned:
            raise subscription_closed(action)
        claim(action, settled=self._settled, closed=self._subscription.closed)
        self._settled = True
        if not self.ledger.active:
            self._subscription._released(self)  # pyright: ignore[reportPrivateUsage]
            raise PartitionRevokedError(
                f"Cannot {action} message {self.message.message_id}: partition "
                f"{self.partition} was revoked by a rebalance; its new owner delivers it again."
            )

    async def ack(self) -> None:
        """Settle as done: the record is committed with the next commit of the
        subscription, once every earlier record of its partition is done too (a consumer
        that dies first leaves it to be delivered again). Raises ``PartitionRevokedError``
        after a rebalance took the partition away."""
        self._claim("ack")
        self._subscription._finish(self)  # pyright: ignore[reportPrivateUsage]

    async def nack(self, requeue: bool = True) -> None:
        """Deliver again: a copy with attempt + 1 on the group's retry topic, then the
        original is done (``requeue=False``: dead-letter it as ``"rejected"``). Raises
        ``KafkaPublishError`` when the copy was not acknowledged (this subscription then
        delivers the original again)."""
        if not requeue:
            await self.dead_letter("rejected")
            return
        self._claim("nack")
        subscription = self._subscription
        await subscription._settle_by_copy(  # pyright: ignore[reportPrivateUsage]
            self, subscription.retry_topic, self.copy_headers(self.attempt + 1)
        )

    async def dead_letter(self, reason: str) -> None:
        """Send a copy with ``reason`` to ``<topic>.dead-letter``, then mark the original
        done. Raises ``KafkaPublishError`` when the copy was not acknowledged (this
        subscription then delivers the original again)."""
        self._claim("dead-letter")
        subscription = self._subscription
        headers = self.copy_headers(None)
        headers[DEAD_LETTER_REASON_HEADER] = reason.encode("utf-8")
        headers[ORIGINAL_TOPIC_HEADER] = subscription.topic.encode("utf-8")
        headers[CONSUMER_GROUP_HEADER] = subscription.group_id.encode("utf-8")
        await subscription._settle_by_copy(  # pyright: ignore[reportPrivateUsage]
            self, dead_letter_topic(subscription.topic), headers
        )
