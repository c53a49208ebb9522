"""One ``PublishError`` for every broker: ``except PublishError`` catches each broker's own."""

from __future__ import annotations

import importlib

import pytest

from cqrs.errors import BrokerStateError, CQRSError, DeliverySettledError, PublishError


@pytest.mark.parametrize(
    ("module", "name", "extra"),
    [
        ("cqrs.message_brokers.amqp", "PublishError", "aio_pika"),
        ("cqrs.message_brokers.redis", "RedisPublishError", "redis"),
        ("cqrs.message_brokers.nats", "NatsPublishError", "nats"),
        ("cqrs.message_brokers.kafka", "KafkaPublishError", "aiokafka"),
    ],
)
def test_each_broker_publish_error_is_a_publish_error(module: str, name: str, extra: str) -> None:
    pytest.importorskip(extra)
    error = getattr(importlib.import_module(module), name)
    assert issubclass(error, PublishError)
    with pytest.raises(PublishError):
        raise error("not confirmed")


def test_the_error_tree_keeps_the_builtins_old_code_catches() -> None:
    assert issubclass(PublishError, ConnectionError)
    assert issubclass(PublishError, CQRSError)
    assert issubclass(BrokerStateError, RuntimeError)
    assert issubclass(DeliverySettledError, BrokerStateError)
