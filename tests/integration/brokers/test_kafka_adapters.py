"""The 4.x Kafka paths without a broker: ``cqrs.message_brokers.kafka`` imports without
aiokafka and takes any 4.x-shaped producer; ``cqrs.adapters.protocol`` describes the adapters
we ship; ``cqrs.adapters.kafka`` says which extra to install."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

import cqrs
from cqrs.adapters import protocol
from cqrs.message_brokers import Message
from cqrs.message_brokers.kafka import KafkaMessageBroker
from tests.integration.brokers.support import order_messages
from tests.support import PATIENCE

SRC = Path(cqrs.__file__).resolve().parents[1]


class Producer4x:
    """A producer written for 4.x: ``produce(topic, message, headers)``, no key."""

    def __init__(self) -> None:
        self.produced: list[tuple[str, Any, dict[str, str] | None]] = []

    async def produce(
        self, topic: str, message: Any, headers: dict[str, str] | None = None
    ) -> None:
        self.produced.append((topic, message, headers))


async def test_a_4x_producer_gets_the_wire_body_and_headers_without_a_key() -> None:
    producer = Producer4x()
    assert isinstance(producer, protocol.KafkaProducer)
    messages = order_messages(3, "orders")
    async with KafkaMessageBroker(producer) as broker:
        for message in messages:
            await broker.send_message(message)
    assert [(t, v) for t, v, _ in producer.produced] == [
        ("orders", m.payload_bytes) for m in messages
    ]
    for (_, _, headers), message in zip(producer.produced, messages, strict=True):
        assert headers == {
            "x-message-id": str(message.message_id),
            "x-message-name": message.message_name,
        }


async def test_a_topic_kafka_refuses_is_refused_before_sending() -> None:
    producer = Producer4x()
    async with KafkaMessageBroker(producer) as broker:
        with pytest.raises(ValueError, match="'no spaces please' is not a legal Kafka topic"):
            await broker.send_message(Message("M", "no spaces please", {}, uuid.uuid4()))
    assert producer.produced == []


def test_the_broker_needs_a_producer() -> None:
    with pytest.raises(TypeError, match=r"async produce\(topic, message, headers\)"):
        KafkaMessageBroker(object())  # pyright: ignore[reportArgumentType]


async def test_our_adapters_have_the_4x_protocol_shapes() -> None:
    pytest.importorskip("aiokafka", reason="the kafka extra (aiokafka) is not installed")
    from cqrs.adapters.kafka import kafka_producer_factory

    assert isinstance(kafka_producer_factory("127.0.0.1:9"), protocol.KafkaProducer)
    assert not isinstance(object(), protocol.KafkaProducer)
    pytest.importorskip("aio_pika", reason="the rabbit extra (aio-pika) is not installed")
    from cqrs.adapters.amqp import amqp_consumer_factory, amqp_publisher_factory

    assert isinstance(amqp_publisher_factory("amqp://127.0.0.1:9/"), protocol.AMQPPublisher)
    assert isinstance(amqp_consumer_factory("amqp://127.0.0.1:9/"), protocol.AMQPConsumer)
    assert not isinstance(Producer4x(), protocol.AMQPPublisher)


_WITHOUT_AIOKAFKA = textwrap.dedent(
    """
    import asyncio, sys
    sys.modules["aiokafka"] = None  # as if the kafka extra were not installed
    import cqrs.adapters.protocol
    from cqrs.message_brokers.kafka import KafkaMessageBroker, KafkaPublishError

    class Producer:
        async def produce(self, topic, message, headers=None):
            print("produced", topic, len(message))

    async def main():
        async with KafkaMessageBroker(Producer()) as broker:
            await broker.send_message(cqrs.message_brokers.Message("M", "t", {"a": 1}))
            try:
                await broker.subscribe("t")
            except TypeError as exc:
                print("subscribe:", type(exc).__name__)
    import cqrs.message_brokers
    asyncio.run(main())
    try:
        import cqrs.adapters.kafka
    except ImportError as exc:
        print(type(exc).__name__, exc)
    """
)


def test_the_broker_module_imports_and_works_without_aiokafka(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = str(SRC)
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", _WITHOUT_AIOKAFKA],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=PATIENCE,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "produced t 7"
    assert lines[1] == "subscribe: TypeError"
    assert lines[2] == (
        "MissingExtraError cqrs.adapters.kafka needs 'aiokafka', which is not installed. "
        "Install it with: pip install 'cqrs-kit[kafka]'"
    )
