"""``check_message_broker``: the conformance suite every consumable broker must pass.

Run it against your own broker (any object with the ``ConsumableBroker`` shape: a
``MessageBroker`` that also subscribes, with the unopened/open/closed life)::

    report = await check_message_broker(lambda: MyBroker(url))

It raises :class:`ConformanceError` (an ``AssertionError``) naming the first check that
failed and what it saw, and returns a :class:`ConformanceReport` listing the checks that
passed and the topics it used (delete those queues afterwards on a shared server).

Nothing here sleeps to let things happen: every wait is for an event, bounded by
``patience`` seconds so a broken broker fails rather than hangs. The single exception is the
prefetch check, which asserts that a delivery does **not** arrive within ``quiet`` seconds: a
slow machine can only make that check miss a fault, never fail a good broker.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from cqrs._internal.brokers.delivery import (
    DEAD_LETTER_REASON_HEADER,
    ORIGINAL_TOPIC_HEADER,
    ConsumableBroker,
    Delivery,
    DeliverySettledError,
    Subscription,
    dead_letter_topic,
)
from cqrs._internal.brokers.lifecycle import BrokerStateError
from cqrs._internal.brokers.message import wire_body
from cqrs._internal.brokers.protocol import Message

__all__ = ["BrokerFactory", "ConformanceError", "ConformanceReport", "check_message_broker"]

BrokerFactory = Callable[[], ConsumableBroker | Awaitable[ConsumableBroker]]
"""Makes a new, unopened broker (a plain or an async function)."""


class ConformanceError(AssertionError):
    """A broker broke the contract: the message names the check and what was seen;
    :attr:`report` (when raised by :func:`check_message_broker`) lists the checks that
    passed and the topics used so far."""

    report: ConformanceReport | None = None


@dataclasses.dataclass
class ConformanceReport:
    """What :func:`check_message_broker` did: the checks that passed, in order, and every
    topic it published to or subscribed to (dead-letter topics included)."""

    passed: list[str] = dataclasses.field(default_factory=list[str])
    topics: list[str] = dataclasses.field(default_factory=list[str])


async def check_message_broker(
    factory: BrokerFactory,
    *,
    ordered: bool = True,
    patience: float = 30.0,
    quiet: float = 0.3,
    topic_prefix: str = "cqrs-conformance",
) -> ConformanceReport:
    """Check a broker against the contract of ``cqrs._internal.brokers.delivery``.

    ``factory`` makes a new unopened broker; each check uses its own broker and its own topic
    (``<topic_prefix>-<check>-<random>``). ``ordered=False`` skips the per-topic order check
    for a broker that does not promise it. Checks, in order:

    * ``round trip``: published messages reach a later subscriber with their id, name, body,
      content type and headers, in publish order, each at attempt 1; acked ones never return;
    * ``requeue``: ``nack()`` redelivers the same message with attempt 2, then 3;
    * ``dead letter``: ``dead_letter(reason)`` and ``nack(requeue=False)`` move the message
      to ``<topic>.dead-letter`` with the reason (``"rejected"``) and the original topic in
      the headers, id and body unchanged, and it never returns to the topic;
    * ``redelivery after close``: unsettled deliveries of a closed subscription go to the
      next subscriber (attempt 2); settling one afterwards raises ``DeliverySettledError``;
    * ``prefetch``: no more than ``prefetch`` deliveries are unsettled at once;
    * ``lifecycle``: publishing opens an unopened broker; opening twice, reopening, and
      publishing or subscribing after ``close()`` raise ``BrokerStateError``; ``close()``
      twice is fine; a subscription ends when its broker closes.

    Raises :class:`ConformanceError` at the first failure.
    """
    checker = _Checker(factory, ordered, patience, quiet, topic_prefix)
    for name, check in (
        ("round trip", checker.round_trip),
        ("requeue", checker.requeue),
        ("dead letter", checker.dead_letter),
        ("redelivery after close", checker.redelivery_after_close),
        ("prefetch", checker.prefetch),
        ("lifecycle", checker.lifecycle),
    ):
        try:
            await check()
        except ConformanceError as exc:
            failure = ConformanceError(f"check {name!r} failed: {exc}")
        except TimeoutError:
            failure = ConformanceError(
                f"check {name!r} failed: nothing happened within {patience:g} s "
                "(a delivery or an operation never completed)"
            )
        else:
            checker.report.passed.append(name)
            continue
        failure.report = checker.report
        raise failure
    return checker.report


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise ConformanceError(message)


class _Checker:
    def __init__(
        self,
        factory: BrokerFactory,
        ordered: bool,
        patience: float,
        quiet: float,
        prefix: str,
    ) -> None:
        self.factory = factory
        self.ordered = ordered
        self.patience = patience
        self.quiet = quiet
        self.prefix = prefix
        self.report = ConformanceReport()

    async def broker(self) -> ConsumableBroker:
        made: Any = self.factory()
        if inspect.isawaitable(made):
            made = await made
        return made

    def topic(self, check: str) -> str:
        name = f"{self.prefix}-{check}-{uuid.uuid4().hex[:12]}"
        self.report.topics += [name, dead_letter_topic(name)]
        return name

    async def next(self, subscription: Subscription) -> Delivery:
        async with asyncio.timeout(self.patience):
            return await anext(subscription)

    async def publish(self, broker: ConsumableBroker, topic: str, count: int) -> list[Message]:
        messages = [
            Message(
                message_name=f"Checked{n}",
                topic=topic,
                payload={"n": n, "text": "żółw €"},
                message_id=uuid.uuid4(),
            )
            for n in range(count)
        ]
        async with asyncio.timeout(self.patience):
            for message in messages:
                await broker.send_message(message)
        return messages

    async def nothing_left(
        self, broker: ConsumableBroker, topic: str, subscription: Subscription
    ) -> None:
        """Publish a sentinel: it must be the next delivery (so nothing settled came back)."""
        [sentinel] = await self.publish(broker, topic, 1)
        delivery = await self.next(subscription)
        _expect(
            delivery.message.message_id == sentinel.message_id,
            f"a settled message came back: got {delivery.message.message_id} "
            f"({delivery.message.message_name!r}, attempt {delivery.attempt}) before the "
            "sentinel published after it was settled",
        )
        await delivery.ack()

    async def round_trip(self) -> None:
        broker = await self.broker()
        topic = self.topic("round-trip")
        async with asyncio.timeout(self.patience):
            await broker.open()
        try:
            sent = await self.publish(broker, topic, 20)
            encoded = Message(
                message_name="Encoded",
                topic=topic,
                payload={"ignored": True},
                message_id=uuid.uuid4(),
                payload_bytes=b"\x00\x01binary\xff",
                content_type="application/x-protobuf",
                headers={"event_name": "encoded", "message_id": "m-1"},
            )
            async with asyncio.timeout(self.patience):
                await broker.send_message(encoded)
            sent.append(encoded)
            subscription = await broker.subscribe(topic, prefetch=len(sent))
            received = [await self.next(subscription) for _ in sent]
            got_ids = [d.message.message_id for d in received]
            want_ids = [m.message_id for m in sent]
            if self.ordered:
                _expect(got_ids == want_ids, f"order or ids differ: sent {want_ids}, got {got_ids}")
            else:
                _expect(
                    sorted(got_ids) == sorted(want_ids),
                    f"ids differ: sent {sorted(want_ids)}, got {sorted(got_ids)}",
                )
            by_id = {m.message_id: m for m in sent}
            for delivery in received:
                original = by_id[delivery.message.message_id]
                got = delivery.message
                _expect(
                    got.payload_bytes == wire_body(original),
                    f"body of {original.message_name} changed: sent {wire_body(original)!r}, "
                    f"got {got.payload_bytes!r}",
                )
                _expect(
                    got.message_name == original.message_name,
                    f"name changed: sent {original.message_name!r}, got {got.message_name!r}",
                )
                _expect(got.topic == topic, f"topic is {got.topic!r}, expected {topic!r}")
                _expect(delivery.attempt == 1, f"first delivery has attempt {delivery.attempt}")
                _expect(
                    got.content_type == original.content_type,
                    f"content type changed: sent {original.content_type!r}, "
                    f"got {got.content_type!r}",
                )
                for key, value in (original.headers or {}).items():
                    _expect(
                        (got.headers or {}).get(key) == value,
                        f"header {key!r} changed: sent {value!r}, got {got.headers!r}",
                    )
            for delivery in received:
                await delivery.ack()
            await self.nothing_left(broker, topic, subscription)
            await subscription.close()
        finally:
            await broker.close()

    async def requeue(self) -> None:
        broker = await self.broker()
        topic = self.topic("requeue")
        try:
            [sent] = await self.publish(broker, topic, 1)
            subscription = await broker.subscribe(topic, prefetch=1)
            for attempt in (1, 2, 3):
                delivery = await self.next(subscription)
                _expect(
                    delivery.message.message_id == sent.message_id,
                    f"attempt {attempt}: got {delivery.message.message_id}, "
                    f"expected {sent.message_id}",
                )
                _expect(
                    delivery.attempt == attempt,
                    f"delivery {attempt} of a nacked message has attempt {delivery.attempt}",
                )
                _expect(
                    delivery.message.payload_bytes == wire_body(sent),
                    "the body of a redelivered message changed",
                )
                if attempt < 3:
                    await delivery.nack(requeue=True)
                else:
                    await delivery.ack()
            try:
                await delivery.ack()
            except DeliverySettledError:
                pass
            else:
                raise ConformanceError("acking a delivery twice did not raise")
            await self.nothing_left(broker, topic, subscription)
            await subscription.close()
        finally:
            await broker.close()

    async def dead_letter(self) -> None:
        broker = await self.broker()
        topic = self.topic("dead-letter")
        try:
            sent = await self.publish(broker, topic, 2)
            subscription = await broker.subscribe(topic, prefetch=2)
            first, second = await self.next(subscription), await self.next(subscription)
            reason = "undecodable: body is not JSON (line 1 column 1)"
            await first.dead_letter(reason)
            await second.nack(requeue=False)
            await self.nothing_left(broker, topic, subscription)
            await subscription.close()
            dead = await broker.subscribe(dead_letter_topic(topic), prefetch=2)
            letters = [await self.next(dead), await self.next(dead)]
            got = {d.message.message_id: d for d in letters}
            want = sorted(m.message_id for m in sent)
            _expect(sorted(got) == want, f"dead letters have ids {sorted(got)}, expected {want}")
            reasons = {
                first.message.message_id: reason,
                second.message.message_id: "rejected",
            }
            for message_id, letter in got.items():
                headers = letter.message.headers or {}
                _expect(
                    headers.get(DEAD_LETTER_REASON_HEADER) == reasons[message_id],
                    f"dead letter {message_id} has reason "
                    f"{headers.get(DEAD_LETTER_REASON_HEADER)!r}, expected "
                    f"{reasons[message_id]!r}",
                )
                _expect(
                    headers.get(ORIGINAL_TOPIC_HEADER) == topic,
                    f"dead letter {message_id} names topic {headers.get(ORIGINAL_TOPIC_HEADER)!r}",
                )
                original = next(m for m in sent if m.message_id == message_id)
                _expect(
                    letter.message.payload_bytes == wire_body(original),
                    "the body of a dead letter differs from the original",
                )
                await letter.ack()
            await dead.close()
        finally:
            await broker.close()

    async def redelivery_after_close(self) -> None:
        broker = await self.broker()
        topic = self.topic("redelivery")
        try:
            sent = await self.publish(broker, topic, 3)
            first = await broker.subscribe(topic, prefetch=3)
            taken = [await self.next(first) for _ in sent]
            await taken[0].ack()
            await first.close()
            try:
                await taken[1].ack()
            except DeliverySettledError:
                pass
            else:
                raise ConformanceError(
                    "acking a delivery of a closed subscription did not raise DeliverySettledError"
                )
            second = await broker.subscribe(topic, prefetch=3)
            again = [await self.next(second), await self.next(second)]
            ids = [d.message.message_id for d in again]
            # the unsettled ones are those not acked, whatever order an unordered broker used
            want = [d.message.message_id for d in taken[1:]]
            _expect(
                sorted(ids) == sorted(want),
                f"after close, the next subscriber got {ids}, expected the unsettled {want}",
            )
            if self.ordered:
                _expect(ids == want, f"returned messages out of order: {ids}, expected {want}")
            for delivery in again:
                _expect(
                    delivery.attempt == 2,
                    f"a returned message came back with attempt {delivery.attempt}, expected 2",
                )
                await delivery.ack()
            await self.nothing_left(broker, topic, second)
            await second.close()
        finally:
            await broker.close()

    async def prefetch(self) -> None:
        broker = await self.broker()
        topic = self.topic("prefetch")
        try:
            await self.publish(broker, topic, 4)
            subscription = await broker.subscribe(topic, prefetch=2)
            held = [await self.next(subscription), await self.next(subscription)]
            third = asyncio.ensure_future(anext(subscription))
            try:
                done, _ = await asyncio.wait({third}, timeout=self.quiet)
                _expect(not done, "a third delivery arrived while prefetch=2 were unsettled")
                await held[0].ack()
                async with asyncio.timeout(self.patience):
                    delivery = await third
            finally:
                if not third.done():
                    third.cancel()
                    await asyncio.gather(third, return_exceptions=True)
            await delivery.ack()
            await held[1].ack()
            await (await self.next(subscription)).ack()
            await subscription.close()
        finally:
            await broker.close()

    async def lifecycle(self) -> None:
        topic = self.topic("lifecycle")
        broker = await self.broker()
        try:
            await self.publish(broker, topic, 1)  # publishing opens an unopened broker
            try:
                await broker.open()
            except BrokerStateError:
                pass
            else:
                raise ConformanceError("opening an open broker did not raise BrokerStateError")
            subscription = await broker.subscribe(topic, prefetch=1)
            await (await self.next(subscription)).ack()
        finally:
            await broker.close()
        await broker.close()
        async with asyncio.timeout(self.patience):
            ended = [d async for d in subscription]
        _expect(not ended, "a subscription went on delivering after its broker closed")
        for what, attempt in (
            ("publishing on", lambda: self.publish(broker, topic, 1)),
            ("subscribing to", lambda: broker.subscribe(topic)),
            ("reopening", broker.open),
        ):
            try:
                await attempt()
            except BrokerStateError:
                continue
            raise ConformanceError(f"{what} a closed broker did not raise BrokerStateError")
