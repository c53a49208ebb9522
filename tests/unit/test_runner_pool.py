"""The runner's worker pool, counted at the end of each test.

* **Random schedules** (200 seeds): stop at any moment, handlers that yield, fail or block,
  a reader made to wait. ``run`` returns, no task is left, never more than ``concurrency``
  handlers run at once, and every message is acked exactly once, dead-lettered, or back on
  the queue (none lost, none acked twice). A second consumer then drains the queue: every
  order is handled, and only those handled but not acked before the stop are handled twice.
* Handlers that wait fill every worker and no more.
* A subscription that fails mid-way ends ``run`` with its error, leaving no task.
* A quiet subscription is read once, not polled, whatever the concurrency.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from typing import Any

import pytest
from pydantic_core import from_json

from cqrs._internal.brokers.memory import MemoryDelivery, MemorySubscription
from cqrs.consumers import Backoff, EventConsumer
from cqrs.testing import InMemoryMessageBroker
from tests.integration.brokers.support import (
    OrderPlaced,
    Overlap,
    Recorder,
    mediator_for,
    order_messages,
)
from tests.support import wait_until_async

MESSAGES = 30
SEEDS = range(200)


class SlowSubscription(MemorySubscription):
    """Makes the reader wait a random number of loop turns before each delivery."""

    rng: random.Random

    async def __anext__(self) -> MemoryDelivery:
        for _ in range(self.rng.randrange(3)):
            await asyncio.sleep(0)
        return await super().__anext__()


async def one_schedule(seed: int) -> None:
    rng = random.Random(seed)
    concurrency = rng.choice([1, 2, 3, 7])
    name = f"orders-{uuid.uuid4().hex[:8]}"
    tasks_before = asyncio.all_tasks()
    async with InMemoryMessageBroker() as broker:
        for message in order_messages(MESSAGES, name):
            await broker.send_message(message)
        gate = asyncio.Event()
        overlap = Overlap()

        async def behaviour(event: Any, call: int) -> None:
            with overlap:
                roll = rng.random()
                if roll < 0.1:
                    raise RuntimeError("handler failed")
                if roll < 0.15:
                    await gate.wait()  # never returns until the grace runs out
                for _ in range(rng.randrange(4)):
                    await asyncio.sleep(0)

        recorder = Recorder(behaviour)
        subscription = await broker.subscribe(name, prefetch=rng.choice([1, 4, 10]))
        subscription.__class__ = SlowSubscription
        assert isinstance(subscription, SlowSubscription)
        subscription.rng = rng
        consumer = EventConsumer(
            subscription,
            mediator_for(recorder),
            OrderPlaced,
            concurrency=concurrency,
            max_attempts=3,
            backoff=Backoff(initial=0.0),
        )
        running = asyncio.create_task(consumer.run())
        for _ in range(rng.randrange(60)):
            await asyncio.sleep(0)
        stopping = asyncio.create_task(consumer.stop(grace=rng.choice([0, 0.001, 0.01])))
        async with asyncio.timeout(30):  # a hang is the failure this test looks for
            await stopping
            await running
        assert overlap.peak <= concurrency
        assert asyncio.all_tasks() - tasks_before == set()
        stats = consumer.stats
        handled_first = sum(recorder.handled.values())
        # a handler that finished as the grace ran out is not acked: its message comes back
        assert stats.acked <= handled_first
        # every message acked once, dead-lettered, or waiting on the queue again
        dead = broker.queued(f"{name}.dead-letter")
        queued = broker.queued(name)
        assert stats.acked + len(dead) + len(queued) == MESSAGES, (seed, stats)
        assert stats.dead_lettered == len(dead)

        gate.set()
        again = Recorder()
        second = EventConsumer(await broker.subscribe(name), mediator_for(again), OrderPlaced)
        draining = asyncio.create_task(second.run())
        await wait_until_async(lambda: not broker.queued(name), "the queue drained")
        await wait_until_async(lambda: second.stats.acked == len(queued), "every ack")
        await second.stop()
        await draining
        done = {order for order, count in recorder.handled.items() if count}
        done |= {order for order, count in again.handled.items() if count}
        dead_orders = {from_json(m.payload)["payload"]["order_id"] for m in dead}
        assert done | dead_orders == set(range(MESSAGES)), seed
        assert all(count == 1 for count in recorder.handled.values()), seed
        twice = sum(again.handled.values()) + handled_first - len(done)
        assert twice == handled_first - stats.acked, seed  # only the unacked come again


@pytest.mark.parametrize("block", [SEEDS[:100], SEEDS[100:]], ids=["seeds 0-99", "seeds 100-199"])
async def test_random_schedules_never_hang_lose_or_ack_twice(block: range) -> None:
    for seed in block:
        await one_schedule(seed)


async def test_handlers_that_wait_fill_every_worker_and_no_more() -> None:
    """With handlers that wait (I/O), the reader hands on its turn: all ``concurrency``
    workers get a message, never one more, and every message is handled once."""
    name = f"orders-{uuid.uuid4().hex[:8]}"
    async with InMemoryMessageBroker() as broker:
        for message in order_messages(200, name):
            await broker.send_message(message)
        gate = asyncio.Event()
        overlap = Overlap()

        async def waits(event: Any, call: int) -> None:
            with overlap:
                await gate.wait()

        recorder = Recorder(waits)
        consumer = EventConsumer(
            await broker.subscribe(name, prefetch=100),
            mediator_for(recorder),
            OrderPlaced,
            concurrency=50,
        )
        running = asyncio.create_task(consumer.run())
        await wait_until_async(lambda: recorder.started == 50, "50 handlers waiting")
        for _ in range(20):  # loop turns in which a 51st would start
            await asyncio.sleep(0)
        assert recorder.started == 50
        gate.set()
        await wait_until_async(lambda: consumer.stats.acked == 200, "200 acks")
        await consumer.stop()
        await running
    assert overlap.peak == 50
    assert recorder.handled == dict.fromkeys(range(200), 1)


class FailingSubscription(MemorySubscription):
    """Hands out ``good`` deliveries, then fails as a subscription whose broker refused a
    read for good (the key is not a stream, the permissions changed)."""

    good = 0

    async def __anext__(self) -> MemoryDelivery:
        if self.good == 0:
            raise PermissionError("the broker refused the read")
        self.good -= 1
        return await super().__anext__()


async def test_a_subscription_that_fails_ends_run_with_its_error_and_no_task_left() -> None:
    """The workers handling messages when the read fails are cancelled (their messages stay
    unsettled, back on the queue); ``run`` raises the subscription's error, closes the
    subscription and leaves no task behind."""
    name = f"orders-{uuid.uuid4().hex[:8]}"
    tasks_before = asyncio.all_tasks()
    async with InMemoryMessageBroker() as broker:
        for message in order_messages(20, name):
            await broker.send_message(message)
        gate = asyncio.Event()

        async def waits(event: Any, call: int) -> None:
            if event.payload.order_id >= 3:
                await gate.wait()

        recorder = Recorder(waits)
        subscription = await broker.subscribe(name, prefetch=10)
        subscription.__class__ = FailingSubscription
        assert isinstance(subscription, FailingSubscription)
        subscription.good = 6
        consumer = EventConsumer(subscription, mediator_for(recorder), OrderPlaced, concurrency=4)
        with pytest.raises(PermissionError, match="refused the read"):
            async with asyncio.timeout(30):
                await consumer.run()
        assert subscription.closed
        assert consumer.stats.acked == 3  # orders 0-2; 3-5 were cut short, unsettled
        assert recorder.finished_cleanup == 6
        assert len(broker.queued(name)) == 17
    assert asyncio.all_tasks() - tasks_before == set()


class CountingSubscription(MemorySubscription):
    """Counts the reads the runner makes."""

    reads = 0

    async def __anext__(self) -> MemoryDelivery:
        self.reads += 1
        return await super().__anext__()


async def test_a_quiet_subscription_is_read_once_not_polled() -> None:
    """With nothing to read, one worker waits in the subscription and the rest wait for
    their turn: no worker spins, whatever the concurrency; the first message after the quiet
    spell is handled, and the reads are one per message plus the one waiting."""
    name = f"orders-{uuid.uuid4().hex[:8]}"
    async with InMemoryMessageBroker() as broker:
        subscription = await broker.subscribe(name, prefetch=20)
        subscription.__class__ = CountingSubscription
        assert isinstance(subscription, CountingSubscription)
        recorder = Recorder()
        consumer = EventConsumer(subscription, mediator_for(recorder), OrderPlaced, concurrency=20)
        running = asyncio.create_task(consumer.run())
        for _ in range(100):
            await asyncio.sleep(0)
        await asyncio.sleep(0.2)
        assert subscription.reads == 1
        for message in order_messages(3, name):
            await broker.send_message(message)
        await wait_until_async(lambda: consumer.stats.acked == 3, "3 acks")
        for _ in range(100):
            await asyncio.sleep(0)
        assert subscription.reads == 4  # three messages, and the read waiting for a fourth
        await consumer.stop()
        await running
    assert recorder.handled == dict.fromkeys(range(3), 1)
