"""check_message_broker on the in-memory broker, and on brokers broken on purpose: the suite
must pass a correct broker and name the fault of each broken one."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from cqrs._internal.brokers.memory import MemoryDelivery, MemorySubscription
from cqrs.message_brokers import Message
from cqrs.testing import ConformanceError, InMemoryMessageBroker, check_message_broker

ALL_CHECKS = [
    "round trip",
    "requeue",
    "dead letter",
    "redelivery after close",
    "prefetch",
    "lifecycle",
]


async def test_in_memory_broker_passes_every_check() -> None:
    tasks_before = len(asyncio.all_tasks())
    report = await check_message_broker(InMemoryMessageBroker)
    assert report.passed == ALL_CHECKS
    assert len(report.topics) == 2 * len(ALL_CHECKS)  # each topic and its dead-letter topic
    assert len(asyncio.all_tasks()) == tasks_before


async def test_an_async_factory_is_awaited() -> None:
    async def factory() -> InMemoryMessageBroker:
        await asyncio.sleep(0)
        return InMemoryMessageBroker()

    assert (await check_message_broker(factory)).passed == ALL_CHECKS


# --- brokers broken on purpose ------------------------------------------------------------


class ForgetfulAttempts(MemoryDelivery):
    @property
    def attempt(self) -> int:
        return 1


class ReversingBroker(InMemoryMessageBroker):
    """Delivers the newest message first."""

    def enqueue(self, message: Message) -> None:
        super().enqueue(message)
        entries = self._topic(message.topic).entries  # pyright: ignore[reportPrivateUsage]
        entries.rotate(1)


class DroppingDeadLetters(InMemoryMessageBroker):
    def enqueue(self, message: Message) -> None:
        if not message.topic.endswith(".dead-letter"):
            super().enqueue(message)


class LosingOnClose(MemorySubscription):
    async def close(self) -> None:
        self._unsettled.clear()  # pyright: ignore[reportPrivateUsage]
        await super().close()


class GreedyPrefetch(MemorySubscription):
    @property
    def prefetch(self) -> int:
        return 1000

    async def __anext__(self) -> MemoryDelivery:
        self._prefetch = 1000  # pyright: ignore[reportPrivateUsage]
        return await super().__anext__()


class ReopeningBroker(InMemoryMessageBroker):
    async def send_message(self, message: Message) -> None:
        if self.state.value == "closed":
            self.messages.append(message)
            return
        await super().send_message(message)


def with_subscription(cls: type[MemorySubscription]) -> Callable[[], InMemoryMessageBroker]:
    class Broker(InMemoryMessageBroker):
        async def subscribe(self, topic: str, *, prefetch: int = 10) -> MemorySubscription:
            await self._ensure_open("subscribe")
            subscription = cls(self, self._topic(topic), prefetch)  # pyright: ignore[reportPrivateUsage]
            self._subscriptions.add(subscription)  # pyright: ignore[reportPrivateUsage]
            return subscription

    return Broker


def with_delivery(cls: type[MemoryDelivery]) -> Callable[[], InMemoryMessageBroker]:
    class Subscription(MemorySubscription):
        async def __anext__(self) -> MemoryDelivery:
            delivery = await super().__anext__()
            return cls(self, delivery._entry)  # pyright: ignore[reportPrivateUsage]

    return with_subscription(Subscription)


@pytest.mark.parametrize(
    ("factory", "failed_check", "says"),
    [
        (with_delivery(ForgetfulAttempts), "requeue", "has attempt 1"),
        (ReversingBroker, "round trip", "order or ids differ"),
        (DroppingDeadLetters, "dead letter", "nothing happened within"),
        (with_subscription(LosingOnClose), "redelivery after close", "nothing happened"),
        (with_subscription(GreedyPrefetch), "prefetch", "third delivery arrived"),
        (ReopeningBroker, "lifecycle", "publishing on a closed broker did not raise"),
    ],
    ids=["attempts", "order", "dead-letters", "close-loses", "prefetch", "closed-publish"],
)
async def test_a_broken_broker_fails_the_check_that_covers_its_fault(
    factory: Callable[[], Any], failed_check: str, says: str
) -> None:
    with pytest.raises(ConformanceError, match=f"check '{failed_check}' failed: .*{says}"):
        await check_message_broker(factory, patience=1.0)
