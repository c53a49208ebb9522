"""How often a quiet subscription asks its broker for messages: counted, not just seen.

A subscription with nothing to read must wait on the server (a blocking read, a long poll,
a pull request that expires), not spin: each broker's polling call is counted over
:data:`QUIET` seconds of an empty topic, on the real server, and must stay under the bound
its settings give (plus the start-up), yet happen (the subscription is alive). A Redis
subscription whose server refuses connections backs off instead of retrying in a loop.
Waits can only run late on a loaded machine, so the upper bounds hold there too.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from tests.support import LONG_TEST_TIMEOUT

pytestmark = pytest.mark.timeout(LONG_TEST_TIMEOUT)

QUIET = 4.0
"""Seconds each subscription is watched with nothing to read."""


def count_calls(owner: Any, name: str) -> Callable[[], int]:
    """Replace the method ``name`` of the object ``owner`` by a counting wrapper; return a
    function that reads the count."""
    original = getattr(owner, name)
    calls = 0

    def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return original(*args, **kwargs)

    setattr(owner, name, counting)
    return lambda: calls


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A key prefix of this test alone (its keys deleted afterwards); skips without Redis."""
    from tests.integration.brokers.redis_broker_support import own_prefix

    async with own_prefix() as prefix:
        yield prefix


@pytest.mark.redis
async def test_a_quiet_redis_subscription_blocks_on_the_server(redis_prefix: str) -> None:
    from cqrs._internal.brokers.redis.consumer import block_seconds
    from cqrs.message_brokers.redis import RedisMessageBroker, StreamOptions
    from tests.integration.brokers.redis_broker_support import REDIS_URL

    options = StreamOptions(prefix=redis_prefix, claim_idle=3.0)
    async with RedisMessageBroker.from_url(REDIS_URL, options=options) as broker:
        reads = count_calls(broker.client, "xreadgroup")
        subscription = await broker.subscribe("quiet")
        await asyncio.sleep(QUIET)
        counted = reads()
        await subscription.close()
    block = block_seconds(options)  # 1 s: claim_idle / 3
    assert 1 <= counted <= QUIET / block + 2, counted


@pytest.mark.redis
async def test_a_redis_subscription_backs_off_while_the_server_refuses(redis_prefix: str) -> None:
    from cqrs.message_brokers.redis import RedisMessageBroker, StreamOptions
    from tests.integration.brokers.redis_broker_support import REDIS_PORT
    from tests.tcp_proxy import TcpProxy

    async with TcpProxy(REDIS_PORT) as proxy:
        options = StreamOptions(prefix=redis_prefix)
        async with RedisMessageBroker.from_url(proxy.url(), options=options) as broker:
            subscription = await broker.subscribe("refused")
            reads = count_calls(broker.client, "xreadgroup")
            claims = count_calls(subscription, "_claim")
            proxy.refuse()
            await asyncio.sleep(QUIET)
            attempts = reads() + claims()
            proxy.accept()
            await subscription.close()
    # Backoff doubles from 0.05 s up to 2 s: 0.05 + 0.1 + ... reaches 4 s in about 7 tries
    # (jitter makes each wait half to all of it, so a few more). A loop would make
    # thousands.
    assert 1 <= attempts <= 20, attempts


@pytest.mark.nats
async def test_a_quiet_nats_subscription_keeps_one_pull_request() -> None:
    from cqrs._internal.brokers.nats.consumer import PULL_EXPIRES
    from cqrs.message_brokers.nats import NatsJetStreamBroker
    from tests.integration.brokers.nats_support import NATS_URL, require_nats, stream_janitor

    require_nats()
    async with (
        stream_janitor() as streams,
        NatsJetStreamBroker(NATS_URL, stream=streams.options()) as broker,
    ):
        subscription: Any = await broker.subscribe(f"quiet-{uuid.uuid4().hex[:8]}")
        pulls = count_calls(subscription, "_pull")
        await asyncio.sleep(QUIET)
        counted = pulls()
        await subscription.close()
    # One pull request (made at start, or just after it) serves the whole QUIET span (shorter
    # than PULL_EXPIRES): JetStream's idle heartbeats keep it alive, nothing pulls again.
    assert QUIET < PULL_EXPIRES
    assert counted <= 1, counted


@pytest.mark.kafka
async def test_a_quiet_kafka_subscription_long_polls() -> None:
    from cqrs._internal.brokers.kafka.consumer import FETCH_WAIT_MS
    from cqrs.message_brokers.kafka import KafkaMessageBroker
    from tests.integration.brokers.kafka_support import (
        TEST_CONSUMER_OPTIONS,
        Tansu,
        skip_without_kafka,
    )

    skip_without_kafka()
    server = await asyncio.to_thread(Tansu)
    try:
        broker = KafkaMessageBroker.from_url(
            server.bootstrap, consumer_options=TEST_CONSUMER_OPTIONS
        )
        async with broker:
            subscription: Any = await broker.subscribe(f"quiet-{uuid.uuid4().hex[:8]}")
            fetches = count_calls(subscription._consumer, "getmany")
            await asyncio.sleep(QUIET)
            counted = fetches()
            await subscription.close()
    finally:
        await asyncio.to_thread(server.stop)
    assert 1 <= counted <= QUIET / (FETCH_WAIT_MS / 1000) + 2, counted
