"""RabbitMQ restarted while 10,000 events are published and consumed: nothing is lost.

The server is stopped with ``rabbitmqctl stop_app`` once the consumer is part-way through,
and started again at once (always, in a ``finally``), so the outage lasts a few seconds;
the test then waits until it answers. Publishers retry unconfirmed messages and consumers
reconnect, so delivery is at least once: duplicates are allowed and reported, losses are not.
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid

import pytest

from cqrs.consumers import Backoff, EventConsumer
from cqrs.message_brokers.amqp import AMQPMessageBroker
from tests.integration.brokers.conftest import RABBIT_URL, QueueJanitor, rabbit_reachable
from tests.integration.brokers.support import OrderPlaced, Recorder, mediator_for, order_messages
from tests.support import LONG_TEST_TIMEOUT, PATIENCE, wait_until, wait_until_async

pytestmark = [pytest.mark.rabbitmq, pytest.mark.timeout(LONG_TEST_TIMEOUT)]

EVENTS = 10_000
WINDOW = 200  # publishes in flight at once


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=PATIENCE)


def rabbit_answers() -> bool:
    if not rabbit_reachable():
        return False
    done = subprocess.run(
        ["rabbitmqctl", "await_startup"], capture_output=True, timeout=PATIENCE, check=False
    )
    return done.returncode == 0


async def restart_rabbitmq() -> None:
    """stop_app, then start_app in any case, then wait until the server answers again."""
    try:
        await asyncio.to_thread(rabbitmqctl, "stop_app")
    finally:
        await asyncio.to_thread(rabbitmqctl, "start_app")
        await asyncio.to_thread(wait_until, rabbit_answers, "RabbitMQ to answer after start_app")


@pytest.fixture
def rabbitmqctl_available(rabbit_up: None) -> None:
    done = subprocess.run(
        ["rabbitmqctl", "status"], capture_output=True, timeout=PATIENCE, check=False
    )
    if done.returncode != 0:
        pytest.skip("rabbitmqctl cannot control the local RabbitMQ (needed to restart it)")


async def test_a_rabbitmq_restart_mid_way_loses_no_event(
    janitor: QueueJanitor, rabbitmqctl_available: None, capsys: pytest.CaptureFixture[str]
) -> None:
    name = f"cqrs-fault-{uuid.uuid4().hex[:10]}"
    janitor.add(name)
    messages = order_messages(EVENTS, name)
    recorder = Recorder()
    publisher = AMQPMessageBroker.from_url(RABBIT_URL, "cqrs-test", confirm_timeout=PATIENCE)
    consumer_side = AMQPMessageBroker.from_url(RABBIT_URL, "cqrs-test", confirm_timeout=PATIENCE)

    async def publish_all() -> None:
        for start in range(0, EVENTS, WINDOW):
            window = messages[start : start + WINDOW]
            await asyncio.gather(*(publisher.send_message(m) for m in window))

    async with publisher, consumer_side:
        await publisher.send_message(messages[0])  # declares the queue before consuming
        consumer = EventConsumer(
            await consumer_side.subscribe(name, prefetch=50),
            mediator_for(recorder),
            OrderPlaced,
            backoff=Backoff(initial=0.05),
        )
        consuming = asyncio.create_task(consumer.run())
        publishing = asyncio.create_task(publish_all())
        try:
            await wait_until_async(
                lambda: len(recorder.handled) >= EVENTS // 3, "a third of the events handled"
            )
            handled_before = len(recorder.handled)
            await restart_rabbitmq()
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
    assert set(recorder.handled) == set(range(EVENTS))  # zero lost
    duplicates = sum(recorder.handled.values()) - EVENTS
    with capsys.disabled():
        print(
            f"\nRabbitMQ restart after {handled_before} of {EVENTS} handled: 0 lost, "
            f"{duplicates} handled twice or more (at least once), "
            f"{consumer.stats.settle_failures} acks refused by the dead connection"
        )
    assert consumer.stats.dead_lettered == 0
