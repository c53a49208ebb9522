"""The wire format (event <-> Message), the broker lifecycle's misuse errors, the 4.x
deserializers, and the 4.x module paths of the broker area."""

from __future__ import annotations

import dataclasses
import importlib
import json
import uuid

import pytest

import cqrs
from cqrs._internal.brokers.lifecycle import BrokerState, BrokerStateError
from cqrs._internal.brokers.message import message_for, received_message, wire_body
from cqrs.deserializers import DeserializeJsonError, JsonDeserializer
from cqrs.message_brokers import Message
from cqrs.testing import InMemoryMessageBroker
from tests.integration.brokers.support import OrderPlaced, order_event


def test_the_message_of_an_event_is_the_4x_wire_format_with_the_event_id() -> None:
    event = order_event(5, "orders")
    message = message_for(event)
    assert message.message_id == event.event_id
    assert message.topic == "orders"
    assert message.message_name == type(event).__name__
    assert message.content_type is None
    assert message.headers is None
    body = json.loads(wire_body(message))
    assert body["event_id"] == str(event.event_id)
    assert body["payload"] == {"order_id": 5}
    assert OrderPlaced.from_dict(**body) == event


def test_dataclass_events_keep_their_camel_case_keys() -> None:
    @dataclasses.dataclass(frozen=True)
    class Shipped(cqrs.DCNotificationEvent[dict[str, int]]):
        pass

    event = Shipped(event_name="Shipped", payload={"n": 1}, topic="t")
    body = json.loads(wire_body(message_for(event)))
    assert set(body) == {"eventName", "payload", "eventId", "eventTimestamp", "topic"}


def test_a_received_message_keeps_the_body_and_finds_an_id() -> None:
    wire_id = uuid.uuid4()
    got = received_message(b"{}", topic="t", message_id=str(wire_id), headers={"k": b"v"})
    assert (got.message_id, got.payload_bytes, got.headers) == (wire_id, b"{}", {"k": "v"})
    header_id = uuid.uuid4()
    by_header = received_message(b"{}", topic="t", headers={"message_id": str(header_id)})
    assert by_header.message_id == header_id
    first = received_message(b"same body", topic="t", message_id="not-a-uuid")
    again = received_message(b"same body", topic="t")
    assert first.message_id == again.message_id  # derived from the body, stable


async def test_lifecycle_misuse_says_what_to_do() -> None:
    broker = InMemoryMessageBroker()
    assert broker.state is BrokerState.UNOPENED
    async with broker:
        assert broker.state is BrokerState.OPEN
        with pytest.raises(BrokerStateError, match=r"^Cannot open InMemoryMessageBroker twice"):
            await broker.open()
    assert broker.state is BrokerState.CLOSED
    message = Message(message_name="N", topic="t", payload={})
    with pytest.raises(
        BrokerStateError,
        match=r"^Cannot publish on a closed InMemoryMessageBroker; open a new one\.$",
    ):
        await broker.send_message(message)
    with pytest.raises(BrokerStateError, match=r"^Cannot subscribe on a closed"):
        await broker.subscribe("t")
    with pytest.raises(BrokerStateError, match=r"^Cannot reopen a closed InMemoryMessageBroker"):
        await broker.open()
    await broker.close()  # twice is fine


async def test_a_failed_connect_leaves_the_broker_unopened() -> None:
    class Flaky(InMemoryMessageBroker):
        fails = 1

        async def _connect(self) -> None:
            if Flaky.fails:
                Flaky.fails -= 1
                raise ConnectionError("refused")

    broker = Flaky()
    with pytest.raises(ConnectionError):
        await broker.open()
    assert broker.state is BrokerState.UNOPENED
    await broker.open()
    assert broker.state is BrokerState.OPEN
    await broker.close()


def test_json_deserializer_returns_errors_instead_of_raising() -> None:
    event = order_event(1, "t")
    deserializer = JsonDeserializer(OrderPlaced)
    assert deserializer(wire_body(message_for(event))) == event
    assert deserializer(None) is None
    failed = deserializer(b"[1]")
    assert isinstance(failed, DeserializeJsonError)
    assert failed.error_type is TypeError
    assert failed.message_data == b"[1]"
    with pytest.raises(TypeError, match="has none"):
        JsonDeserializer(int)


FOUR_X_NAMES = {
    "cqrs.adapters.amqp": [
        "AMQPConsumer",
        "AMQPPublisher",
        "amqp_consumer_factory",
        "amqp_publisher_factory",
        "channel_pool_factory",
        "connection_pool_factory",
    ],
    "cqrs.message_brokers.amqp": ["AMQPMessageBroker"],
    "cqrs.deserializers": [
        "Deserializable",
        "JsonDeserializer",
        "DeserializeJsonError",
        "ProtobufDeserializer",
        "DeserializeProtobufError",
    ],
    "cqrs.deserializers.json": ["Deserializable", "JsonDeserializer"],
    "cqrs.deserializers.exceptions": ["DeserializeJsonError", "DeserializeProtobufError"],
    "cqrs.deserializers.protobuf": ["ProtoDeserializable", "ProtobufDeserializer"],
}


@pytest.mark.parametrize("module", sorted(FOUR_X_NAMES))
def test_the_4x_paths_of_the_broker_area_resolve(module: str) -> None:
    if module.endswith("amqp"):
        pytest.importorskip("aio_pika", reason="the rabbit extra (aio-pika) is not installed")
    imported = importlib.import_module(module)
    missing = [n for n in FOUR_X_NAMES[module] if not hasattr(imported, n)]
    assert not missing
