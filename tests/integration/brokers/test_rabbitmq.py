"""The RabbitMQ broker against the real server on 127.0.0.1:5672: the conformance suite,
the 4.x adapters as 4.x code uses them, durability and the declared topology."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from cqrs._internal.brokers.delivery import DEAD_LETTER_REASON_HEADER, dead_letter_topic
from cqrs.adapters.amqp import (
    AMQPConsumer,
    AMQPPublisher,
    amqp_consumer_factory,
    amqp_publisher_factory,
)
from cqrs.consumers import Backoff, EventConsumer
from cqrs.deserializers import JsonDeserializer
from cqrs.message_brokers.amqp import AMQPMessageBroker, QueueOptions
from cqrs.testing import ConformanceError, check_message_broker
from tests.integration.brokers.conftest import RABBIT_URL, QueueJanitor
from tests.integration.brokers.support import (
    OrderPlaced,
    Recorder,
    mediator_for,
    order_event,
    order_messages,
)
from tests.support import LONG_TEST_TIMEOUT, PATIENCE, wait_until_async

pytestmark = [pytest.mark.rabbitmq, pytest.mark.timeout(LONG_TEST_TIMEOUT)]


def topic() -> str:
    return f"cqrs-test-{uuid.uuid4().hex[:10]}"


def broker() -> AMQPMessageBroker:
    return AMQPMessageBroker.from_url(RABBIT_URL, "cqrs-test", confirm_timeout=PATIENCE)


async def test_rabbitmq_passes_the_conformance_suite(janitor: QueueJanitor) -> None:
    tasks_before = len(asyncio.all_tasks())
    try:
        report = await check_message_broker(broker, patience=PATIENCE)
    except ConformanceError as exc:
        janitor.add(*(exc.report.topics if exc.report else ()))
        raise
    janitor.add(*report.topics)
    assert report.passed == [
        "round trip",
        "requeue",
        "dead letter",
        "redelivery after close",
        "prefetch",
        "lifecycle",
    ]
    assert len(asyncio.all_tasks()) == tasks_before


async def run_until(consumer: EventConsumer, condition: Any, what: str) -> None:
    running = asyncio.create_task(consumer.run())
    try:
        await wait_until_async(condition, what)
    finally:
        await consumer.stop()
        await running


async def test_the_runner_consumes_retries_and_dead_letters_on_rabbitmq(
    janitor: QueueJanitor,
) -> None:
    import aio_pika

    name = topic()
    janitor.add(name)

    def flaky(event: Any, call: int) -> None:
        if event.payload.order_id == 3 and call <= 2:
            raise ConnectionError(f"database away (call {call})")

    recorder = Recorder(flaky)
    async with broker() as amqp:
        await asyncio.gather(*(amqp.send_message(m) for m in order_messages(200, name)))
        connection = await aio_pika.connect(RABBIT_URL)
        async with connection:
            channel = await connection.channel()
            for body in (b"{not json", b'{"event_name": "Nope", "payload": {}}'):
                await channel.default_exchange.publish(aio_pika.Message(body), routing_key=name)
        consumer = EventConsumer(
            await amqp.subscribe(name, prefetch=20),
            mediator_for(recorder),
            {"OrderPlaced": OrderPlaced},
            backoff=Backoff(initial=0.01),
        )
        await run_until(consumer, lambda: consumer.stats.received == 204, "204 deliveries")
        dead = await amqp.subscribe(dead_letter_topic(name), prefetch=5)
        reasons = []
        for _ in range(2):
            async with asyncio.timeout(PATIENCE):
                letter = await anext(dead)
            reasons.append((letter.message.headers or {})[DEAD_LETTER_REASON_HEADER])
            await letter.ack()
    assert recorder.handled == dict.fromkeys(range(200), 1)
    assert recorder.calls[3] == 3  # two failures, then success, counted by RabbitMQ
    assert (consumer.stats.acked, consumer.stats.retried, consumer.stats.dead_lettered) == (
        200,
        2,
        2,
    )
    assert sorted(reasons) == [
        "undecodable: the body is not JSON (key must be a string at line 1 column 2)",
        "unknown event name 'Nope': this consumer decodes ['OrderPlaced']",
    ]


class AttemptsOf:
    """A subscription that notes the attempt of every delivery of one message."""

    def __init__(self, inner: Any, message_id: object, seen: list[int]) -> None:
        self.inner = inner
        self.topic = inner.topic
        self.prefetch = inner.prefetch
        self.message_id = message_id
        self.seen = seen

    def __aiter__(self) -> AttemptsOf:
        return self

    async def __anext__(self) -> Any:
        delivery = await anext(self.inner)
        if delivery.message.message_id == self.message_id:
            self.seen.append(delivery.attempt)
        return delivery

    async def close(self) -> None:
        await self.inner.close()


async def test_a_classic_queue_counts_attempts_so_a_failing_message_reaches_its_limit(
    janitor: QueueJanitor,
) -> None:
    """A classic queue only tells a first delivery from a redelivery; the attempts are
    counted in a header of a confirmed copy, so attempts 1, 2, 3, 4 are seen, then the
    dead letter, and nothing is left in the queue."""
    name = topic()
    janitor.add(name)
    seen: list[int] = []

    def failing(event: Any, call: int) -> None:
        if event.payload.order_id == 1:
            raise ConnectionError(f"database away (call {call})")

    def on_dead_letter(delivery: Any, reason: str) -> None:
        seen.append(-delivery.attempt)

    recorder = Recorder(failing)
    classic = QueueOptions(queue_type="classic")
    async with AMQPMessageBroker.from_url(
        RABBIT_URL, "cqrs-test", queue_options=classic, confirm_timeout=PATIENCE
    ) as amqp:
        messages = order_messages(3, name)
        failing_id = messages[1].message_id
        await asyncio.gather(*(amqp.send_message(m) for m in messages))
        subscription = await amqp.subscribe(name, prefetch=5)
        probe: Any = AttemptsOf(subscription, failing_id, seen)  # a Subscription by duck typing
        consumer = EventConsumer(
            probe,
            mediator_for(recorder),
            {"OrderPlaced": OrderPlaced},
            max_attempts=4,
            backoff=Backoff(initial=0.01),
            on_dead_letter=on_dead_letter,
        )
        await run_until(consumer, lambda: consumer.stats.dead_lettered == 1, "the dead letter")
        dead = await amqp.subscribe(dead_letter_topic(name), prefetch=5)
        async with asyncio.timeout(PATIENCE):
            letter = await anext(dead)
        reason = (letter.message.headers or {})[DEAD_LETTER_REASON_HEADER]
        await letter.ack()
        await dead.close()
        left = await amqp.subscribe(name, prefetch=5)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                await anext(left)
        await left.close()
    assert recorder.calls[1] == 4
    assert seen == [1, 2, 3, 4, -4]
    assert recorder.handled == {0: 1, 2: 1}
    assert reason == ("handler failed on attempt 4 of 4: ConnectionError: database away (call 4)")
    assert (consumer.stats.acked, consumer.stats.retried, consumer.stats.dead_lettered) == (
        2,
        3,
        1,
    )


async def test_4x_publisher_and_consumer_adapters_as_4x_code_uses_them(
    janitor: QueueJanitor,
) -> None:
    """amqp_publisher_factory + AMQPMessageBroker(publisher, exchange) on the emitting side;
    amqp_consumer_factory().consume(handler, queue) with a JsonDeserializer on the other."""
    import di
    import pydantic
    from aio_pika.abc import AbstractIncomingMessage

    import cqrs
    from cqrs.requests import bootstrap

    name = topic()
    janitor.add(name)

    class PlaceOrder(cqrs.Request):
        order_id: int

    class PlaceOrderHandler(cqrs.RequestHandler[PlaceOrder, None]):
        def __init__(self) -> None:
            self._events: list[cqrs.Event] = []

        @property
        def events(self) -> list[cqrs.Event]:
            return self._events

        async def handle(self, request: PlaceOrder) -> None:
            self._events.append(order_event(request.order_id, name))

    publisher = amqp_publisher_factory(RABBIT_URL)
    assert isinstance(publisher, AMQPPublisher)
    mediator = bootstrap.bootstrap(
        di_container=di.Container(),
        commands_mapper=lambda mapper: mapper.bind(PlaceOrder, PlaceOrderHandler),
        message_broker=AMQPMessageBroker(publisher=publisher, exchange_name="cqrs-test-4x"),
    )
    for n in range(20):
        await mediator.send(PlaceOrder(order_id=n))

    recorder = Recorder()
    events = mediator_for(recorder)
    deserializer = JsonDeserializer(OrderPlaced)
    ids: list[str | None] = []

    async def on_message(message: AbstractIncomingMessage) -> None:
        async with message.process():
            ids.append(message.message_id)
            event = deserializer(message.body)
            assert isinstance(event, pydantic.BaseModel)
            await events.send(event)

    consumer = amqp_consumer_factory(RABBIT_URL)
    assert isinstance(consumer, AMQPConsumer)
    consuming = asyncio.create_task(consumer.consume(on_message, name))
    try:
        await wait_until_async(lambda: len(recorder.handled) == 20, "20 events consumed")
    finally:
        consuming.cancel()
        await asyncio.gather(consuming, return_exceptions=True)
        await consumer.close()
        await publisher.close()
    assert recorder.handled == dict.fromkeys(range(20), 1)
    assert recorder.order == list(range(20))  # prefetch 1: in publish order
    assert all(i is not None and uuid.UUID(i) for i in ids)  # the event ids


async def test_queues_are_durable_quorum_queues_and_messages_persistent(
    janitor: QueueJanitor,
) -> None:
    import aio_pika

    name = topic()
    janitor.add(name)
    async with broker() as amqp:
        [message] = order_messages(1, name)
        await amqp.send_message(message)
        subscription = await amqp.subscribe(name)
        async with asyncio.timeout(PATIENCE):
            delivery = await anext(subscription)
        raw = delivery.raw
        assert raw.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
        assert raw.message_id == str(message.message_id)  # the event id
        assert raw.body == message.payload_bytes
        assert raw.content_type is None
        assert not raw.headers
        await delivery.ack()
    connection = await aio_pika.connect(RABBIT_URL)
    async with connection:
        channel = await connection.channel()
        # Redeclaring with the 4.x settings (transient, no arguments) is refused: it exists
        # as a durable quorum queue.
        with pytest.raises(aio_pika.exceptions.ChannelPreconditionFailed):
            await channel.declare_queue(name)


async def test_each_queue_is_declared_once_however_many_publishes(janitor: QueueJanitor) -> None:
    from cqrs._internal.brokers.amqp.topology import Topology

    names = [topic(), topic()]
    janitor.add(*names)
    declared: list[str] = []
    original = Topology._declare  # pyright: ignore[reportPrivateUsage]

    async def counting(self: Topology, channel: Any, exchange: Any, queue: str) -> None:
        declared.append(queue)
        await original(self, channel, exchange, queue)

    async with broker() as amqp:
        amqp.publisher.topology._declare = counting.__get__(amqp.publisher.topology)  # pyright: ignore[reportAttributeAccessIssue]
        messages = [m for name in names for m in order_messages(100, name)]
        await asyncio.gather(*(amqp.send_message(m) for m in messages))
    assert sorted(declared) == sorted(names)


async def test_a_publish_that_cannot_be_confirmed_raises() -> None:
    from cqrs.message_brokers.amqp import PublishError

    unreachable = AMQPMessageBroker.from_url(
        "amqp://guest:guest@127.0.0.1:1/", "cqrs-test", confirm_timeout=0.5
    )
    async with unreachable:
        [message] = order_messages(1, "nowhere")
        with pytest.raises(PublishError, match=f"did not confirm message {message.message_id}"):
            await unreachable.send_message(message)
