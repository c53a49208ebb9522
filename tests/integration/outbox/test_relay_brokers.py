"""10,000 outbox rows relayed to a real broker whose connection is cut part-way: zero lost.

The relay reaches the broker through a :class:`~tests.tcp_proxy.TcpProxy`. Two thirds of
the rows are written up front; once the relay produced a third, the proxy cuts every
connection and refuses new ones, and the last third is written then, so the relay has rows
to publish during the outage however far it got (under load it can relay everything before
a slow consumer catches up). Publishes in flight fail (the publishers' confirm timeouts are
shorter than the cut), the relay puts their rows back without counting attempts and pauses,
and resumes once the broker is back. A consumer beside it (not through the proxy) counts
every delivery by message id (the event id). RabbitMQ runs on SQLite, PostgreSQL and
MariaDB; NATS, Redis and the Kafka-protocol broker once each, on SQLite. Delivery is at least
once: duplicates are allowed and reported, losses are not, and no row may be given up.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from cqrs._internal.outbox.relay import OutboxLag, OutboxRelay
from tests.integration.outbox.relay_support import (
    Outbox,
    consume,
    insert_orders,
    nothing_pending,
    outbox,
    status_counts,
)
from tests.sql_support import DATABASES, unique_name
from tests.support import LONG_TEST_TIMEOUT, PATIENCE, free_port, listening, wait_until_async
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.timeout(LONG_TEST_TIMEOUT)

__all__ = ["outbox"]  # the fixture, imported for pytest

EVENTS = 10_000
CUT = 3.0  # seconds the proxy refuses connections
CONFIRM = 1.5  # the publishers' confirm timeout: shorter than the cut, so publishes fail


async def relay_through_a_cut(
    outbox: Outbox,
    broker: Any,
    subscription: Any,
    proxy: TcpProxy,
    topic: str,
    label: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    up_front = EVENTS * 2 // 3
    ids = await insert_orders(outbox.engine, outbox.model, up_front, topic)
    seen: collections.Counter[uuid.UUID] = collections.Counter()
    consuming = asyncio.create_task(consume(subscription, seen))
    relay = OutboxRelay(
        outbox.engine, broker, model=outbox.model, poll_interval=0.05, backoff=lambda a: 0.2
    )
    lag_during: OutboxLag | None = None
    try:
        async with relay:
            await wait_until_async(lambda: relay.totals.produced >= EVENTS // 3, "a third produced")
            produced_before = relay.totals.produced
            cut = proxy.refuse()
            try:
                ids |= await insert_orders(
                    outbox.engine, outbox.model, EVENTS - up_front, topic, start=up_front
                )
                relay.wake()
                await wait_until_async(
                    lambda: relay.totals.deferred > 0, "the relay to notice the outage"
                )
                lag_during = await relay.lag()
                await asyncio.sleep(CUT)
            finally:
                proxy.accept()
            relay.wake()
            await wait_until_async(
                lambda: len(seen) == EVENTS,
                f"all {EVENTS} events consumed",
                within=PATIENCE * 2,
                details=lambda: f"{len(seen)} consumed; relay {relay.totals}",
            )
            await wait_until_async(lambda: nothing_pending(relay), "every row settled")
    finally:
        await subscription.close()
        with contextlib.suppress(asyncio.CancelledError):
            await consuming
    assert consuming.result() == 0  # the consumer does not go through the proxy: no ack lost
    assert cut > 0
    assert lag_during is not None
    assert lag_during.pending > 0
    assert lag_during.given_up == 0
    assert set(seen) == set(ids)  # zero lost
    assert relay.totals.given_up == 0
    assert relay.totals.deferred > 0
    assert await status_counts(outbox.engine, outbox.model) == {"PRODUCED": EVENTS}
    duplicates = sum(seen.values()) - EVENTS
    with capsys.disabled():
        print(
            f"\n{label} on {outbox.kind}: connections cut for {CUT:g} s after {produced_before} "
            f"of {EVENTS} produced: 0 lost, {duplicates} delivered twice (at least once); relay "
            f"{relay.totals.deferred} rows put back in the outage, {relay.totals.retried} "
            f"retried, {relay.totals.lost_leases} lost leases"
        )


# -- RabbitMQ on each database ----------------------------------------------------------------


@pytest.fixture
async def queue() -> AsyncIterator[str]:
    pytest.importorskip("aio_pika", reason="the rabbit extra (aio-pika) is not installed")
    from tests.integration.brokers.conftest import NEEDS_RABBIT, delete_queues, rabbit_reachable

    if not rabbit_reachable():
        pytest.skip(NEEDS_RABBIT)
    name = unique_name("cqrs-relay")
    yield name
    await delete_queues([name])


@pytest.mark.rabbitmq
@pytest.mark.parametrize("outbox", DATABASES, indirect=True)
async def test_rabbitmq_cut_mid_relay_loses_nothing(
    outbox: Outbox, queue: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from cqrs.message_brokers.amqp import AMQPMessageBroker
    from tests.integration.brokers.conftest import RABBIT_PORT, RABBIT_URL

    async with TcpProxy(RABBIT_PORT) as proxy:
        publisher = AMQPMessageBroker.from_url(
            proxy.url("amqp", "/").replace("amqp://", "amqp://guest:guest@"),
            "cqrs-test",
            confirm_timeout=CONFIRM,
        )
        consumer_side = AMQPMessageBroker.from_url(RABBIT_URL, "cqrs-test")
        async with publisher, consumer_side:
            subscription = await consumer_side.subscribe(queue, prefetch=200)
            await relay_through_a_cut(
                outbox, publisher, subscription, proxy, queue, "RabbitMQ", capsys
            )


# -- NATS, Redis and Kafka, once each on SQLite ----------------------------------------------


@pytest.mark.nats
@pytest.mark.parametrize("outbox", ["sqlite"], indirect=True)
async def test_nats_cut_mid_relay_loses_nothing(
    outbox: Outbox, capsys: pytest.CaptureFixture[str]
) -> None:
    from cqrs.message_brokers.nats import NatsJetStreamBroker
    from tests.integration.brokers.nats_support import (
        NATS_PORT,
        NATS_URL,
        require_nats,
        stream_janitor,
    )

    require_nats()
    topic = unique_name("orders")
    async with stream_janitor() as streams, TcpProxy(NATS_PORT) as proxy:
        options = streams.options()
        publisher = NatsJetStreamBroker(
            proxy.url("nats", ""), stream=options, confirm_timeout=CONFIRM
        )
        consumer_side = NatsJetStreamBroker(NATS_URL, stream=options)
        async with publisher, consumer_side:
            subscription = await consumer_side.subscribe(topic, prefetch=200)
            await relay_through_a_cut(outbox, publisher, subscription, proxy, topic, "NATS", capsys)


@pytest.mark.redis
@pytest.mark.parametrize("outbox", ["sqlite"], indirect=True)
async def test_redis_cut_mid_relay_loses_nothing(
    outbox: Outbox, capsys: pytest.CaptureFixture[str]
) -> None:
    from cqrs.message_brokers.redis import RedisMessageBroker, StreamOptions
    from tests.integration.brokers.redis_broker_support import REDIS_PORT, REDIS_URL, own_prefix

    topic = unique_name("orders")
    async with own_prefix() as prefix, TcpProxy(REDIS_PORT) as proxy:
        options = StreamOptions(prefix=prefix)
        publisher = RedisMessageBroker.from_url(
            proxy.url("redis", "/0"), options=options, confirm_timeout=CONFIRM
        )
        consumer_side = RedisMessageBroker.from_url(REDIS_URL, options=options)
        async with publisher, consumer_side:
            subscription = await consumer_side.subscribe(topic, prefetch=200)
            await relay_through_a_cut(
                outbox, publisher, subscription, proxy, topic, "Redis", capsys
            )


@pytest.mark.kafka
@pytest.mark.parametrize("outbox", ["sqlite"], indirect=True)
async def test_kafka_cut_mid_relay_loses_nothing(
    outbox: Outbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cqrs.message_brokers.kafka import KafkaMessageBroker
    from tests.integration.brokers.kafka_support import (
        TEST_CONSUMER_OPTIONS,
        Tansu,
        skip_without_kafka,
    )

    skip_without_kafka()
    proxy_port = free_port()
    server = await asyncio.to_thread(Tansu, advertised_port=proxy_port)
    topic = unique_name("orders")
    try:
        async with TcpProxy(server.port, port=proxy_port) as proxy:
            assert listening(proxy_port)
            publisher = KafkaMessageBroker.from_url(server.bootstrap, timeout=CONFIRM)
            consumer_side = KafkaMessageBroker.from_url(
                server.bootstrap, consumer_options=TEST_CONSUMER_OPTIONS, timeout=PATIENCE
            )
            async with publisher, consumer_side:
                subscription = await consumer_side.subscribe(topic, prefetch=200)
                await relay_through_a_cut(
                    outbox, publisher, subscription, proxy, topic, "Kafka (Tansu)", capsys
                )
    finally:
        await asyncio.to_thread(server.stop)
