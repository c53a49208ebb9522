"""The FastStream adapter against the real RabbitMQ on 127.0.0.1:5672, with a real FastStream
app started and stopped in-process: every event handled exactly once, bounded retries counted
by attempt, poison dead-lettered once with its reason (never looping), nothing unfinished
acked when the app stops mid-batch."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

pytest.importorskip("faststream", reason="the faststream extra is not installed")

from faststream import BaseMiddleware, FastStream
from faststream.rabbit import RabbitBroker, RabbitQueue, RabbitRouter

from cqrs._internal.brokers.delivery import (
    DEAD_LETTER_REASON_HEADER,
    ORIGINAL_TOPIC_HEADER,
    dead_letter_topic,
)
from cqrs.consumers import Backoff
from cqrs.integrations.faststream import (
    ATTEMPTS_HEADER,
    EventSubscriber,
    attempt_of,
    rabbit_queue,
    subscribe_events,
)
from cqrs.message_brokers import Message
from cqrs.message_brokers.amqp import AMQPMessageBroker, QueueOptions
from tests.integration.brokers.conftest import RABBIT_URL, QueueJanitor
from tests.integration.brokers.support import (
    OrderPlaced,
    Recorder,
    mediator_for,
    order_messages,
)
from tests.support import LONG_TEST_TIMEOUT, PATIENCE, wait_until_async

pytestmark = pytest.mark.timeout(LONG_TEST_TIMEOUT)

EVENTS = {"OrderPlaced": OrderPlaced}


def topic() -> str:
    return f"cqrs-test-fs-{uuid.uuid4().hex[:10]}"


async def publish_orders(count: int, name: str) -> list[Message]:
    """Publish orders 0..count-1 as cqrs does (durable quorum queue)."""
    messages = order_messages(count, name)
    async with AMQPMessageBroker.from_url(
        RABBIT_URL, "cqrs-test", confirm_timeout=PATIENCE
    ) as amqp:
        await asyncio.gather(*(amqp.send_message(m) for m in messages))
    return messages


async def publish_raw(name: str, bodies: dict[str, bytes], content_type: str | None) -> None:
    """Publish bodies (by message id) straight to the queue, as code outside cqrs would."""
    import aio_pika

    connection = await aio_pika.connect(RABBIT_URL)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        for message_id, body in bodies.items():
            await channel.default_exchange.publish(
                aio_pika.Message(body, message_id=message_id, content_type=content_type),
                routing_key=name,
                mandatory=True,
            )


async def depth(name: str) -> int:
    """Messages ready in queue ``name``."""
    import aio_pika

    connection = await aio_pika.connect(RABBIT_URL)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(name, passive=True)
        count = queue.declaration_result.message_count
    assert count is not None
    return count


async def drain(name: str) -> list[Any]:
    """Every message of queue ``name`` (acked), waiting a little for each."""
    import aio_pika

    found: list[Any] = []
    connection = await aio_pika.connect(RABBIT_URL)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(name, passive=True)
        while (message := await queue.get(fail=False, timeout=PATIENCE)) is not None:
            await message.ack()
            found.append(message)
    return found


class Deliveries:
    """A FastStream broker middleware counting each delivery by message id, with its attempt
    as the adapter counts it (what a user's middleware sees)."""

    def __init__(self) -> None:
        self.attempts: dict[str, list[int]] = collections.defaultdict(list)
        seen = self

        class Probe(BaseMiddleware):
            async def on_receive(self) -> None:
                message = self.msg
                assert message is not None
                seen.attempts[message.message_id].append(attempt_of(message))

        self.middleware = Probe


@contextlib.asynccontextmanager
async def running(broker: RabbitBroker) -> AsyncIterator[FastStream]:
    """A FastStream app of ``broker``, started in-process and stopped at the end."""
    app = FastStream(broker, logger=None)
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


def fast_broker(*, graceful_timeout: float | None = PATIENCE, probe: Deliveries | None = None):
    middlewares = () if probe is None else (probe.middleware,)
    return RabbitBroker(
        RABBIT_URL, logger=None, graceful_timeout=graceful_timeout, middlewares=middlewares
    )


async def no_task_left(before: int) -> None:
    """Wait for the task count to come back to ``before`` (aio-pika ends a closed connection
    in tasks of its own, a moment later); a handler left hanging would keep it above."""
    await wait_until_async(
        lambda: len(asyncio.all_tasks()) == before,
        f"the task count to come back to {before}",
        details=lambda: "\n".join(map(repr, asyncio.all_tasks())),
    )


def stats_of(route: EventSubscriber) -> tuple[int, int, int, int, int]:
    s = route.stats
    return (s.received, s.acked, s.retried, s.dead_lettered, s.settle_failures)


# -- the hostile cases first ----------------------------------------------------------------


@pytest.mark.rabbitmq
async def test_poison_is_dead_lettered_once_with_its_reason_and_never_loops(
    janitor: QueueJanitor,
) -> None:
    name = topic()
    janitor.add(name)
    probe = Deliveries()
    recorder = Recorder()
    broker = fast_broker(probe=probe)
    route = subscribe_events(broker, name, mediator_for(recorder), EVENTS)
    poison = {
        "bad-json": b"{not json",
        "unknown-name": b'{"event_name": "Nope", "payload": {}}',
        "wrong-schema": (
            b'{"event_name": "OrderPlaced", "topic": "t", "payload": {"order_id": "many"}}'
        ),
    }
    tasks_before = len(asyncio.all_tasks())
    async with running(broker):  # the subscriber declares the queue, cqrs's way
        # application/json: FastStream's own decoder would fail on the bad JSON before any
        # handler ran, and leave it unsettled; the adapter must see it
        await publish_raw(name, poison, content_type="application/json")
        [order] = await publish_orders(1, name)
        good = str(order.message_id)
        await wait_until_async(
            lambda: route.stats.dead_lettered == 3 and route.stats.acked == 1,
            "3 dead letters and 1 ack",
        )
        await asyncio.sleep(2.0)  # the window in which a looping consumer redelivers
        deliveries = {k: list(v) for k, v in probe.attempts.items()}
    letters = await drain(dead_letter_topic(name))
    assert deliveries == {"bad-json": [1], "unknown-name": [1], "wrong-schema": [1], good: [1]}
    assert stats_of(route) == (4, 1, 0, 3, 0)
    assert recorder.handled == {0: 1}
    reasons = {m.message_id: m.headers[DEAD_LETTER_REASON_HEADER] for m in letters}
    assert len(letters) == 3
    assert reasons["bad-json"] == (
        "undecodable: the body is not JSON (key must be a string at line 1 column 2)"
    )
    assert reasons["unknown-name"] == (
        "unknown event name 'Nope': this consumer decodes ['OrderPlaced']"
    )
    assert reasons["wrong-schema"].startswith(
        "wrong schema for PydanticNotificationEvent[OrderPayload]: ValidationError: 1 validation"
    )
    assert {m.message_id: m.body for m in letters} == poison  # byte for byte
    assert {m.headers[ORIGINAL_TOPIC_HEADER] for m in letters} == {name}
    assert await depth(name) == 0
    await no_task_left(tasks_before)


@pytest.mark.rabbitmq
async def test_failures_are_retried_with_counted_attempts_then_dead_lettered(
    janitor: QueueJanitor,
) -> None:
    name = topic()
    janitor.add(name)

    def flaky(event: Any, call: int) -> None:
        order = event.payload.order_id
        if (order == 3 and call <= 2) or order == 7:
            raise ConnectionError(f"database away (order {order}, call {call})")

    delays: list[int] = []

    def backoff(attempt: int) -> float:
        delays.append(attempt)
        return 0.01

    probe = Deliveries()
    recorder = Recorder(flaky)
    broker = fast_broker(probe=probe)
    given_up: list[tuple[str, str]] = []

    async def on_dead_letter(delivery: Any, reason: str) -> None:
        given_up.append((str(delivery.message.message_id), reason))

    route = subscribe_events(
        broker,
        name,
        mediator_for(recorder),
        EVENTS,
        max_attempts=3,
        backoff=backoff,
        on_dead_letter=on_dead_letter,
    )
    messages = await publish_orders(10, name)
    ids = [str(m.message_id) for m in messages]
    async with running(broker):
        await wait_until_async(
            lambda: route.stats.acked == 9 and route.stats.dead_lettered == 1,
            "9 acks and 1 dead letter",
        )
    [letter] = await drain(dead_letter_topic(name))
    assert probe.attempts[ids[3]] == [1, 2, 3]  # failed twice, then succeeded
    assert probe.attempts[ids[7]] == [1, 2, 3]  # failed max_attempts times
    assert all(probe.attempts[ids[n]] == [1] for n in range(10) if n not in (3, 7))
    assert sorted(delays) == [1, 1, 2, 2]  # a backoff before each retry, by attempt
    assert (recorder.calls[3], recorder.calls[7]) == (3, 3)
    assert recorder.handled == {n: 1 for n in range(10) if n != 7}
    assert stats_of(route) == (14, 9, 4, 1, 0)
    assert letter.message_id == ids[7]
    assert letter.headers[DEAD_LETTER_REASON_HEADER] == (
        "handler failed on attempt 3 of 3: ConnectionError: database away (order 7, call 3)"
    )
    assert given_up == [(ids[7], letter.headers[DEAD_LETTER_REASON_HEADER])]
    assert ATTEMPTS_HEADER not in letter.headers  # a replayed dead letter starts afresh
    assert letter.body == messages[7].payload_bytes  # byte for byte
    assert await depth(name) == 0


@pytest.mark.rabbitmq
async def test_stop_mid_batch_acks_nothing_unfinished(janitor: QueueJanitor) -> None:
    name = topic()
    janitor.add(name)
    gate = asyncio.Event()  # never set: orders from 5 on hang until the app stops

    async def hang_from_five(event: Any, call: int) -> None:
        if event.payload.order_id >= 5:
            await gate.wait()

    tasks_before = len(asyncio.all_tasks())
    await publish_orders(30, name)
    first = Recorder(hang_from_five)
    broker = fast_broker(graceful_timeout=0.5)
    route = subscribe_events(broker, name, mediator_for(first), EVENTS, prefetch=10)
    async with running(broker):
        await wait_until_async(
            lambda: first.started == 15 and route.stats.acked == 5,
            "5 orders done and 10 hanging (prefetch 10)",
        )
    # The stop waited 0.5 s for the hanging ten, then cancelled them: not one acked.
    assert stats_of(route) == (15, 5, 0, 0, 0)
    assert first.handled == dict.fromkeys(range(5), 1)
    assert first.finished_cleanup == first.started == 15  # every handler's finally ran
    assert await wait_until_async(
        lambda: _depth_is(name, 25), "the 25 unacked messages back in the queue"
    )

    second = Recorder()
    broker = fast_broker()
    route = subscribe_events(broker, name, mediator_for(second), EVENTS, prefetch=10)
    async with running(broker):
        await wait_until_async(lambda: route.stats.acked == 25, "the other 25 handled")
    assert second.handled == dict.fromkeys(range(5, 30), 1)  # nothing of 0..4 came back
    assert stats_of(route) == (25, 25, 0, 0, 0)
    assert await depth(name) == 0
    await no_task_left(tasks_before)


@pytest.mark.rabbitmq
async def test_stop_lets_running_handlers_finish_and_acks_them(janitor: QueueJanitor) -> None:
    name = topic()
    janitor.add(name)
    gate = asyncio.Event()

    async def wait_for_gate(event: Any, call: int) -> None:
        await gate.wait()

    await publish_orders(20, name)
    recorder = Recorder(wait_for_gate)
    broker = fast_broker()  # graceful_timeout: PATIENCE
    route = subscribe_events(broker, name, mediator_for(recorder), EVENTS, prefetch=10)
    app = FastStream(broker, logger=None)
    await app.start()
    try:
        await wait_until_async(lambda: recorder.started == 10, "10 handlers running")
        stopping = asyncio.create_task(app.stop())
        await wait_until_async(lambda: not route.subscriber.running, "the stop to begin")
        gate.set()  # the ten finish while the app stops
        await stopping
    finally:
        gate.set()
        await app.stop()
    assert recorder.handled == dict.fromkeys(range(10), 1)
    assert stats_of(route) == (10, 10, 0, 0, 0)  # all ten acked, none taken after the stop
    assert await wait_until_async(lambda: _depth_is(name, 10), "the other 10 still queued")


async def _depth_is(name: str, expected: int) -> bool:
    return await depth(name) == expected


# -- the ordinary case ------------------------------------------------------------------------


@pytest.mark.rabbitmq
async def test_500_events_from_a_cqrs_publisher_are_handled_exactly_once(
    janitor: QueueJanitor,
) -> None:
    name = topic()
    janitor.add(name)
    await publish_orders(500, name)  # the cqrs publisher declares the queue first
    recorder = Recorder()
    broker = fast_broker()
    route = subscribe_events(
        broker, name, mediator_for(recorder), EVENTS, exchange="cqrs-test", prefetch=50
    )  # the exchange and queue as the publisher declared them: RabbitMQ accepts both again
    tasks_before = len(asyncio.all_tasks())
    async with running(broker):
        await wait_until_async(lambda: route.stats.acked == 500, "500 acks")
    assert recorder.handled == dict.fromkeys(range(500), 1)
    assert stats_of(route) == (500, 500, 0, 0, 0)
    assert await depth(name) == 0
    assert await depth(dead_letter_topic(name)) == 0
    await no_task_left(tasks_before)


@pytest.mark.rabbitmq
async def test_a_classic_queue_of_the_user_counts_attempts_exactly(
    janitor: QueueJanitor,
) -> None:
    """A FastStream app's own classic queue, subscribed through a router: the redelivered
    flag alone would stop at attempt 2 (and a max of 3 would loop forever); the attempts
    header counts on."""
    name = topic()
    janitor.add(name)
    probe = Deliveries()

    def always(event: Any, call: int) -> None:
        raise RuntimeError(f"no (call {call})")

    recorder = Recorder(always)
    broker = fast_broker(probe=probe)
    router = RabbitRouter()
    route = subscribe_events(
        router,
        RabbitQueue(name, durable=True),
        mediator_for(recorder),
        OrderPlaced,
        max_attempts=4,
        backoff=Backoff(initial=0.01),
    )
    broker.include_router(router)
    async with running(broker):
        [event_id] = await publish_raw_order(name)
        await wait_until_async(lambda: route.stats.dead_lettered == 1, "the dead letter")
    assert probe.attempts == {event_id: [1, 2, 3, 4]}
    assert stats_of(route) == (4, 0, 3, 1, 0)
    [letter] = await drain(dead_letter_topic(name))
    assert letter.headers[DEAD_LETTER_REASON_HEADER] == (
        "handler failed on attempt 4 of 4: RuntimeError: no (call 4)"
    )
    assert await depth(name) == 0


async def publish_raw_order(name: str) -> list[str]:
    [message] = order_messages(1, name)
    assert message.payload_bytes is not None
    await publish_raw(name, {str(message.message_id): message.payload_bytes}, None)
    return [str(message.message_id)]


# -- without a server --------------------------------------------------------------------------


def test_subscribe_events_rejects_bad_arguments() -> None:
    broker = RabbitBroker(RABBIT_URL, logger=None)
    mediator = mediator_for(Recorder())
    with pytest.raises(ValueError, match="prefetch must be at least 1, got 0"):
        subscribe_events(broker, "q", mediator, EVENTS, prefetch=0)
    with pytest.raises(ValueError, match="max_attempts must be at least 1, got 0"):
        subscribe_events(broker, "q", mediator, EVENTS, max_attempts=0)
    with pytest.raises(TypeError, match="events must be an event type, a mapping"):
        subscribe_events(broker, "q", mediator, 42)  # type: ignore[arg-type]
    assert broker.subscribers == []  # nothing half-registered


def test_rabbit_queue_is_declared_as_the_cqrs_broker_declares_it() -> None:
    quorum = rabbit_queue("orders")
    assert (quorum.durable, quorum.auto_delete, quorum.exclusive) == (True, False, False)
    assert quorum.arguments == QueueOptions().arguments("orders")
    assert quorum.arguments["x-queue-type"] == "quorum"
    classic = rabbit_queue("orders", QueueOptions(queue_type="classic", durable=False))
    assert not classic.durable
    assert classic.arguments == QueueOptions(queue_type="classic").arguments("orders")
    assert "x-queue-type" not in classic.arguments  # as aio-pika declares it in cqrs


class _Raw:
    def __init__(self, headers: dict[str, Any], redelivered: bool = False) -> None:
        self.headers = headers
        self.redelivered = redelivered


@pytest.mark.parametrize(
    ("headers", "redelivered", "attempt"),
    [
        ({}, False, 1),
        ({}, True, 2),
        ({"x-delivery-count": 0}, False, 1),
        ({"x-delivery-count": 4}, True, 5),
        ({ATTEMPTS_HEADER: 2}, False, 3),
        ({ATTEMPTS_HEADER: 2, "x-delivery-count": 1}, True, 4),
        ({ATTEMPTS_HEADER: b"3"}, False, 4),
        ({ATTEMPTS_HEADER: "junk"}, False, 1),
        ({ATTEMPTS_HEADER: -5}, False, 1),
    ],
)
def test_attempt_adds_the_header_to_the_brokers_delivery_count(
    headers: dict[str, Any], redelivered: bool, attempt: int
) -> None:
    assert attempt_of(_Raw(headers, redelivered)) == attempt  # type: ignore[arg-type]
