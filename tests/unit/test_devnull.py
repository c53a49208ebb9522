"""The devnull broker and ``devnull.MESSAGE_BUS``: what 4.x code reads, bounded."""

from __future__ import annotations

import collections.abc
from collections.abc import Iterator

import pytest

import cqrs
from cqrs._internal.brokers.devnull import MESSAGE_BUS_LIMIT, MessageLog, received_messages
from cqrs.message_brokers import Message, devnull
from tests.support import Ping, make_mediator


@pytest.fixture(autouse=True)
def empty_bus() -> Iterator[None]:
    """The record is shared by every devnull broker of the process: start and end empty."""
    received_messages.clear()
    yield
    received_messages.clear()


def message(n: int) -> Message:
    return Message(message_name=f"N{n}", topic="t", payload={"n": n})


def bus() -> MessageLog:
    with pytest.warns(DeprecationWarning, match="InMemoryMessageBroker"):
        return devnull.MESSAGE_BUS


async def test_two_brokers_record_into_one_message_bus() -> None:
    await devnull.DevnullMessageBroker().send_message(message(1))
    await devnull.DevnullMessageBroker().send_message(message(2))
    assert len(bus()) == 2
    assert [m.message_name for m in bus()] == ["N1", "N2"]


async def test_message_bus_keeps_only_the_latest_ten_thousand() -> None:
    broker = devnull.DevnullMessageBroker()
    for n in range(MESSAGE_BUS_LIMIT + 5):
        await broker.send_message(message(n))
    recorded = bus()
    assert MESSAGE_BUS_LIMIT == 10_000
    assert len(recorded) == 10_000
    assert recorded[0].payload == {"n": 5}  # the five oldest were dropped
    assert recorded[-1].payload == {"n": 10_004}
    assert [m.payload["n"] for m in recorded] == list(range(5, 10_005))  # each once, in order


def test_reading_message_bus_warns_and_points_to_the_in_memory_broker() -> None:
    with pytest.warns(DeprecationWarning, match=r"cqrs\.message_brokers\.devnull\.MESSAGE_BUS"):
        first = devnull.MESSAGE_BUS
    with pytest.warns(DeprecationWarning, match="last 10,000 messages"):
        from cqrs.message_brokers.devnull import MESSAGE_BUS
    assert MESSAGE_BUS is first is received_messages


async def test_message_bus_reads_like_the_4x_list() -> None:
    assert bus() == []
    first, second = message(1), message(2)
    broker = devnull.DevnullMessageBroker()
    await broker.send_message(first)
    await broker.send_message(second)
    recorded = bus()
    assert recorded == [first, second]
    assert recorded != [first]
    assert recorded[-2:] == [first, second]
    assert isinstance(recorded[-2:], list)
    assert isinstance(recorded, collections.abc.MutableSequence)
    recorded.clear()
    assert bus() == []


async def test_notifications_sent_through_a_mediator_land_in_message_bus() -> None:
    class Payload(cqrs.Response):
        n: int

    class Notify(cqrs.RequestHandler[Ping, None]):
        @property
        def events(self) -> list[cqrs.Event]:
            return [
                cqrs.NotificationEvent[Payload](event_name="A", payload=Payload(n=1)),
                cqrs.NotificationEvent[Payload](event_name="B", payload=Payload(n=2)),
            ]

        async def handle(self, request: Ping) -> None:
            return None

    mediator = make_mediator({Ping: Notify}, message_broker=devnull.DevnullMessageBroker())
    await mediator.send(Ping())
    recorded = bus()
    assert len(recorded) == 2
    assert sorted(m.payload["event_name"] for m in recorded) == ["A", "B"]
