"""The inbox middleware over the in-memory inbox and the in-memory broker: a redelivered or
republished event runs its handlers once, a failed one leaves no record and runs again,
concurrent deliveries of one id run once, poison is still dead-lettered. Each test counts
handler calls, inbox records and consumer settlements at the end."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

import cqrs
from cqrs._internal.brokers.delivery import DEAD_LETTER_REASON_HEADER, dead_letter_topic
from cqrs.consumers import Backoff, EventConsumer
from cqrs.events import bootstrap as events_bootstrap
from cqrs.inbox import IdempotentEventMediator, InboxRecord, InboxStats, InMemoryInbox
from cqrs.message_brokers import Message
from cqrs.testing import InMemoryMessageBroker, StaticContainer
from tests.integration.brokers.support import (
    OrderPlaced,
    Recorder,
    mediator_for,
    order_event,
    order_messages,
)
from tests.support import wait_until_async

NO_WAIT = Backoff(initial=0.0)
TEXT_KEYS = uuid.UUID("3c1f6b0e-1d43-4c55-8d0b-6a1c7f1e2b90")  # namespace of text keys


def topic() -> str:
    return f"orders-{uuid.uuid4().hex[:8]}"


def stats(guarded: IdempotentEventMediator) -> tuple[int, int, int]:
    return dataclasses.astuple(guarded.stats)


async def publish(broker: InMemoryMessageBroker, messages: list[Message]) -> None:
    for message in messages:
        await broker.send_message(message)


@pytest.fixture
async def broker() -> AsyncIterator[InMemoryMessageBroker]:
    async with InMemoryMessageBroker() as opened:
        yield opened


async def consume(
    broker: InMemoryMessageBroker, name: str, mediator: Any, acks: int, **options: Any
) -> EventConsumer:
    """Run an EventConsumer on ``name`` until ``acks`` messages are acked, then stop it."""
    consumer = EventConsumer(
        await broker.subscribe(name, prefetch=10), mediator, OrderPlaced, **options
    )
    running = asyncio.create_task(consumer.run())
    await wait_until_async(
        lambda: consumer.stats.acked + consumer.stats.dead_lettered >= acks,
        f"{acks} messages settled",
        details=lambda: str(consumer.stats),
    )
    await consumer.stop()
    await running
    return consumer


# -- the hostile cases first ----------------------------------------------------------------


async def test_a_failing_handler_leaves_no_record_and_runs_again_once(
    broker: InMemoryMessageBroker,
) -> None:
    name = topic()
    await publish(broker, order_messages(3, name))

    def flaky(event: Any, call: int) -> None:
        if event.payload.order_id == 1 and call == 1:
            raise ConnectionError("database away")

    recorder = Recorder(flaky)
    inbox = InMemoryInbox("billing")
    guarded = IdempotentEventMediator(mediator_for(recorder), inbox)
    consumer = await consume(broker, name, guarded, 3, backoff=NO_WAIT, concurrency=1)
    assert recorder.calls == {0: 1, 1: 2, 2: 1}
    assert recorder.handled == {0: 1, 1: 1, 2: 1}
    assert stats(guarded) == (3, 0, 1)
    assert len(inbox.records) == 3
    assert {r.consumer for r in inbox.records} == {"billing"}
    assert dataclasses.astuple(consumer.stats) == (4, 3, 1, 0, 0)


async def test_an_event_handled_but_not_acked_is_not_handled_again(
    broker: InMemoryMessageBroker,
) -> None:
    """The handlers ran and the record was kept, then the process failed before its ack (a
    crash, a lost connection): the broker delivers the message again and the inbox skips it."""
    name = topic()
    await publish(broker, order_messages(5, name))
    recorder = Recorder()
    guarded = IdempotentEventMediator(mediator_for(recorder), InMemoryInbox())
    lost_acks: set[int] = set()

    class AckLost:
        async def send(self, event: Any) -> None:
            await guarded.send(event)
            order = event.payload.order_id
            if order % 2 == 0 and order not in lost_acks:
                lost_acks.add(order)
                raise ConnectionError("connection lost before the ack")

    consumer = await consume(broker, name, AckLost(), 5, backoff=NO_WAIT)
    assert recorder.calls == dict.fromkeys(range(5), 1)
    assert stats(guarded) == (5, 3, 0)
    assert dataclasses.astuple(consumer.stats) == (8, 5, 3, 0, 0)
    assert broker.queued(name) == []


async def test_a_republished_event_runs_its_handlers_once(broker: InMemoryMessageBroker) -> None:
    name = topic()
    messages = order_messages(4, name)
    await publish(broker, [*messages, messages[2], messages[2], messages[0]])
    recorder = Recorder()
    guarded = IdempotentEventMediator(mediator_for(recorder), InMemoryInbox())
    consumer = await consume(broker, name, guarded, 7, concurrency=1)
    assert recorder.calls == dict.fromkeys(range(4), 1)
    assert stats(guarded) == (4, 3, 0)
    assert consumer.stats.acked == 7


async def test_poison_is_still_dead_lettered_and_never_reaches_the_inbox(
    broker: InMemoryMessageBroker,
) -> None:
    name = topic()
    [good] = order_messages(1, name)
    await publish(
        broker,
        [
            Message(message_name="x", topic=name, payload=None, payload_bytes=b"{not json"),
            Message(
                message_name="x",
                topic=name,
                payload=None,
                payload_bytes=b'{"event_name": "OrderPlaced", "payload": {"order_id": "many"}}',
            ),
            good,
        ],
    )
    recorder = Recorder()
    inbox = InMemoryInbox()
    guarded = IdempotentEventMediator(mediator_for(recorder), inbox)
    consumer = await consume(broker, name, guarded, 3)
    letters = broker.queued(dead_letter_topic(name))
    assert len(letters) == 2
    assert (letters[0].headers or {})[DEAD_LETTER_REASON_HEADER].startswith("undecodable")
    assert (letters[1].headers or {})[DEAD_LETTER_REASON_HEADER].startswith("wrong schema")
    assert recorder.calls == {0: 1}
    assert stats(guarded) == (1, 0, 0)
    assert len(inbox.records) == 1
    assert dataclasses.astuple(consumer.stats) == (3, 1, 0, 2, 0)


async def test_concurrent_deliveries_of_one_event_run_its_handlers_once() -> None:
    gate = asyncio.Event()

    async def slow(event: Any, call: int) -> None:
        await gate.wait()

    recorder = Recorder(slow)
    guarded = IdempotentEventMediator(mediator_for(recorder), InMemoryInbox())
    event = order_event(1, "orders")
    sends = [asyncio.create_task(guarded.send(event)) for _ in range(20)]
    await wait_until_async(lambda: recorder.started == 1, "the first delivery in its handler")
    for _ in range(10):
        await asyncio.sleep(0)
    assert recorder.started == 1  # the other 19 wait for the first claim
    gate.set()
    await asyncio.gather(*sends)
    assert recorder.calls == {1: 1}
    assert stats(guarded) == (1, 19, 0)


async def test_when_the_first_of_concurrent_deliveries_fails_the_next_one_runs() -> None:
    gate = asyncio.Event()

    async def first_fails(event: Any, call: int) -> None:
        await gate.wait()
        if call == 1:
            raise ConnectionError("database away")

    recorder = Recorder(first_fails)
    inbox = InMemoryInbox()
    guarded = IdempotentEventMediator(mediator_for(recorder), inbox)
    event = order_event(1, "orders")
    sends = [asyncio.create_task(guarded.send(event)) for _ in range(5)]
    await wait_until_async(lambda: recorder.started == 1, "the first delivery in its handler")
    gate.set()
    outcomes = await asyncio.gather(*sends, return_exceptions=True)
    assert [type(o).__name__ for o in outcomes] == ["ConnectionError"] + ["NoneType"] * 4
    assert recorder.calls == {1: 2}
    assert recorder.handled == {1: 1}
    assert stats(guarded) == (1, 3, 1)
    assert [r.event_id for r in inbox.records] == [event.event_id]


async def test_a_cancelled_handler_leaves_no_record() -> None:
    entered = asyncio.Event()

    async def hang(event: Any, call: int) -> None:
        if call == 1:
            entered.set()
            await asyncio.Event().wait()

    recorder = Recorder(hang)
    inbox = InMemoryInbox()
    guarded = IdempotentEventMediator(mediator_for(recorder), inbox)
    event = order_event(7, "orders")
    sending = asyncio.create_task(guarded.send(event))
    waiting = asyncio.create_task(guarded.send(event))  # a concurrent redelivery
    await entered.wait()
    sending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sending
    await waiting  # it ran the handler once the cancelled claim let go
    await guarded.send(event)
    assert recorder.calls == {7: 2}
    assert recorder.handled == {7: 1}
    assert stats(guarded) == (1, 1, 1)
    assert len(inbox.records) == 1


# -- keys, names and arguments --------------------------------------------------------------


class Shipped(cqrs.DomainEvent, frozen=True):
    order_id: int


class ShippedHandler(cqrs.EventHandler[Shipped]):
    def __init__(self) -> None:
        self.seen: list[int] = []

    async def handle(self, event: Shipped) -> None:
        self.seen.append(event.order_id)


def shipped_mediator(handler: ShippedHandler) -> cqrs.EventMediator:
    return events_bootstrap.bootstrap(
        di_container=StaticContainer({ShippedHandler: handler}),
        events_mapper=lambda mapper: mapper.bind(Shipped, ShippedHandler),
    )


async def test_an_event_without_an_id_is_refused_with_the_way_out() -> None:
    handler = ShippedHandler()
    guarded = IdempotentEventMediator(shipped_mediator(handler), InMemoryInbox())
    with pytest.raises(TypeError) as caught:
        await guarded.send(Shipped(order_id=1))
    assert str(caught.value) == (
        "Shipped has no event_id, which the inbox keys events by; consume notification "
        "events, or pass key=<function giving an event's id> to IdempotentEventMediator"
    )
    assert handler.seen == []


async def test_a_key_function_keys_events_by_text_or_uuid() -> None:
    handler = ShippedHandler()
    inbox = InMemoryInbox()
    guarded = IdempotentEventMediator(
        shipped_mediator(handler), inbox, key=lambda event: f"shipment-{event.order_id}"
    )
    for order in (1, 2, 1, 2, 3):
        await guarded.send(Shipped(order_id=order))
    assert handler.seen == [1, 2, 3]
    assert stats(guarded) == (3, 2, 0)
    first = inbox.records[0]
    assert first.event_id == uuid.uuid5(TEXT_KEYS, "shipment-1")
    assert first.event_name == "Shipped"
    second_inbox = InMemoryInbox()
    by_uuid_text = IdempotentEventMediator(
        shipped_mediator(handler), second_inbox, key=lambda event: str(first.event_id)
    )
    await by_uuid_text.send(Shipped(order_id=9))
    assert second_inbox.records[0].event_id == first.event_id  # UUID text is that UUID


async def test_a_key_of_the_wrong_type_is_refused() -> None:
    def number(event: Any) -> Any:
        return 42

    guarded = IdempotentEventMediator(
        shipped_mediator(ShippedHandler()), InMemoryInbox(), key=number
    )
    with pytest.raises(TypeError, match=r"key of Shipped must be a UUID or non-empty text, got 42"):
        await guarded.send(Shipped(order_id=1))


async def test_records_carry_the_event_name_and_naive_utc_time() -> None:
    inbox = InMemoryInbox("shipping")
    guarded = IdempotentEventMediator(mediator_for(Recorder()), inbox)
    before = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    event = order_event(3, "orders")
    await guarded.send(event)
    [record] = inbox.records
    assert record == InboxRecord(event.event_id, "shipping", "OrderPlaced", record.received_at)
    assert record.received_at.tzinfo is None
    assert before <= record.received_at <= before + datetime.timedelta(minutes=5)
    assert await inbox.contains(event.event_id)
    assert not await inbox.contains(event.event_id, "billing")


async def test_purge_forgets_old_records_and_the_event_runs_again() -> None:
    recorder = Recorder()
    inbox = InMemoryInbox()
    guarded = IdempotentEventMediator(mediator_for(recorder), inbox)
    event = order_event(5, "orders")
    await guarded.send(event)
    assert await inbox.purge(datetime.datetime(2000, 1, 1)) == 0
    future = datetime.datetime.now(datetime.UTC).replace(tzinfo=None) + datetime.timedelta(1)
    assert await inbox.purge(future) == 1
    await guarded.send(event)
    assert recorder.calls == {5: 2}
    assert inbox.records != []


@pytest.mark.parametrize(
    ("consumer", "error", "message"),
    [
        ("", ValueError, "consumer must be 1 to 255 characters, got 0"),
        ("x" * 256, ValueError, "consumer must be 1 to 255 characters, got 256"),
        (None, TypeError, "consumer must be a str naming the consumer, got None"),
    ],
)
def test_a_bad_consumer_name_is_refused(
    consumer: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        InMemoryInbox(consumer)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(TypeError, match="mediator must have an async send"):
        IdempotentEventMediator(object(), InMemoryInbox())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="inbox must be an Inbox"):
        IdempotentEventMediator(mediator_for(Recorder()), object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="key must be a function"):
        IdempotentEventMediator(mediator_for(Recorder()), InMemoryInbox(), key="id")  # type: ignore[arg-type]


def test_the_wrapper_exposes_what_it_wraps() -> None:
    mediator = mediator_for(Recorder())
    inbox = InMemoryInbox()
    guarded = IdempotentEventMediator(mediator, inbox)
    assert guarded.mediator is mediator
    assert guarded.inbox is inbox
    assert guarded.stats == InboxStats()
