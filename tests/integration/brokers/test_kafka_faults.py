"""Kafka under faults, on a tansu broker of each test's own behind a TCP proxy (tansu
advertises the proxy's port, so every connection of every client goes through it).

tansu keeps everything in memory, so a restart would lose every topic: the broker is not
restarted, its connections are cut instead (``TcpProxy.blip``). A consumer *process* is
killed with SIGKILL mid-batch, as a crash would.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import cqrs
from cqrs._internal.brokers.delivery import DEAD_LETTER_REASON_HEADER, dead_letter_topic
from cqrs.consumers import Backoff, EventConsumer
from cqrs.message_brokers.kafka import KafkaMessageBroker, KafkaPublishError
from tests.integration.brokers.kafka_support import (
    TEST_CONSUMER_OPTIONS,
    Tansu,
    committed_offsets,
    headers_of,
    read_records,
    skip_without_kafka,
)
from tests.integration.brokers.support import OrderPlaced, Recorder, mediator_for, order_messages
from tests.support import LONG_TEST_TIMEOUT, PATIENCE, free_port, wait_until_async
from tests.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(LONG_TEST_TIMEOUT)]

EVENTS = 10_000
WINDOW = 200  # publishes in flight at once
BLIP = 3.0  # seconds every connection is refused
MALFORMED = [
    b"{not json",
    b"[1, 2]",
    b'{"event_name": "Nope", "payload": {}}',
    b'{"event_name": "OrderPlaced", "payload": {"order_id": "x"}}',
    b"",
]
ROOT = Path(cqrs.__file__).resolve().parents[2]


@pytest.fixture
async def proxied() -> AsyncIterator[tuple[Tansu, TcpProxy]]:
    """A tansu of this test's own, reachable only through a proxy."""
    skip_without_kafka()
    proxy_port = free_port()
    server = await asyncio.to_thread(Tansu, advertised_port=proxy_port)
    try:
        async with TcpProxy(server.port, port=proxy_port) as proxy:
            yield server, proxy
    finally:
        await asyncio.to_thread(server.stop)


def topic() -> str:
    return f"cqrs-fault-{uuid.uuid4().hex[:10]}"


async def test_connections_cut_mid_way_lose_no_event(
    proxied: tuple[Tansu, TcpProxy], capsys: pytest.CaptureFixture[str]
) -> None:
    from aiokafka import AIOKafkaProducer

    server, proxy = proxied
    name = topic()
    messages = order_messages(EVENTS, name)
    recorder = Recorder()
    tasks_before = len(asyncio.all_tasks())
    publisher = KafkaMessageBroker.from_url(server.bootstrap, timeout=PATIENCE)
    consumer_side = KafkaMessageBroker.from_url(
        server.bootstrap, consumer_options=TEST_CONSUMER_OPTIONS, timeout=PATIENCE
    )

    async def publish_all() -> None:
        for start in range(0, EVENTS, WINDOW):
            window = messages[start : start + WINDOW]
            await asyncio.gather(*(publisher.send_message(m) for m in window))

    async with publisher, consumer_side:
        raw = AIOKafkaProducer(bootstrap_servers=server.bootstrap, acks="all")
        await raw.start()
        try:
            for body in MALFORMED:
                await raw.send_and_wait(name, body)
        finally:
            await raw.stop()
        subscription = await consumer_side.subscribe(name, prefetch=100)
        consumer = EventConsumer(
            subscription,
            mediator_for(recorder),
            {"OrderPlaced": OrderPlaced},
            backoff=Backoff(initial=0.05),
        )
        consuming = asyncio.create_task(consumer.run())
        publishing = asyncio.create_task(publish_all())
        try:
            await wait_until_async(
                lambda: len(recorder.handled) >= EVENTS // 3, "a third of the events handled"
            )
            handled_before = len(recorder.handled)
            # Every client loses its connections; tansu keeps the group member through it
            # (a real Kafka would evict it past session_timeout_ms: see the rebalance and
            # killed-consumer tests for what happens then).
            cut = await proxy.blip(BLIP)
            async with asyncio.timeout(PATIENCE * 2):
                await publishing
            await wait_until_async(
                lambda: len(recorder.handled) == EVENTS,
                f"all {EVENTS} events handled",
                within=PATIENCE * 2,
                details=lambda: f"{len(recorder.handled)} handled, stats {consumer.stats}",
            )
            await wait_until_async(
                lambda: consumer.stats.dead_lettered >= len(MALFORMED), "malformed dead-lettered"
            )
        finally:
            publishing.cancel()
            await consumer.stop(grace=PATIENCE)
            await asyncio.gather(consuming, publishing, return_exceptions=True)
        letters = await read_records(server.bootstrap, dead_letter_topic(name), len(MALFORMED))
    await wait_until_async(
        lambda: len(asyncio.all_tasks()) == tasks_before, "the clients' tasks to end"
    )
    assert cut > 0
    assert proxy.turned_away > 0  # clients tried to come back while it refused
    assert set(recorder.handled) == set(range(EVENTS))  # zero lost
    duplicates = sum(recorder.handled.values()) - EVENTS
    by_body = Counter(letter.value for letter in letters)
    assert set(by_body) == set(MALFORMED)  # each malformed message dead-lettered...
    reasons = {letter.value: headers_of(letter)[DEAD_LETTER_REASON_HEADER] for letter in letters}
    assert reasons[b"{not json"].startswith(b"undecodable: the body is not JSON")
    assert reasons[b"[1, 2]"] == b"wrong schema: the body is a JSON list, not an object"
    assert reasons[b'{"event_name": "Nope", "payload": {}}'].startswith(b"unknown event name")
    assert reasons[b""].startswith(b"undecodable")
    with capsys.disabled():
        print(
            f"\nKafka connections cut ({cut} connections, {proxy.turned_away} turned away for "
            f"{BLIP:g} s) after {handled_before} of {EVENTS} handled: 0 lost, {duplicates} handled "
            f"twice or more (at least once), {consumer.stats.settle_failures} settlements "
            f"refused, {subscription.revocations} rebalances, {subscription.commit_failures} "
            f"commits failed, {sum(by_body.values()) - len(MALFORMED)} duplicate dead letters"
        )


async def test_a_lost_acknowledgement_is_retried_never_silently_dropped(
    proxied: tuple[Tansu, TcpProxy],
) -> None:
    """The produce request reaches tansu, its answer is lost: the record is sent again (a
    duplicate on the topic, at least once), and send_message returns only then."""
    server, proxy = proxied
    name = topic()
    first, lost = order_messages(2, name)
    async with KafkaMessageBroker.from_url(server.bootstrap, timeout=PATIENCE) as broker:
        await broker.send_message(first)  # metadata known: the next request is the produce
        proxy.lose_next_reply(match=str(lost.message_id).encode())
        await broker.send_message(lost)
        assert proxy.replies_lost == 1
    records = await read_records(server.bootstrap, name, 3)
    ids = Counter(headers_of(r)["x-message-id"].decode() for r in records)
    assert ids == {str(first.message_id): 1, str(lost.message_id): 2}


async def test_a_publish_that_cannot_be_acknowledged_raises_after_its_timeout(
    proxied: tuple[Tansu, TcpProxy],
) -> None:
    server, proxy = proxied
    name = topic()
    first, refused, *batch = order_messages(12, name)
    broker = KafkaMessageBroker.from_url(server.bootstrap, timeout=2.0, retry_delay=0.1)
    async with broker:
        await broker.send_message(first)
        proxy.refuse()
        try:
            with pytest.raises(KafkaPublishError, match="did not acknowledge a record for"):
                await broker.send_message(refused)
            with pytest.raises(KafkaPublishError, match="10 of 10 records were not acknowledged"):
                await broker.send_messages(batch)
        finally:
            proxy.accept()


_CONSUMER_PROCESS = textwrap.dedent(
    """
    import asyncio, sys
    sys.path.insert(0, sys.argv[5])
    from cqrs.consumers import EventConsumer
    from cqrs.message_brokers.kafka import KafkaMessageBroker
    from tests.integration.brokers.support import OrderPlaced, Recorder, mediator_for

    bootstrap, name, group, out = sys.argv[1:5]
    log = open(out, "a", buffering=1)

    async def record(event, call):
        log.write(f"{event.payload.order_id}\\n")
        await asyncio.sleep(0.002)

    async def main():
        broker = KafkaMessageBroker.from_url(
            bootstrap, consumer_options={"session_timeout_ms": 1000, "heartbeat_interval_ms": 200}
        )
        async with broker:
            consumer = EventConsumer(
                await broker.subscribe(name, prefetch=50, group_id=group),
                mediator_for(Recorder(record)),
                OrderPlaced,
            )
            await consumer.run()

    asyncio.run(main())
    """
)


async def test_a_consumer_process_killed_mid_batch_loses_nothing(
    proxied: tuple[Tansu, TcpProxy], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server, _ = proxied
    name, group, events = topic(), "killed", 2_000
    out = tmp_path / "handled.txt"
    out.touch()
    async with KafkaMessageBroker.from_url(server.bootstrap, timeout=PATIENCE) as broker:
        messages = order_messages(events, name)
        for start in range(0, events, WINDOW):
            await asyncio.gather(
                *(broker.send_message(m) for m in messages[start : start + WINDOW])
            )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    process = subprocess.Popen(  # noqa: ASYNC220 (started once, waited for in a thread)
        [
            sys.executable,
            "-c",
            _CONSUMER_PROCESS,
            server.bootstrap,
            name,
            group,
            str(out),
            str(ROOT),
        ],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )

    def lines() -> list[str]:
        return out.read_text().split()

    try:
        await wait_until_async(
            lambda: len(lines()) >= events // 4 or process.poll() is not None,
            "the consumer process to handle a quarter",
        )
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
        process.send_signal(signal.SIGKILL)
        await asyncio.to_thread(process.wait, PATIENCE)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(PATIENCE)
        if process.stderr is not None:
            process.stderr.close()
    by_killed = Counter(int(n) for n in lines())
    committed = await committed_offsets(server.bootstrap, group, name)
    left = events - sum(committed.values())  # every record at or after a committed position
    recorder = Recorder()
    async with KafkaMessageBroker.from_url(
        server.bootstrap, consumer_options=TEST_CONSUMER_OPTIONS, timeout=PATIENCE
    ) as broker:
        consumer = EventConsumer(
            await broker.subscribe(name, prefetch=50, group_id=group),
            mediator_for(recorder),
            OrderPlaced,
        )
        running = asyncio.create_task(consumer.run())
        try:
            await wait_until_async(
                lambda: sum(recorder.handled.values()) >= left,
                f"the second consumer to handle the {left} uncommitted records",
                details=lambda: f"{sum(recorder.handled.values())} handled",
            )
        finally:
            await consumer.stop()
            await running
    assert sum(recorder.handled.values()) == left  # exactly what was not committed, once each
    assert max(recorder.handled.values()) == 1
    assert set(by_killed) | set(recorder.handled) == set(range(events))  # zero lost
    # started (or finished) by the killed one but not committed yet: handled again
    again = set(by_killed) & set(recorder.handled)
    with capsys.disabled():
        print(
            f"\nKafka consumer process killed with {sum(by_killed.values())} of {events} "
            f"handlers started, {sum(committed.values())} committed: 0 lost, {len(again)} "
            "handled again by the next member (at least once)"
        )


async def test_members_joining_and_leaving_under_load_lose_no_event(
    proxied: tuple[Tansu, TcpProxy], capsys: pytest.CaptureFixture[str]
) -> None:
    """10,000 events published steadily; a second member joins when a quarter is handled
    and leaves once it handled some: two rebalances under load, handlers in flight each
    time."""
    server, _ = proxied
    name = topic()
    messages = order_messages(EVENTS, name)
    first, second = Recorder(), Recorder()
    publisher = KafkaMessageBroker.from_url(server.bootstrap, timeout=PATIENCE)
    members = KafkaMessageBroker.from_url(
        server.bootstrap, consumer_options=TEST_CONSUMER_OPTIONS, group_id="shared"
    )

    def handled() -> set[int]:
        return set(first.handled) | set(second.handled)

    async def publish_steadily() -> None:
        for start in range(0, EVENTS, WINDOW):
            await publisher.send_messages(messages[start : start + WINDOW])
            await asyncio.sleep(0.1)  # about 5 s in all: members come and go meanwhile

    async with publisher, members:
        subscription_a = await members.subscribe(name, prefetch=100)
        member_a = EventConsumer(subscription_a, mediator_for(first), OrderPlaced)
        running_a = asyncio.create_task(member_a.run())
        publishing = asyncio.create_task(publish_steadily())
        try:
            await wait_until_async(lambda: len(handled()) >= EVENTS // 4, "a quarter handled")
            member_b = EventConsumer(
                await members.subscribe(name, prefetch=100), mediator_for(second), OrderPlaced
            )
            running_b = asyncio.create_task(member_b.run())
            try:
                await wait_until_async(
                    lambda: len(second.handled) >= 100, "the second member to handle 100"
                )
            finally:
                await member_b.stop()
                await running_b
            await publishing
            await wait_until_async(
                lambda: len(handled()) == EVENTS,
                f"all {EVENTS} handled",
                within=PATIENCE * 2,
                details=lambda: f"{len(handled())} handled",
            )
        finally:
            publishing.cancel()
            await member_a.stop()
            await asyncio.gather(running_a, publishing, return_exceptions=True)
    total = first.handled + second.handled
    assert set(total) == set(range(EVENTS))  # zero lost
    assert subscription_a.revocations >= 2  # B joined, B left
    duplicates = sum(total.values()) - EVENTS
    with capsys.disabled():
        print(
            f"\nKafka member joined and left under load: {subscription_a.revocations} "
            f"rebalances of the first member, {len(second.handled)} handled by the second, "
            f"0 lost, {duplicates} handled twice (at least once), settle failures "
            f"{member_a.stats.settle_failures} + {member_b.stats.settle_failures}"
        )
