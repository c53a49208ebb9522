"""10,000 outbox rows relayed to RabbitMQ while the server is restarted (``rabbitmqctl
stop_app`` / ``start_app``) once a third was consumed: zero lost, none given up, every row
``PRODUCED``; duplicates are allowed (at least once) and reported. SQLite, the embedded
default; the connection-cut tests of ``test_relay_brokers.py`` cover the other databases."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import uuid

import pytest

from cqrs._internal.outbox.relay import OutboxRelay
from tests.integration.brokers.conftest import QueueJanitor, janitor, rabbit_up
from tests.integration.brokers.test_rabbitmq_faults import rabbitmqctl_available, restart_rabbitmq
from tests.integration.outbox.relay_support import (
    Outbox,
    consume,
    insert_orders,
    nothing_pending,
    outbox,
    status_counts,
)
from tests.support import LONG_TEST_TIMEOUT, PATIENCE, wait_until_async

pytestmark = [pytest.mark.rabbitmq, pytest.mark.timeout(LONG_TEST_TIMEOUT)]

__all__ = ["janitor", "outbox", "rabbit_up", "rabbitmqctl_available"]  # fixtures for pytest

EVENTS = 10_000


@pytest.mark.parametrize("outbox", ["sqlite"], indirect=True)
async def test_a_rabbitmq_restart_mid_relay_loses_nothing(
    outbox: Outbox,
    janitor: QueueJanitor,
    rabbitmqctl_available: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from cqrs.message_brokers.amqp import AMQPMessageBroker
    from tests.integration.brokers.conftest import RABBIT_URL

    queue = f"cqrs-relay-restart-{uuid.uuid4().hex[:10]}"
    janitor.add(queue)
    ids = await insert_orders(outbox.engine, outbox.model, EVENTS, queue)
    seen: collections.Counter[uuid.UUID] = collections.Counter()
    publisher = AMQPMessageBroker.from_url(RABBIT_URL, "cqrs-test", confirm_timeout=5.0)
    consumer_side = AMQPMessageBroker.from_url(RABBIT_URL, "cqrs-test")
    async with publisher, consumer_side:
        subscription = await consumer_side.subscribe(queue, prefetch=200)
        consuming = asyncio.create_task(consume(subscription, seen))
        relay = OutboxRelay(
            outbox.engine, publisher, model=outbox.model, poll_interval=0.05, backoff=lambda a: 0.2
        )
        try:
            async with relay:
                await wait_until_async(lambda: len(seen) >= EVENTS // 3, "a third consumed")
                consumed_before = len(seen)
                await restart_rabbitmq()
                relay.wake()
                await wait_until_async(
                    lambda: len(seen) == EVENTS,
                    f"all {EVENTS} events consumed after the restart",
                    within=PATIENCE * 2,
                    details=lambda: f"{len(seen)} consumed; relay {relay.totals}",
                )
                await wait_until_async(
                    lambda: nothing_pending(relay), "every row settled", within=PATIENCE
                )
        finally:
            await subscription.close()
            with contextlib.suppress(asyncio.CancelledError):
                await consuming
    failed_acks = 0 if consuming.cancelled() else consuming.result()
    assert set(seen) == set(ids)  # zero lost
    assert relay.totals.given_up == 0
    assert await status_counts(outbox.engine, outbox.model) == {"PRODUCED": EVENTS}
    duplicates = sum(seen.values()) - EVENTS
    with capsys.disabled():
        print(
            f"\nRabbitMQ restarted after {consumed_before} of {EVENTS} consumed: 0 lost, "
            f"{duplicates} delivered twice ({failed_acks} acks lost with the server); relay "
            f"{relay.totals.deferred} rows put back, {relay.totals.retried} retried"
        )
