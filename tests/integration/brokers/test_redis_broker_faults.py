"""The Redis broker under faults, counted at the end: a consumer process killed mid-batch,
Redis killed and restarted mid-way (with persistence: nothing lost; without: exactly what is
documented is lost), and connections cut mid-way.

Restarts use a ``redis-server`` of the test alone on a free port (started, killed with
SIGKILL, started again and checked to answer PING; always stopped at the end), so the
shared Redis on 6379 is never touched; the connection-cut test goes through
``tests/tcp_proxy.py`` to the shared one. Delivery is at least once: duplicates are
allowed and reported, losses are not (except, in the test that says so, what a Redis
without persistence loses by design).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import pytest
import redis.asyncio
import redis.exceptions

from cqrs.consumers import Backoff, EventConsumer
from cqrs.message_brokers.redis import RedisDelivery, RedisMessageBroker, StreamOptions
from tests.integration.brokers.redis_broker_support import (
    REDIS_PORT,
    REDIS_URL,
    consumer_process,
    own_prefix,
)
from tests.integration.brokers.support import OrderPlaced, Recorder, mediator_for, order_messages
from tests.support import (
    LONG_TEST_TIMEOUT,
    PATIENCE,
    RedisServer,
    private_redis_server,
    wait_until_async,
)
from tests.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.redis, pytest.mark.timeout(LONG_TEST_TIMEOUT)]

EVENTS = 10_000
WINDOW = 200  # publishes in flight at once
BACKLOG = 1000  # messages published ahead of the consumer at most (the faults hit both)
TOPIC = "orders"


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    async with own_prefix() as unique:
        yield unique


@pytest.fixture
def persistent_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server with ``--appendonly yes --appendfsync always``."""
    yield from private_redis_server(tmp_path, persistent=True)


@pytest.fixture
def volatile_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server without persistence, as the shared one."""
    yield from private_redis_server(tmp_path, persistent=False)


async def restart(server: RedisServer) -> None:
    """SIGKILL the server, then start it again in any case and wait until it answers."""
    try:
        await asyncio.to_thread(server.kill)
    finally:
        await asyncio.to_thread(server.start)


class Attempts:
    """Wraps a subscription to record the attempt of every delivery it hands out."""

    def __init__(self, subscription: Any) -> None:
        self.subscription = subscription
        self.topic = subscription.topic
        self.prefetch = subscription.prefetch
        self.seen: list[int] = []

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> RedisDelivery:
        delivery: RedisDelivery = await anext(self.subscription)
        self.seen.append(delivery.attempt)
        return delivery

    async def close(self) -> None:
        await self.subscription.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


async def stored_and_pending(url: str, key: str) -> tuple[int, int]:
    """How many entries the stream holds, and how many its group has not acknowledged."""
    client: Any = redis.asyncio.Redis.from_url(url)
    try:
        return await client.xlen(key), (await client.xpending(key, "cqrs"))["pending"]
    finally:
        await client.aclose()


async def keys_in(url: str) -> int:
    client: Any = redis.asyncio.Redis.from_url(url)
    try:
        return int(await client.dbsize())
    finally:
        await client.aclose()


async def publish_all(
    broker: RedisMessageBroker, messages: list[Any], paced_by: Recorder | None = None
) -> None:
    """Publish ``WINDOW`` messages at a time; with ``paced_by``, stay at most ``BACKLOG``
    messages ahead of what it handled, so publishing lasts as long as consuming."""
    for start in range(0, len(messages), WINDOW):
        if paced_by is not None:
            await wait_until_async(
                lambda start=start: len(paced_by.handled) >= start - BACKLOG,
                f"the consumer within {BACKLOG} of message {start}",
            )
        await asyncio.gather(*(broker.send_message(m) for m in messages[start : start + WINDOW]))


# --- a consumer process dies --------------------------------------------------------------


async def test_a_consumer_process_killed_mid_batch_loses_nothing(
    prefix: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The process handles orders 0..399, then hangs on the next PREFETCH deliveries; it is
    SIGKILLed holding them unacknowledged. A consumer started afterwards takes them over
    (XAUTOCLAIM after claim_idle, attempt 2) and handles the rest."""
    events, hold_at, prefetch = 600, 400, 25
    topic = prefix + TOPIC  # the process uses the default options (no prefix)
    log = tmp_path / "handled.log"
    client: Any = redis.asyncio.Redis.from_url(REDIS_URL)
    options = StreamOptions(claim_idle=1.0)
    try:
        async with RedisMessageBroker.from_url(REDIS_URL, options=options) as broker:
            await publish_all(broker, order_messages(events, topic))
            process = consumer_process(REDIS_URL, topic, log, hold_at, prefetch)
            try:

                async def holding() -> bool:
                    if process.poll() is not None:
                        raise AssertionError(f"the consumer process exited: {process.stderr}")
                    lines = log.read_text().split() if log.exists() else []
                    held = (await client.xpending(topic, "cqrs"))["pending"]
                    return len(lines) == hold_at and held == prefetch

                await wait_until_async(
                    holding,
                    f"{hold_at} handled and {prefetch} held",
                    retry_on=(redis.exceptions.ResponseError,),  # no group yet
                )
                [dead] = await client.xinfo_consumers(topic, "cqrs")
                assert dead["pending"] == prefetch
            finally:
                process.send_signal(signal.SIGKILL)
                process.wait(PATIENCE)
                assert process.stderr is not None
                process.stderr.close()
            by_process = [int(line) for line in log.read_text().split()]

            recorder = Recorder()
            subscription = Attempts(await broker.subscribe(topic, prefetch=prefetch))
            consumer = EventConsumer(subscription, mediator_for(recorder), OrderPlaced)
            running = asyncio.create_task(consumer.run())
            try:
                await wait_until_async(
                    lambda: len(recorder.handled) == events - hold_at,
                    f"the other {events - hold_at} orders handled",
                    details=lambda: f"{len(recorder.handled)} handled, {consumer.stats}",
                )
            finally:
                await consumer.stop()
                await running
            left = (await client.xpending(topic, "cqrs"))["pending"]
    finally:
        await client.aclose()
    assert sorted(by_process) == list(range(hold_at))  # each once, before the kill
    assert set(recorder.handled) == set(range(hold_at, events))  # zero lost
    duplicates = sum(recorder.handled.values()) + len(by_process) - events
    assert duplicates == 0  # none was handled and left unacknowledged by the dead process
    assert sorted(subscription.seen) == [1] * (events - hold_at - prefetch) + [2] * prefetch
    assert left == 0
    with capsys.disabled():
        print(
            f"\nconsumer process SIGKILLed holding {prefetch} unacked: 0 lost, "
            f"{duplicates} duplicates, {prefetch} taken over at attempt 2"
        )


# --- Redis restarts -----------------------------------------------------------------------


async def test_a_persistent_redis_killed_and_restarted_mid_way_loses_no_event(
    persistent_server: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """10,000 events published and consumed while Redis (``--appendonly yes
    --appendfsync always``) is SIGKILLed and started again: zero lost, and the stream holds
    each event exactly once although publishes were retried across the restart."""
    server = persistent_server
    messages = order_messages(EVENTS, TOPIC)
    recorder = Recorder()
    options = StreamOptions(maxlen=None)
    publisher = RedisMessageBroker.from_url(server.url, options=options, confirm_timeout=PATIENCE)
    consumer_side = RedisMessageBroker.from_url(
        server.url, options=options, confirm_timeout=PATIENCE
    )
    async with publisher, consumer_side:
        consumer = EventConsumer(
            await consumer_side.subscribe(TOPIC, prefetch=50),
            mediator_for(recorder),
            OrderPlaced,
            backoff=Backoff(initial=0.05),
        )
        consuming = asyncio.create_task(consumer.run())
        publishing = asyncio.create_task(publish_all(publisher, messages, recorder))
        try:
            await wait_until_async(
                lambda: len(recorder.handled) >= EVENTS // 3, "a third of the events handled"
            )
            handled_before = len(recorder.handled)
            await restart(server)
            async with asyncio.timeout(PATIENCE * 2):
                await publishing
            await wait_until_async(
                lambda: len(recorder.handled) == EVENTS,
                f"all {EVENTS} events handled",
                within=PATIENCE * 2,
                details=lambda: f"{len(recorder.handled)} handled, stats {consumer.stats}",
            )
        finally:
            publishing.cancel()
            await consumer.stop(grace=PATIENCE)
            await asyncio.gather(consuming, publishing, return_exceptions=True)
        retried, found = publisher.publisher.retried, publisher.publisher.found_stored
    stored, left = await stored_and_pending(server.url, TOPIC)
    assert server.starts == 2
    assert publisher.persistence == "aof always"
    assert retried > 0  # the restart hit publishing too
    assert set(recorder.handled) == set(range(EVENTS))  # zero lost
    assert stored == EVENTS  # no publish stored twice
    assert left == 0  # every message acknowledged in the end
    assert consumer.stats.dead_lettered == 0
    duplicates = sum(recorder.handled.values()) - EVENTS
    with capsys.disabled():
        print(
            f"\nRedis (AOF, fsync always) SIGKILLed after {handled_before} of {EVENTS} handled: "
            f"0 lost, {duplicates} handled twice or more (at least once); {retried} publishes "
            f"retried, {found} of them already stored (not added again); "
            f"{consumer.stats.settle_failures} settlements refused"
        )


async def test_what_a_restart_of_redis_without_persistence_loses(
    volatile_server: RedisServer,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Redis without persistence (the shared one's settings) keeps nothing across a
    restart: the streams, their consumer groups and their pending lists are gone. Exactly
    the messages no consumer had fetched yet are lost; what a subscription had already
    fetched is still handled; the subscription creates its group again and goes on."""
    server = volatile_server
    gate = asyncio.Event()

    async def hold_at_40(event: Any, call: int) -> None:
        if event.payload.order_id == 40:
            await gate.wait()

    recorder = Recorder(hold_at_40)
    async with RedisMessageBroker.from_url(server.url, confirm_timeout=PATIENCE) as broker:
        await publish_all(broker, order_messages(100, TOPIC))
        subscription = await broker.subscribe(TOPIC, prefetch=10)
        consumer = EventConsumer(subscription, mediator_for(recorder), OrderPlaced, concurrency=1)
        running = asyncio.create_task(consumer.run())
        try:
            # Orders 0..39 handled; 40 in its handler; 41.. (at most 49) in the buffer.
            await wait_until_async(lambda: recorder.started == 41, "order 40 in its handler")
            await restart(server)
            assert await keys_in(server.url) == 0  # the stream and its group are gone
            gate.set()
            await wait_until_async(lambda: subscription.groups_recreated == 1, "a new group")
            later = order_messages(120, TOPIC)[100:]
            await publish_all(broker, later)
            await wait_until_async(
                lambda: set(range(100, 120)) <= set(recorder.handled),
                "the 20 published after the restart (after those fetched before it)",
                details=lambda: f"{sorted(recorder.handled)} handled, stats {consumer.stats}",
            )
        finally:
            gate.set()
            await consumer.stop(grace=PATIENCE)
            await running
    assert broker.persistence == "none"
    [warning] = [
        r.getMessage() for r in caplog.records if "keeps nothing on disk" in r.getMessage()
    ]
    assert "a restart loses every stream, consumer group and pending message" in warning
    # The reader had fetched orders 41.. up to at most 49 (prefetch 10) when Redis went
    # away; exactly those fetched are handled, the ones after them lost.
    fetched = len([order for order in recorder.handled if order < 100])
    assert 41 <= fetched <= 50
    assert set(recorder.handled) == set(range(fetched)) | set(range(100, 120))
    lost = set(range(100)) - set(recorder.handled)
    assert lost == set(range(fetched, 100))  # stored in Redis, not fetched yet: lost
    assert sum(recorder.handled.values()) == fetched + 20  # no duplicates
    with capsys.disabled():
        print(
            f"\nRedis without persistence restarted: {len(lost)} stored but unfetched "
            f"messages lost (by design); {fetched - 40} already fetched were handled; the "
            "group was created again and 20 later messages consumed"
        )


# --- connections cut ------------------------------------------------------------------------


async def test_connections_cut_mid_way_lose_no_event(
    prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """10,000 events published and consumed through a TCP proxy that cuts every
    connection three times: zero lost, each stored once."""
    messages = order_messages(EVENTS, TOPIC)
    recorder = Recorder()
    options = StreamOptions(prefix=prefix, maxlen=None)
    cuts = 0
    async with TcpProxy(REDIS_PORT) as proxy:
        publisher = RedisMessageBroker.from_url(
            proxy.url(), options=options, confirm_timeout=PATIENCE
        )
        consumer_side = RedisMessageBroker.from_url(
            proxy.url(), options=options, confirm_timeout=PATIENCE
        )
        async with publisher, consumer_side:
            consumer = EventConsumer(
                await consumer_side.subscribe(TOPIC, prefetch=50),
                mediator_for(recorder),
                OrderPlaced,
                backoff=Backoff(initial=0.05),
            )
            consuming = asyncio.create_task(consumer.run())
            publishing = asyncio.create_task(publish_all(publisher, messages, recorder))
            try:
                for quarter in (1, 2, 3):
                    await wait_until_async(
                        lambda q=quarter: len(recorder.handled) >= EVENTS * q // 4,
                        f"{quarter} quarter(s) of the events handled",
                    )
                    cuts += proxy.drop_all()
                async with asyncio.timeout(PATIENCE * 2):
                    await publishing
                await wait_until_async(
                    lambda: len(recorder.handled) == EVENTS,
                    f"all {EVENTS} events handled",
                    within=PATIENCE * 2,
                    details=lambda: f"{len(recorder.handled)} handled, stats {consumer.stats}",
                )
            finally:
                publishing.cancel()
                await consumer.stop(grace=PATIENCE)
                await asyncio.gather(consuming, publishing, return_exceptions=True)
            retried, found = publisher.publisher.retried, publisher.publisher.found_stored
    stored, left = await stored_and_pending(REDIS_URL, prefix + TOPIC)
    assert cuts >= 3
    assert retried > 0  # the cuts hit publishing too
    assert set(recorder.handled) == set(range(EVENTS))  # zero lost
    assert stored == EVENTS  # no publish stored twice
    assert left == 0
    duplicates = sum(recorder.handled.values()) - EVENTS
    with capsys.disabled():
        print(
            f"\nRedis connections cut 3 times ({cuts} connections): 0 lost, {duplicates} "
            f"handled twice or more; {retried} publishes retried, {found} already stored; "
            f"{consumer.stats.settle_failures} settlements refused"
        )
