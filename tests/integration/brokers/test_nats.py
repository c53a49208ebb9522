"""The NATS JetStream broker against the real server on 127.0.0.1:4222: the conformance
suite, the runner on top of it, the stream and consumers it creates, what goes on the wire,
de-duplication of retried publishes, and publishes that cannot be acknowledged."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from cqrs._internal.brokers.delivery import DEAD_LETTER_REASON_HEADER, dead_letter_topic
from cqrs.consumers import Backoff, EventConsumer
from cqrs.errors import DeliveryLostError
from cqrs.message_brokers.nats import (
    NatsConsumerOptions,
    NatsJetStreamBroker,
    NatsPublishError,
)
from cqrs.testing import ConformanceError, check_message_broker
from tests.integration.brokers.nats_support import (
    NATS_URL,
    StreamJanitor,
    require_nats,
    stream_janitor,
)
from tests.integration.brokers.support import (
    OrderPlaced,
    Recorder,
    mediator_for,
    order_messages,
)
from tests.support import LONG_TEST_TIMEOUT, PATIENCE, wait_until_async

pytestmark = [pytest.mark.nats, pytest.mark.timeout(LONG_TEST_TIMEOUT)]


@pytest.fixture
async def streams() -> AsyncIterator[StreamJanitor]:
    require_nats()
    async with stream_janitor() as janitor:
        yield janitor


def topic() -> str:
    return f"orders-{uuid.uuid4().hex[:8]}"


async def test_nats_passes_the_conformance_suite(streams: StreamJanitor) -> None:
    options = streams.options()
    tasks_before = len(asyncio.all_tasks())
    try:
        report = await check_message_broker(
            lambda: NatsJetStreamBroker(NATS_URL, stream=options, confirm_timeout=PATIENCE),
            patience=PATIENCE,
        )
    except ConformanceError as exc:
        raise AssertionError(f"{exc} (passed: {exc.report.passed if exc.report else []})") from exc
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


async def test_the_runner_consumes_retries_and_dead_letters_on_nats(
    streams: StreamJanitor,
) -> None:
    import nats

    options = streams.options()
    name = topic()

    def flaky(event: Any, call: int) -> None:
        if event.payload.order_id == 3 and call <= 2:
            raise ConnectionError(f"database away (call {call})")

    recorder = Recorder(flaky)
    async with NatsJetStreamBroker(NATS_URL, stream=options) as broker:
        await asyncio.gather(*(broker.send_message(m) for m in order_messages(200, name)))
        raw = await nats.connect(NATS_URL)
        try:
            for body in (b"{not json", b'{"event_name": "Nope", "payload": {}}'):
                await raw.jetstream().publish(options.subject(name), body)
        finally:
            await raw.close()
        consumer = EventConsumer(
            await broker.subscribe(name, prefetch=20),
            mediator_for(recorder),
            {"OrderPlaced": OrderPlaced},
            backoff=Backoff(initial=0.01),
        )
        await run_until(consumer, lambda: consumer.stats.received == 204, "204 deliveries")
        dead = await broker.subscribe(dead_letter_topic(name), prefetch=5)
        reasons: list[str] = []
        for _ in range(2):
            async with asyncio.timeout(PATIENCE):
                letter = await anext(dead)
            reasons.append((letter.message.headers or {})[DEAD_LETTER_REASON_HEADER])
            await letter.ack()
    assert recorder.handled == dict.fromkeys(range(200), 1)
    assert recorder.calls[3] == 3  # two failures, then success, counted by JetStream
    assert (consumer.stats.acked, consumer.stats.retried, consumer.stats.dead_lettered) == (
        200,
        2,
        2,
    )
    assert sorted(reasons) == [
        "undecodable: the body is not JSON (key must be a string at line 1 column 2)",
        "unknown event name 'Nope': this consumer decodes ['OrderPlaced']",
    ]


async def test_a_publish_that_cannot_be_confirmed_raises() -> None:
    pytest.importorskip("nats", reason="the nats extra (nats-py) is not installed")
    tasks_before = len(asyncio.all_tasks())
    unreachable = NatsJetStreamBroker(
        "nats://127.0.0.1:1", confirm_timeout=0.5, connect_timeout=0.5
    )
    [message] = order_messages(1, "nowhere")
    with pytest.raises(NatsPublishError, match=f"message {message.message_id} for 'cqrs.nowhere'"):
        await unreachable.send_message(message)
    with pytest.raises(
        ConnectionError, match=re.escape("Could not connect to NATS at nats://127.0.0.1:1")
    ):
        await unreachable.open()
    await unreachable.close()
    assert len(asyncio.all_tasks()) == tasks_before


async def test_options_refuse_what_nats_would_refuse() -> None:
    pytest.importorskip("nats", reason="the nats extra (nats-py) is not installed")
    from cqrs.message_brokers.nats import NatsStreamOptions

    with pytest.raises(ValueError, match="not a valid JetStream name"):
        NatsStreamOptions(name="my.stream")
    with pytest.raises(ValueError, match=re.escape("subject_prefix 'a..b'")):
        NatsStreamOptions(subject_prefix="a..b")
    with pytest.raises(ValueError, match="max_deliver"):
        NatsConsumerOptions(max_deliver=0)
    with pytest.raises(ValueError, match=re.escape("topic 'orders.*'")):
        NatsStreamOptions().subject("orders.*")


async def test_the_wire_the_stream_and_the_consumers_it_creates(streams: StreamJanitor) -> None:
    """Body and Nats-Msg-Id as published; one file-backed work-queue stream for every
    topic, created once however many publishes; one durable pull consumer per topic."""
    from cqrs._internal.brokers.nats.topology import Topology

    options = streams.options()
    names = [topic(), f"{topic()}.eu"]
    created: list[str] = []
    original = Topology._create_stream  # pyright: ignore[reportPrivateUsage]

    async def counting(self: Topology, js: Any) -> None:
        created.append(self.stream.name)
        await original(self, js)

    async with NatsJetStreamBroker(NATS_URL, stream=options) as broker:
        broker.topology._create_stream = counting.__get__(broker.topology)  # pyright: ignore[reportAttributeAccessIssue]
        messages = [m for name in names for m in order_messages(50, name)]
        await asyncio.gather(*(broker.send_message(m) for m in messages))
        subscriptions = [await broker.subscribe(name, prefetch=1) for name in names]
        js = broker.client.jetstream()
        info = await js.stream_info(options.name)
        consumers = {
            name: await js.consumer_info(options.name, s.durable)
            for name, s in zip(names, subscriptions, strict=True)
        }
        async with asyncio.timeout(PATIENCE):
            delivery = await anext(subscriptions[0])
        raw = delivery.raw
        await delivery.ack()
    assert created == [options.name]
    assert info.config.subjects == [f"{options.subject_prefix}.>"]
    assert (info.config.storage, info.config.retention, info.config.discard) == (
        "file",
        "workqueue",
        "new",
    )
    assert info.state.messages == 100
    assert {n: c.config.filter_subject for n, c in consumers.items()} == {
        n: options.subject(n) for n in names
    }
    durables = [c.config.durable_name or "" for c in consumers.values()]
    assert durables[0] == names[0]  # a valid consumer name is used as it is
    assert re.fullmatch(re.escape(names[1].replace(".", "_")) + "-[0-9a-f]{8}", durables[1])
    assert all(c.config.ack_policy == "explicit" for c in consumers.values())
    first = messages[0]
    assert raw.data == first.payload_bytes
    assert raw.headers is not None
    assert raw.headers["Nats-Msg-Id"] == str(first.message_id)  # the event id
    assert raw.headers["x-message-name"] == first.message_name
    assert "Content-Type" not in raw.headers  # JSON, as 4.x: no content type
    assert delivery.message.headers is None  # transport headers are not message headers


async def test_closing_returns_the_messages_not_yet_taken_too(streams: StreamJanitor) -> None:
    """A subscription pulls ahead (up to prefetch); closing it gives back the one taken
    and those pulled but never handed out, at once: the next subscriber gets all ten, the
    taken one at attempt 2 (JetStream counted the first delivery)."""
    options = streams.options()
    name = topic()
    messages = order_messages(10, name)
    async with NatsJetStreamBroker(NATS_URL, stream=options) as broker:
        await asyncio.gather(*(broker.send_message(m) for m in messages))
        first = await broker.subscribe(name, prefetch=10)
        async with asyncio.timeout(PATIENCE):
            taken = await anext(first)
        await first.close()
        second = await broker.subscribe(name, prefetch=10)
        again = []
        for _ in range(10):
            async with asyncio.timeout(PATIENCE):
                delivery = await anext(second)
            again.append((delivery.message.message_id, delivery.attempt))
            await delivery.ack()
    assert taken.message.message_id == messages[0].message_id
    assert sorted(i for i, _ in again) == sorted(m.message_id for m in messages)
    attempts = dict(again)
    assert attempts[messages[0].message_id] == 2
    # the nine were pulled ahead (attempt 2) unless the pull had not reached them yet when
    # the subscription closed, as on a loaded machine (attempt 1): never lost, never held
    assert {attempts[m.message_id] for m in messages[1:]} <= {1, 2}


async def test_settling_after_the_connection_closed_raises_delivery_lost(
    streams: StreamJanitor,
) -> None:
    """A delivery held while the connection is closed under it cannot be settled:
    ``DeliveryLostError`` (a ``ConnectionError``), not nats-py's own error; a new connection
    gets the message again."""
    options = streams.options()
    consumer = NatsConsumerOptions(ack_wait=1.0)
    name = topic()
    [message] = order_messages(1, name)
    async with NatsJetStreamBroker(NATS_URL, stream=options, consumer=consumer) as broker:
        await broker.send_message(message)
        subscription = await broker.subscribe(name, prefetch=1)
        async with asyncio.timeout(PATIENCE):
            held = await anext(subscription)
        await broker.client.close()
        with pytest.raises(DeliveryLostError, match="delivers it again after ack_wait"):
            await held.ack()
        assert isinstance(DeliveryLostError("x"), ConnectionError)
        await subscription.close()
    async with NatsJetStreamBroker(NATS_URL, stream=options, consumer=consumer) as broker:
        again = await broker.subscribe(name, prefetch=1)
        async with asyncio.timeout(PATIENCE):
            delivery = await anext(again)
        assert delivery.message.message_id == message.message_id
        assert delivery.attempt == 2
        await delivery.ack()
        await again.close()


async def test_a_delayed_nack_comes_back_after_what_was_published_meanwhile(
    streams: StreamJanitor,
) -> None:
    options = streams.options()
    name = topic()
    first, later = order_messages(2, name)
    async with NatsJetStreamBroker(NATS_URL, stream=options) as broker:
        await broker.send_message(first)
        subscription = await broker.subscribe(name, prefetch=2)
        async with asyncio.timeout(PATIENCE):
            delivery = await anext(subscription)
        await delivery.nack(delay=2.0)
        await broker.send_message(later)
        order = []
        for _ in range(2):
            async with asyncio.timeout(PATIENCE):
                delivery = await anext(subscription)
            order.append((delivery.message.message_id, delivery.attempt))
            await delivery.ack()
    assert order == [(later.message_id, 1), (first.message_id, 2)]


async def test_a_dead_letter_given_twice_is_stored_once(streams: StreamJanitor) -> None:
    """The copy is published, then the subscription dies before ``+TERM``: the message
    comes back and is dead-lettered again; JetStream drops the second copy (same
    ``<id>:dead-letter``), so the dead letters hold it once."""
    options = streams.options()
    name = topic()
    [message] = order_messages(1, name)
    async with NatsJetStreamBroker(NATS_URL, stream=options) as broker:
        await broker.send_message(message)
        first = await broker.subscribe(name, prefetch=1)
        async with asyncio.timeout(PATIENCE):
            delivery = await anext(first)
        await first.publish_dead_letter(delivery.raw, "poison")  # the copy, and no +TERM
        await first.close()
        second = await broker.subscribe(name, prefetch=1)
        async with asyncio.timeout(PATIENCE):
            again = await anext(second)
        await again.dead_letter("poison")
        dead = await broker.subscribe(dead_letter_topic(name), prefetch=5)
        async with asyncio.timeout(PATIENCE):
            letter = await anext(dead)
        await letter.ack()
        js = broker.client.jetstream()

        async def emptied() -> Any:
            state = (await js.stream_info(options.name)).state
            return state if state.messages == 0 else None

        state = await wait_until_async(emptied, "the acked dead letter to leave the stream")
    assert again.attempt == 2
    assert letter.message.message_id == message.message_id
    assert state.last_seq == 2  # the original and one copy: the second was dropped


async def test_fan_out_needs_limits_retention(streams: StreamJanitor) -> None:
    """A work-queue stream has one consumer per topic: a second durable name is refused
    with the way out; with ``retention="limits"`` each durable gets every message."""
    name = topic()
    messages = order_messages(3, name)
    async with NatsJetStreamBroker(NATS_URL, stream=streams.options()) as broker:
        await broker.subscribe(name, durable="billing")
        with pytest.raises(ValueError, match="retention='limits'"):
            await broker.subscribe(name, durable="shipping")
    limits = streams.options(retention="limits")
    async with NatsJetStreamBroker(NATS_URL, stream=limits) as broker:
        await asyncio.gather(*(broker.send_message(m) for m in messages))
        got: dict[str, list[uuid.UUID]] = {}
        for service in ("billing", "shipping"):
            subscription = await broker.subscribe(name, durable=service, prefetch=3)
            got[service] = []
            for _ in messages:
                async with asyncio.timeout(PATIENCE):
                    delivery = await anext(subscription)
                got[service].append(delivery.message.message_id)
                await delivery.ack()
    assert got == {service: [m.message_id for m in messages] for service in got}


async def test_a_stream_of_that_name_with_other_subjects_is_refused(
    streams: StreamJanitor,
) -> None:
    import nats

    options = streams.options()
    client = await nats.connect(NATS_URL)
    try:
        await client.jetstream().add_stream(name=options.name, subjects=["elsewhere-" + topic()])
    finally:
        await client.close()
    async with NatsJetStreamBroker(NATS_URL, stream=options, confirm_timeout=PATIENCE) as broker:
        [message] = order_messages(1, topic())
        with pytest.raises(ValueError, match=f"stream '{options.name}' exists with subjects"):
            await broker.send_message(message)
        with pytest.raises(ValueError, match="choose another NatsStreamOptions"):
            await broker.subscribe(topic())


def test_wire_names_and_reasons() -> None:
    """No server needed: the dead-letter id and reason, the received id, durable names."""
    pytest.importorskip("nats", reason="the nats extra (nats-py) is not installed")
    from cqrs._internal.brokers.nats.topology import durable_name
    from cqrs._internal.brokers.nats.wire import dead_letter_headers, publish_headers, received

    [message] = order_messages(1, "orders")
    sent = publish_headers(message)
    copy = dead_letter_headers(sent, reason="boom\nat line 2", topic="orders", fallback_id="S-1")
    again = dead_letter_headers(copy, reason="r", topic="orders.dead-letter", fallback_id="S-2")
    assert copy["Nats-Msg-Id"] == f"{message.message_id}:dead-letter"
    assert copy["x-dead-letter-reason"] == "boom at line 2"  # headers hold one line
    assert again["Nats-Msg-Id"] == f"{message.message_id}:dead-letter:dead-letter"
    for headers in (sent, copy, again):
        assert received(b"{}", headers, "orders").message_id == message.message_id
    assert dead_letter_headers(None, reason="x", topic="t", fallback_id="S-7")["Nats-Msg-Id"] == (
        "S-7:dead-letter"
    )
    long = dead_letter_headers(None, reason="x" * 5000, topic="t", fallback_id="S")
    assert len(long["x-dead-letter-reason"]) == 2000
    assert durable_name("orders") == "orders"
    assert durable_name("a.b") != durable_name("a_b")
