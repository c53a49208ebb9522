"""The in-memory brokers and Message.to_dict (the devnull broker: test_devnull.py)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from cqrs.message_brokers import Message
from cqrs.testing import CallbackMessageBroker, InMemoryMessageBroker
from tests.support import PATIENCE


def message(topic: str = "t", name: str = "N") -> Message:
    return Message(message_name=name, topic=topic, payload={"a": 1})


async def test_in_memory_broker_records_filters_and_clears() -> None:
    broker = InMemoryMessageBroker()
    await broker.send_message(message("orders", "Placed"))
    await broker.send_message(message("users", "Created"))
    assert [m.message_name for m in broker.published(topic="orders")] == ["Placed"]
    assert [m.topic for m in broker.published(name="Created")] == ["users"]
    broker.clear()
    assert broker.messages == []


async def test_in_memory_broker_outage_raises_and_records_nothing() -> None:
    broker = InMemoryMessageBroker()
    broker.fail_with = ConnectionError("down")
    with pytest.raises(ConnectionError):
        await broker.send_message(message())
    assert broker.messages == []


async def test_wait_for_wakes_when_enough_messages_arrived() -> None:
    broker = InMemoryMessageBroker()

    async def publish_later() -> None:
        await broker.send_message(message())
        await broker.send_message(message())

    task = asyncio.create_task(publish_later())  # first runs after wait_for is waiting
    async with asyncio.timeout(PATIENCE):
        assert len(await broker.wait_for(2)) == 2
    await task


async def test_callback_broker_accepts_sync_and_async_callbacks() -> None:
    seen: list[str] = []

    async def async_cb(m: Message) -> None:
        seen.append(f"async {m.message_name}")

    await CallbackMessageBroker(lambda m: seen.append(f"sync {m.message_name}")).send_message(
        message(name="A")
    )
    await CallbackMessageBroker(async_cb).send_message(message(name="B"))
    assert seen == ["sync A", "async B"]


def test_message_to_dict_has_the_4x_shape() -> None:
    mid = uuid.uuid4()
    m = Message(message_name="N", topic="t", payload={"x": 1}, message_id=mid)
    assert m.to_dict() == {
        "messageName": "N",
        "topic": "t",
        "payload": {"x": 1},
        "messageId": mid.hex,
    }
    encoded = Message(
        message_name="N",
        topic="t",
        payload={},
        message_id=mid,
        payload_bytes=b"\x01",
        content_type="application/x-protobuf",
        headers={"event_name": "N"},
    ).to_dict()
    assert encoded["payload_bytes"] == "AQ=="
    assert encoded["payload_bytes_encoding"] == "base64"
    assert encoded["content_type"] == "application/x-protobuf"
