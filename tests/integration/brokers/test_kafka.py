"""The Kafka broker against a real Kafka-protocol broker (tansu, started by the tests): the
conformance suite, the records on the wire, the runner with retries and dead letters, commit
order, rebalances, and the 4.x adapter as 4.x code uses it.

tansu cannot test the idempotent producer, transactions or commit metadata (see
``kafka_support``); nothing here relies on them.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from cqrs._internal.brokers.delivery import (
    DEAD_LETTER_REASON_HEADER,
    ORIGINAL_TOPIC_HEADER,
    dead_letter_topic,
)
from cqrs.adapters.kafka import KafkaProducer, kafka_producer_factory
from cqrs.consumers import Backoff, EventConsumer
from cqrs.message_brokers import Message
from cqrs.message_brokers.kafka import (
    KafkaMessageBroker,
    KafkaPublishError,
    PartitionRevokedError,
)
from cqrs.testing import check_message_broker
from tests.integration.brokers.kafka_support import (
    TEST_CONSUMER_OPTIONS,
    Tansu,
    committed_offsets,
    headers_of,
    read_records,
    session_tansu,
    skip_without_kafka,
)
from tests.integration.brokers.support import (
    OrderPlaced,
    Recorder,
    mediator_for,
    order_event,
    order_messages,
)
from tests.support import LONG_TEST_TIMEOUT, PATIENCE, free_port, wait_until_async

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(LONG_TEST_TIMEOUT)]


@pytest.fixture
def kafka(request: pytest.FixtureRequest) -> Tansu:
    return session_tansu(request)


def topic() -> str:
    return f"cqrs-test-{uuid.uuid4().hex[:10]}"


def broker_for(server: Tansu, **options: Any) -> KafkaMessageBroker:
    options.setdefault("consumer_options", TEST_CONSUMER_OPTIONS)
    return KafkaMessageBroker.from_url(server.bootstrap, timeout=PATIENCE, **options)


def one_partition(message: Message) -> str:
    """A key that puts every record of a topic on one partition (so it is ordered)."""
    return message.topic


async def next_of(subscription: Any) -> Any:
    async with asyncio.timeout(PATIENCE):
        return await anext(subscription)


async def test_kafka_passes_the_conformance_suite(kafka: Tansu) -> None:
    tasks_before = len(asyncio.all_tasks())
    # One key per topic puts every record of a check on one partition, so the suite checks
    # order too (with the default key, the event id, Kafka orders nothing across events).
    report = await check_message_broker(
        lambda: broker_for(kafka, key=one_partition), patience=PATIENCE
    )
    assert report.passed == [
        "round trip",
        "requeue",
        "dead letter",
        "redelivery after close",
        "prefetch",
        "lifecycle",
    ]
    assert len(asyncio.all_tasks()) == tasks_before


async def test_a_record_is_the_4x_body_keyed_and_labelled_by_the_event_id(kafka: Tansu) -> None:
    name = topic()
    (json_message,) = order_messages(1, name)
    encoded = Message(
        message_name="Encoded",
        topic=name,
        payload={"ignored": True},
        payload_bytes=b"\x00proto\xff",
        content_type="application/x-protobuf",
        headers={"event_name": "encoded", "message_id": "4x-id"},
    )
    async with broker_for(kafka) as broker:
        await broker.send_message(json_message)
        await broker.send_message(encoded)
    by_value = {r.value: r for r in await read_records(kafka.bootstrap, name, 2)}
    plain = by_value[json_message.payload_bytes]
    event_id = str(json_message.message_id).encode()
    assert plain.key == event_id
    assert headers_of(plain) == {
        "x-message-id": event_id,
        "x-message-name": json_message.message_name.encode(),
    }
    proto = by_value[b"\x00proto\xff"]
    assert proto.key == str(encoded.message_id).encode()
    assert headers_of(proto) == {
        "event_name": b"encoded",
        "message_id": b"4x-id",
        "x-message-id": str(encoded.message_id).encode(),
        "x-message-name": b"Encoded",
        "content-type": b"application/x-protobuf",
    }


async def test_send_messages_sends_every_record_once(kafka: Tansu) -> None:
    name = topic()
    messages = order_messages(1_000, name)
    async with broker_for(kafka) as broker:
        await broker.send_messages(messages)
        await broker.send_messages([])
    records = await read_records(kafka.bootstrap, name, 1_000)
    assert sorted(r.key for r in records) == sorted(str(m.message_id).encode() for m in messages)
    assert {r.value for r in records} == {m.payload_bytes for m in messages}


async def test_a_partition_key_keeps_the_events_of_one_key_in_order(kafka: Tansu) -> None:
    name = topic()
    messages = order_messages(300, name)
    customer = {m.message_id: f"customer-{n % 3}" for n, m in enumerate(messages)}
    recorder = Recorder()
    async with broker_for(kafka, key=lambda m: customer[m.message_id]) as broker:
        await asyncio.gather(*(broker.send_message(m) for m in messages))  # pipelined
        consumer = EventConsumer(
            await broker.subscribe(name, prefetch=50),
            mediator_for(recorder),
            OrderPlaced,
            concurrency=1,
        )
        running = asyncio.create_task(consumer.run())
        try:
            await wait_until_async(lambda: len(recorder.handled) == 300, "300 events handled")
        finally:
            await consumer.stop()
            await running
    assert recorder.handled == dict.fromkeys(range(300), 1)
    for key in range(3):
        of_key = [n for n in recorder.order if n % 3 == key]
        assert of_key == sorted(of_key), f"customer-{key} out of order"
    assert consumer.stats.acked == 300


async def test_the_runner_consumes_retries_and_dead_letters_on_kafka(kafka: Tansu) -> None:
    from aiokafka import AIOKafkaProducer

    name = topic()

    def behaviour(event: Any, call: int) -> None:
        order_id = event.payload.order_id
        if order_id == 3 and call <= 2:
            raise ConnectionError(f"database away (call {call})")
        if order_id == 7:
            raise ValueError("order 7 can never be handled")

    recorder = Recorder(behaviour)
    tasks_before = len(asyncio.all_tasks())
    async with broker_for(kafka) as broker:
        await asyncio.gather(*(broker.send_message(m) for m in order_messages(200, name)))
        raw = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all")
        await raw.start()
        try:
            for body in (
                b"{not json",
                b'{"event_name": "Nope", "payload": {}}',
                b'{"event_name": "OrderPlaced", "payload": {"order_id": "x"}}',
            ):
                await raw.send_and_wait(name, body)
        finally:
            await raw.stop()
        consumer = EventConsumer(
            await broker.subscribe(name, prefetch=20, group_id="billing"),
            mediator_for(recorder),
            {"OrderPlaced": OrderPlaced},
            max_attempts=3,
            backoff=Backoff(initial=0.01),
        )
        running = asyncio.create_task(consumer.run())
        try:
            await wait_until_async(
                lambda: consumer.stats.acked + consumer.stats.dead_lettered == 203,
                "203 messages settled",
                details=lambda: str(consumer.stats),
            )
        finally:
            await consumer.stop()
            await running
        letters = await read_records(kafka.bootstrap, dead_letter_topic(name), 4)
    assert len(asyncio.all_tasks()) == tasks_before
    assert recorder.handled == {n: 1 for n in range(200) if n != 7}
    assert recorder.calls[3] == 3  # two failures, then success: attempts 1, 2, 3
    assert recorder.calls[7] == 3  # attempts 1, 2, 3, then dead-lettered
    stats = consumer.stats
    assert (stats.acked, stats.retried, stats.dead_lettered, stats.settle_failures) == (
        199,
        4,
        4,
        0,
    )
    reasons = sorted(headers_of(r)[DEAD_LETTER_REASON_HEADER].decode() for r in letters)
    assert (
        reasons[0] == "handler failed on attempt 3 of 3: ValueError: order 7 can never be handled"
    )
    assert (
        reasons[1] == "undecodable: the body is not JSON (key must be a string at line 1 column 2)"
    )
    assert reasons[2] == "unknown event name 'Nope': this consumer decodes ['OrderPlaced']"
    assert reasons[3].startswith(
        "wrong schema for PydanticNotificationEvent[OrderPayload]: ValidationError: "
    )
    for letter in letters:
        headers = headers_of(letter)
        assert headers[ORIGINAL_TOPIC_HEADER] == name.encode()
        assert headers["x-consumer-group"] == b"billing"
        assert "x-attempt" not in headers
    # the retries went to the group's own retry topic, never to the topic itself
    retries = await read_records(kafka.bootstrap, f"{name}.retry.billing", 4)
    assert sorted(headers_of(r)["x-attempt"] for r in retries) == [b"2", b"2", b"3", b"3"]


async def test_commits_never_pass_a_message_that_is_not_finished(kafka: Tansu) -> None:
    name = topic()
    group = f"g-{uuid.uuid4().hex[:8]}"
    async with broker_for(kafka, key=one_partition) as broker:
        for message in order_messages(3, name):
            await broker.send_message(message)
        subscription = await broker.subscribe(name, prefetch=3, group_id=group)
        first, second, third = [await next_of(subscription) for _ in range(3)]
        [partition] = {d.partition[1] for d in (first, second, third)}
        assert [first.offset, second.offset, third.offset] == [0, 1, 2]
        await third.ack()
        await second.ack()
        await subscription.commit()
        assert await committed_offsets(kafka.bootstrap, group, name) == {}
        await first.ack()
        await subscription.commit()
        assert await committed_offsets(kafka.bootstrap, group, name) == {partition: 3}
        assert subscription.commit_failures == 0
        await subscription.close()


async def test_a_consumer_that_stops_returns_what_it_did_not_finish(kafka: Tansu) -> None:
    """Finished later, unfinished earlier: after close the next member gets exactly the
    unfinished ones (as retry copies, attempt 2) and nothing it finished."""
    name = topic()
    async with broker_for(kafka, key=one_partition) as broker:
        for message in order_messages(5, name):
            await broker.send_message(message)
        subscription = await broker.subscribe(name, prefetch=5)
        taken = [await next_of(subscription) for _ in range(5)]
        for delivery in (taken[1], taken[3], taken[4]):
            await delivery.ack()
        await subscription.close()
        after = await broker.subscribe(name, prefetch=5)
        again = [await next_of(after) for _ in range(2)]
        assert [d.message.message_id for d in again] == [
            taken[0].message.message_id,
            taken[2].message.message_id,
        ]
        assert [d.attempt for d in again] == [2, 2]
        for delivery in again:
            await delivery.ack()
        [sentinel] = order_messages(1, name)
        await broker.send_message(sentinel)
        assert (await next_of(after)).message.message_id == sentinel.message_id
        await after.close()


async def test_a_rebalance_takes_partitions_away_and_they_are_no_longer_committed(
    kafka: Tansu,
) -> None:
    """Member A holds offsets 0 and 1 of a partition when B joins (every partition is
    revoked, then dealt out again): offset 0, settled within the revoke grace, is committed;
    settling offset 1 afterwards raises PartitionRevokedError, nothing commits past it, and
    the group delivers it again (and only it)."""
    name = topic()
    group = f"g-{uuid.uuid4().hex[:8]}"
    async with broker_for(kafka, key=one_partition, group_id=group) as broker:
        for message in order_messages(2, name):
            await broker.send_message(message)
        broker.revoke_grace = 5.0
        member_a = await broker.subscribe(name, prefetch=2)
        settled_in_time, stale = [await next_of(member_a) for _ in range(2)]
        assert (settled_in_time.offset, stale.offset) == (0, 1)
        [partition] = {settled_in_time.partition[1], stale.partition[1]}
        # B's start returns once B joined, so after A's revocation: run it beside.
        joining = asyncio.create_task(broker.subscribe(name, prefetch=2))
        # the revocation has started when A's ledgers stop accepting records
        await wait_until_async(lambda: not settled_in_time.ledger.accepting, "A's revocation")
        await settled_in_time.ack()  # within the grace: committed before the partition goes
        member_b = await joining
        assert not stale.ledger.active  # the grace ran out, the rebalance went on
        with pytest.raises(PartitionRevokedError, match="revoked"):
            await stale.ack()
        assert await committed_offsets(kafka.bootstrap, group, name) == {partition: 1}
        seen: list[tuple[uuid.UUID, int]] = []

        async def take(member: Any) -> None:
            delivery = await anext(member)
            seen.append((delivery.message.message_id, delivery.attempt))
            await delivery.ack()

        takers = [asyncio.create_task(take(m)) for m in (member_a, member_b)]
        done, _ = await asyncio.wait(takers, timeout=PATIENCE, return_when=asyncio.FIRST_COMPLETED)
        for task in takers:
            task.cancel()
        await asyncio.gather(*takers, return_exceptions=True)
        assert done, "the revoked delivery was not delivered again"
        assert seen == [(stale.message.message_id, 1)]  # a plain redelivery, not a copy
        assert await committed_offsets(kafka.bootstrap, group, name) == {partition: 2}
        await member_a.close()
        await member_b.close()


def test_the_4x_factory_needs_no_running_loop() -> None:
    producer = kafka_producer_factory("127.0.0.1:9")  # at import time, as 4.x code does
    assert isinstance(producer, KafkaProducer)
    assert producer.producer is None  # the aiokafka producer is made on first use
    assert producer.client_options == {
        "bootstrap_servers": "127.0.0.1:9",
        "security_protocol": "PLAINTEXT",
        "sasl_mechanism": "PLAIN",
    }
    assert not producer.legacy_value_serializer


async def test_4x_code_publishes_through_the_adapter(kafka: Tansu) -> None:
    """kafka_producer_factory(dsn) + KafkaMessageBroker(producer) behind a RequestMediator,
    and the legacy value_serializer path (payload dicts through the user's serializer)."""
    import di

    import cqrs
    from cqrs.requests import bootstrap

    name, legacy_name = topic(), topic()

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

    producer = kafka_producer_factory(kafka.bootstrap)
    legacy = kafka_producer_factory(kafka.bootstrap, value_serializer=lambda v: repr(v).encode())
    try:
        mediator = bootstrap.bootstrap(
            di_container=di.Container(),
            commands_mapper=lambda mapper: mapper.bind(PlaceOrder, PlaceOrderHandler),
            message_broker=KafkaMessageBroker(producer),
        )
        for n in range(20):
            await mediator.send(PlaceOrder(order_id=n))
        legacy_broker = KafkaMessageBroker(legacy, "WARNING")
        await legacy_broker.send_message(Message("M", legacy_name, {"a": 1}))
    finally:
        await producer.close()
        await legacy.close()
    records = await read_records(kafka.bootstrap, name, 20)
    decoded = sorted(OrderPlaced.model_validate_json(r.value).payload.order_id for r in records)
    assert decoded == list(range(20))
    [legacy_record] = await read_records(kafka.bootstrap, legacy_name, 1)
    assert legacy_record.value == b"{'a': 1}"


async def test_a_publish_that_cannot_be_acknowledged_raises() -> None:
    skip_without_kafka()
    nowhere = f"127.0.0.1:{free_port()}"
    broker = KafkaMessageBroker.from_url(nowhere, timeout=1.0, retry_delay=0.1)
    [message] = order_messages(1, "nowhere")
    with pytest.raises(KafkaPublishError, match=rf"Kafka \({nowhere}\) did not acknowledge"):
        await broker.send_message(message)
    await broker.close()


async def test_subscribing_needs_the_factory_producer_and_legal_names(kafka: Tansu) -> None:
    class Producer4x:
        async def produce(self, topic: str, message: Any, headers: Any = None) -> None:
            return None

    with pytest.raises(TypeError, match=r"kafka_producer_factory\(dsn\)"):
        await KafkaMessageBroker(Producer4x()).subscribe("orders")
    async with broker_for(kafka) as broker:
        with pytest.raises(ValueError, match="'bad topic' is not a legal Kafka topic name"):
            await broker.subscribe("bad topic")
        with pytest.raises(ValueError, match=r"the retry topic 'orders\.retry\.a b'"):
            await broker.subscribe("orders", group_id="a b")
        with pytest.raises(ValueError, match="prefetch must be at least 1"):
            await broker.subscribe("orders", prefetch=0)
    with pytest.raises(ValueError, match="consumer_options may not set 'enable_auto_commit'"):
        KafkaMessageBroker(Producer4x(), consumer_options={"enable_auto_commit": True})
