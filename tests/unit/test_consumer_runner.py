"""The consumer runner on the in-memory broker: every message handled exactly once, retries
counted by the broker, poison dead-lettered with its reason, and a stop that settles nothing
unfinished. Each test counts at the end: handled per order, acks, queue contents, tasks."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

import cqrs
from cqrs._internal.brokers.delivery import DEAD_LETTER_REASON_HEADER, dead_letter_topic
from cqrs._internal.brokers.memory import MemoryDelivery, MemorySubscription
from cqrs._internal.brokers.message import message_for
from cqrs.consumers import Backoff, EventConsumer
from cqrs.deserializers import JsonDeserializer
from cqrs.message_brokers import Message
from cqrs.testing import InMemoryMessageBroker
from tests.integration.brokers.support import (
    OrderPlaced,
    Overlap,
    Recorder,
    mediator_for,
    order_event,
    order_messages,
)
from tests.support import PATIENCE, wait_until_async

NO_WAIT = Backoff(initial=0.0)


def topic() -> str:
    return f"orders-{uuid.uuid4().hex[:8]}"


async def publish(broker: InMemoryMessageBroker, messages: list[Message]) -> None:
    for message in messages:
        await broker.send_message(message)


async def drain(broker: InMemoryMessageBroker, name: str) -> list[Message]:
    """Every message waiting on ``name`` (acked as they are read)."""
    subscription = await broker.subscribe(name, prefetch=1000)
    found: list[Message] = []
    while broker.queued(name):
        delivery = await anext(subscription)
        found.append(delivery.message)
        await delivery.ack()
    await subscription.close()
    return found


@pytest.fixture
async def broker() -> AsyncIterator[InMemoryMessageBroker]:
    async with InMemoryMessageBroker() as opened:
        yield opened


async def test_ten_thousand_events_are_each_handled_exactly_once(
    broker: InMemoryMessageBroker,
) -> None:
    tasks_before = len(asyncio.all_tasks())
    name = topic()
    await publish(broker, order_messages(10_000, name))
    recorder = Recorder()
    consumer = EventConsumer(
        await broker.subscribe(name, prefetch=50), mediator_for(recorder), OrderPlaced
    )
    running = asyncio.create_task(consumer.run())
    await wait_until_async(lambda: consumer.stats.acked == 10_000, "10,000 acks")
    await consumer.stop()
    await running
    assert recorder.handled == dict.fromkeys(range(10000), 1)
    assert sum(recorder.calls.values()) == 10_000
    assert dataclasses.astuple(consumer.stats) == (10_000, 10_000, 0, 0, 0)
    assert broker.queued(name) == []
    assert broker.queued(dead_letter_topic(name)) == []
    assert len(asyncio.all_tasks()) == tasks_before


async def test_concurrency_one_handles_in_publish_order(broker: InMemoryMessageBroker) -> None:
    name = topic()
    await publish(broker, order_messages(500, name))
    recorder = Recorder()
    consumer = EventConsumer(
        await broker.subscribe(name, prefetch=20),
        mediator_for(recorder),
        OrderPlaced,
        concurrency=1,
    )
    running = asyncio.create_task(consumer.run())
    await wait_until_async(lambda: consumer.stats.acked == 500, "500 acks")
    await consumer.stop()
    await running
    assert recorder.order == list(range(500))


async def test_concurrency_bounds_the_handlers_running_at_once(
    broker: InMemoryMessageBroker,
) -> None:
    name = topic()
    await publish(broker, order_messages(60, name))
    overlap = Overlap()

    async def slow(event: Any, call: int) -> None:
        with overlap:
            for _ in range(3):
                await asyncio.sleep(0)

    recorder = Recorder(slow)
    consumer = EventConsumer(
        await broker.subscribe(name, prefetch=50),
        mediator_for(recorder),
        OrderPlaced,
        concurrency=4,
    )
    running = asyncio.create_task(consumer.run())
    await wait_until_async(lambda: consumer.stats.acked == 60, "60 acks")
    await consumer.stop()
    await running
    assert overlap.peak == 4
    assert recorder.handled == dict.fromkeys(range(60), 1)


async def test_a_handler_failing_twice_is_retried_through_the_broker(
    broker: InMemoryMessageBroker,
) -> None:
    name = topic()
    await publish(broker, order_messages(3, name))
    delays: list[int] = []

    def flaky(event: Any, call: int) -> None:
        if event.payload.order_id == 1 and call <= 2:
            raise ConnectionError(f"database away (call {call})")

    def backoff(attempt: int) -> float:
        delays.append(attempt)
        return 0.0

    recorder = Recorder(flaky)
    consumer = EventConsumer(
        await broker.subscribe(name, prefetch=5),
        mediator_for(recorder),
        OrderPlaced,
        backoff=backoff,
        concurrency=1,
    )
    running = asyncio.create_task(consumer.run())
    await wait_until_async(lambda: consumer.stats.acked == 3, "3 acks")
    await consumer.stop()
    await running
    assert recorder.calls == {0: 1, 1: 3, 2: 1}
    assert recorder.handled == {0: 1, 1: 1, 2: 1}
    assert delays == [1, 2]  # the attempt numbers came from the broker's redelivery count
    assert dataclasses.astuple(consumer.stats) == (5, 3, 2, 0, 0)
    assert broker.queued(dead_letter_topic(name)) == []


async def test_a_handler_that_always_fails_is_dead_lettered_after_max_attempts(
    broker: InMemoryMessageBroker,
) -> None:
    name = topic()
    [message] = order_messages(1, name)
    await publish(broker, [message])

    def broken(event: Any, call: int) -> None:
        raise ValueError(f"no such customer (call {call})")

    recorder = Recorder(broken)
    seen: list[str] = []
    consumer = EventConsumer(
        await broker.subscribe(name),
        mediator_for(recorder),
        OrderPlaced,
        max_attempts=3,
        backoff=NO_WAIT,
        on_dead_letter=lambda delivery, reason: seen.append(reason),
    )
    running = asyncio.create_task(consumer.run())
    await wait_until_async(lambda: consumer.stats.dead_lettered == 1, "the dead letter")
    await consumer.stop()
    await running
    assert recorder.calls == {0: 3}
    [letter] = await drain(broker, dead_letter_topic(name))
    reason = "handler failed on attempt 3 of 3: ValueError: no such customer (call 3)"
    assert (letter.headers or {})[DEAD_LETTER_REASON_HEADER] == reason
    assert seen == [reason]
    assert letter.message_id == message.message_id
    assert letter.payload_bytes == message.payload_bytes
    assert dataclasses.astuple(consumer.stats) == (3, 0, 2, 1, 0)


def raw(name: str, body: bytes) -> Message:
    return Message(message_name="Raw", topic=name, payload=body)


async def test_poison_goes_to_dead_letter_with_its_reason_and_the_rest_is_handled(
    broker: InMemoryMessageBroker,
) -> None:
    name = topic()
    good = order_messages(4, name)
    poison = {
        b"{not json": "undecodable: the body is not JSON",
        b"[1, 2]": "wrong schema: the body is a JSON list, not an object",
        b'{"event_name": "OrderShipped", "payload": {}}': "unknown event name 'OrderShipped'",
        b'{"payload": {"order_id": 1}}': "wrong schema: the body has no string 'event_name'",
        b'{"event_name": "OrderPlaced", "payload": {"order_id": "x"}}': (
            "wrong schema for PydanticNotificationEvent[OrderPayload]: ValidationError"
        ),
        b"\xff\xfe": "undecodable: the body is not JSON",
    }
    mixed: list[Message] = []
    for body, good_one in zip(poison, good, strict=False):
        mixed += [raw(name, body), good_one]
    mixed += [raw(name, body) for body in list(poison)[len(good) :]]
    await publish(broker, mixed)
    recorder = Recorder()
    consumer = EventConsumer(
        await broker.subscribe(name, prefetch=4),
        mediator_for(recorder),
        {"OrderPlaced": OrderPlaced},
    )
    running = asyncio.create_task(consumer.run())
    await wait_until_async(
        lambda: consumer.stats.received == len(mixed), f"{len(mixed)} deliveries"
    )
    assert not running.done()  # bad input never stops the consumer
    await consumer.stop()
    await running
    assert recorder.handled == dict.fromkeys(range(4), 1)
    letters = await drain(broker, dead_letter_topic(name))
    reasons = {m.payload_bytes: (m.headers or {})[DEAD_LETTER_REASON_HEADER] for m in letters}
    assert set(reasons) == set(poison)
    for body, expected in poison.items():
        assert reasons[body].startswith(expected), (body, reasons[body])
    assert dataclasses.astuple(consumer.stats) == (10, 4, 0, 6, 0)


async def test_a_4x_json_deserializer_and_dataclass_events_decode(
    broker: InMemoryMessageBroker,
) -> None:
    @dataclasses.dataclass(frozen=True)
    class Shipped(cqrs.DCNotificationEvent[dict[str, int]]):
        pass

    handled: list[Any] = []

    class Mediator:
        async def send(self, event: Any) -> None:
            handled.append(event)

    name = topic()
    shipped = Shipped(event_name="Shipped", payload={"parcels": 2}, topic=name)
    await publish(broker, [message_for(shipped), *order_messages(1, name)])
    by_name = EventConsumer(
        await broker.subscribe(name), Mediator(), {"Shipped": Shipped, "OrderPlaced": OrderPlaced}
    )
    running = asyncio.create_task(by_name.run())
    await wait_until_async(lambda: by_name.stats.acked == 2, "2 acks")
    await by_name.stop()
    await running
    assert handled[0] == shipped  # camelCase keys on the wire, read back by name
    assert handled[1].payload.order_id == 0

    await publish(broker, [*order_messages(2, name), raw(name, b"{}")])
    via_4x = EventConsumer(await broker.subscribe(name), Mediator(), JsonDeserializer(OrderPlaced))
    running = asyncio.create_task(via_4x.run())
    await wait_until_async(lambda: via_4x.stats.received == 3, "3 deliveries")
    await via_4x.stop()
    await running
    assert [e.payload.order_id for e in handled[2:]] == [0, 1]
    [letter] = await drain(broker, dead_letter_topic(name))
    assert (letter.headers or {})[DEAD_LETTER_REASON_HEADER].startswith(
        "undecodable (ValidationError): "
    )


async def test_stop_past_its_grace_acks_nothing_unfinished_and_all_is_redelivered(
    broker: InMemoryMessageBroker,
) -> None:
    tasks_before = len(asyncio.all_tasks())
    name = topic()
    sent = order_messages(100, name)
    await publish(broker, sent)
    gate = asyncio.Event()

    async def blocked(event: Any, call: int) -> None:
        await gate.wait()

    recorder = Recorder(blocked)
    consumer = EventConsumer(
        await broker.subscribe(name, prefetch=10),
        mediator_for(recorder),
        OrderPlaced,
        concurrency=5,
    )
    running = asyncio.create_task(consumer.run())
    await wait_until_async(lambda: recorder.started == 5, "5 handlers running")
    await consumer.stop(grace=0)
    await running
    assert recorder.handled == {}
    assert recorder.finished_cleanup == 5  # each cancelled handler ran its finally
    assert consumer.stats.acked == 0
    assert [m.message_id for m in broker.queued(name)] == [m.message_id for m in sent]
    assert len(asyncio.all_tasks()) == tasks_before

    gate.set()
    again = Recorder()
    second = EventConsumer(await broker.subscribe(name), mediator_for(again), OrderPlaced)
    running = asyncio.create_task(second.run())
    await wait_until_async(lambda: second.stats.acked == 100, "100 acks")
    await second.stop()
    await running
    assert again.handled == dict.fromkeys(range(100), 1)
    assert second.stats.received == 100


async def test_stop_lets_running_handlers_finish_and_leaves_the_rest_queued(
    broker: InMemoryMessageBroker,
) -> None:
    name = topic()
    await publish(broker, order_messages(50, name))
    gate = asyncio.Event()

    async def blocked(event: Any, call: int) -> None:
        await gate.wait()

    recorder = Recorder(blocked)
    consumer = EventConsumer(
        await broker.subscribe(name, prefetch=5), mediator_for(recorder), OrderPlaced
    )
    running = asyncio.create_task(consumer.run())
    await wait_until_async(lambda: recorder.started == 5, "5 handlers running")
    stopping = asyncio.create_task(consumer.stop())
    await wait_until_async(lambda: consumer._stopping, "the stop to begin")  # pyright: ignore[reportPrivateUsage]
    assert not stopping.done()  # it waits for the running handlers
    gate.set()
    async with asyncio.timeout(PATIENCE):
        await stopping
        await running
    assert recorder.handled == dict.fromkeys(range(5), 1)
    assert consumer.stats.acked == 5
    assert len(broker.queued(name)) == 45
    assert recorder.started == 5  # nothing new was taken after stop()


async def test_cancelling_run_returns_every_unfinished_delivery(
    broker: InMemoryMessageBroker,
) -> None:
    name = topic()
    await publish(broker, order_messages(8, name))
    gate = asyncio.Event()

    async def blocked(event: Any, call: int) -> None:
        await gate.wait()

    recorder = Recorder(blocked)
    consumer = EventConsumer(
        await broker.subscribe(name, prefetch=4), mediator_for(recorder), OrderPlaced
    )
    running = asyncio.create_task(consumer.run())
    await wait_until_async(lambda: recorder.started == 4, "4 handlers running")
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert recorder.finished_cleanup == 4
    assert consumer.stats.acked == 0
    assert len(broker.queued(name)) == 8


class RefusingDelivery(MemoryDelivery):
    """The first ack fails as a lost connection would."""

    refused = 0

    async def ack(self) -> None:
        if RefusingDelivery.refused == 0:
            RefusingDelivery.refused += 1
            raise ConnectionError("connection reset by peer")
        await super().ack()


class RefusingSubscription(MemorySubscription):
    async def __anext__(self) -> MemoryDelivery:
        delivery = await super().__anext__()
        return RefusingDelivery(self, delivery._entry)  # pyright: ignore[reportPrivateUsage]


async def test_a_refused_ack_is_counted_and_the_message_comes_back(
    broker: InMemoryMessageBroker,
) -> None:
    name = topic()
    await publish(broker, order_messages(3, name))
    subscription = RefusingSubscription(broker, broker._topic(name), 3)  # pyright: ignore[reportPrivateUsage]
    recorder = Recorder()
    consumer = EventConsumer(subscription, mediator_for(recorder), OrderPlaced)
    running = asyncio.create_task(consumer.run())
    await wait_until_async(lambda: consumer.stats.acked == 2, "2 acks")
    await consumer.stop()
    await running
    assert consumer.stats.settle_failures == 1
    assert len(broker.queued(name)) == 1  # the unacked one went back on close
    second = EventConsumer(await broker.subscribe(name), mediator_for(recorder), OrderPlaced)
    running = asyncio.create_task(second.run())
    await wait_until_async(lambda: second.stats.acked == 1, "the redelivery")
    await second.stop()
    await running
    assert sum(recorder.handled.values()) == 4  # at least once: one order twice
    assert set(recorder.handled) == {0, 1, 2}


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"max_attempts": 0}, "max_attempts must be at least 1, got 0"),
        ({"concurrency": 0}, "concurrency must be at least 1, got 0"),
    ],
)
async def test_bad_options_are_rejected(
    broker: InMemoryMessageBroker, kwargs: dict[str, Any], error: str
) -> None:
    subscription = await broker.subscribe(topic())
    with pytest.raises(ValueError, match=error):
        EventConsumer(subscription, mediator_for(Recorder()), OrderPlaced, **kwargs)


async def test_an_events_argument_without_from_dict_is_rejected(
    broker: InMemoryMessageBroker,
) -> None:
    subscription = await broker.subscribe(topic())
    with pytest.raises(TypeError, match="int has no classmethod from_dict"):
        EventConsumer(subscription, mediator_for(Recorder()), int)


async def test_run_twice_is_refused(broker: InMemoryMessageBroker) -> None:
    consumer = EventConsumer(await broker.subscribe(topic()), mediator_for(Recorder()), OrderPlaced)
    await consumer.stop()
    await consumer.run()  # stopped before it ran: returns at once
    with pytest.raises(RuntimeError, match="Cannot run an EventConsumer twice"):
        await consumer.run()


def test_backoff_grows_and_is_capped() -> None:
    backoff = Backoff(initial=0.5, factor=3.0, maximum=4.0)
    assert [backoff(n) for n in (1, 2, 3, 4)] == [0.5, 1.5, 4.0, 4.0]


async def test_order_event_helper_round_trips() -> None:
    event = order_event(7, "t")
    assert OrderPlaced.from_dict(**event.to_dict()) == event


class DelayedNacks:
    """Deliveries whose ``nack`` takes a ``delay`` (as NATS JetStream's): the delay is noted
    and the message returned at once, so a runner that slept instead would hang."""

    def __init__(self, inner: MemorySubscription) -> None:
        self.inner = inner
        self.topic = inner.topic
        self.prefetch = inner.prefetch
        self.delays: list[float | None] = []

    def __aiter__(self) -> DelayedNacks:
        return self

    async def __anext__(self) -> Any:
        return DelayedNack(await anext(self.inner), self.delays)

    async def close(self) -> None:
        await self.inner.close()


class DelayedNack:
    def __init__(self, inner: MemoryDelivery, delays: list[float | None]) -> None:
        self.inner = inner
        self.delays = delays
        self.message = inner.message
        self.attempt = inner.attempt

    async def ack(self) -> None:
        await self.inner.ack()

    async def nack(self, requeue: bool = True, *, delay: float | None = None) -> None:
        self.delays.append(delay)
        await self.inner.nack(requeue)

    async def dead_letter(self, reason: str) -> None:
        await self.inner.dead_letter(reason)


async def test_a_delayed_nack_carries_the_backoff_instead_of_holding_the_slot(
    broker: InMemoryMessageBroker,
) -> None:
    name = topic()
    await publish(broker, order_messages(3, name))
    tasks_before = len(asyncio.all_tasks())

    def flaky(event: Any, call: int) -> None:
        if event.payload.order_id == 0 and call <= 2:
            raise ConnectionError(f"database away (call {call})")

    recorder = Recorder(flaky)
    subscription = DelayedNacks(await broker.subscribe(name, prefetch=5))
    consumer = EventConsumer(
        subscription,  # type: ignore[arg-type]
        mediator_for(recorder),
        OrderPlaced,
        backoff=Backoff(initial=3600.0, maximum=10_000.0),
        concurrency=1,
    )
    running = asyncio.create_task(consumer.run())
    await wait_until_async(lambda: consumer.stats.acked == 3, "3 acks")
    await consumer.stop()
    await running
    assert subscription.delays == [3600.0, 7200.0]  # returned at once, the wait is the broker's
    assert recorder.calls == {0: 3, 1: 1, 2: 1}
    assert dataclasses.astuple(consumer.stats) == (5, 3, 2, 0, 0)
    assert len(asyncio.all_tasks()) == tasks_before
