"""Fixtures of the inbox tests on RabbitMQ: the skip when it is absent, and the removal of
every queue a test declared (the broker tests' helpers)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.integration.brokers.conftest import QueueJanitor, delete_queues, rabbit_reachable


@pytest.fixture
async def queues() -> AsyncIterator[QueueJanitor]:
    """Skip when RabbitMQ (or aio-pika) is absent; delete the queues added, at the end."""
    pytest.importorskip("aio_pika", reason="the rabbit extra (aio-pika) is not installed")
    if not rabbit_reachable():
        pytest.skip("no RabbitMQ server reachable on 127.0.0.1:5672")
    found = QueueJanitor()
    yield found
    await delete_queues(sorted(found.names))
