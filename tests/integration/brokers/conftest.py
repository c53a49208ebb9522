"""Fixtures of the broker tests: the ``rabbitmq`` marker, the skip when RabbitMQ is absent,
and the removal of every queue a test declared."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterable

import pytest

RABBIT_HOST, RABBIT_PORT = "127.0.0.1", 5672
RABBIT_URL = f"amqp://guest:guest@{RABBIT_HOST}:{RABBIT_PORT}/"
NEEDS_RABBIT = f"no RabbitMQ server reachable on {RABBIT_HOST}:{RABBIT_PORT}"


def rabbit_reachable() -> bool:
    try:
        with socket.create_connection((RABBIT_HOST, RABBIT_PORT), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture
def rabbit_up() -> None:
    """Skip the test when nothing listens on 127.0.0.1:5672 (or aio-pika is missing)."""
    pytest.importorskip("aio_pika", reason="the rabbit extra (aio-pika) is not installed")
    if not rabbit_reachable():
        pytest.skip(NEEDS_RABBIT)


async def delete_queues(names: Iterable[str]) -> None:
    """Delete these queues and their dead-letter queues (missing ones are fine)."""
    import aio_pika

    connection = await aio_pika.connect(RABBIT_URL)
    async with connection:
        dead = ".dead-letter"
        for name in {n for given in names for n in (given, given + dead, given + dead + dead)}:
            channel = await connection.channel()
            await channel.queue_delete(name)
            await channel.close()


class QueueJanitor:
    """Collects queue names; the fixture deletes them after the test."""

    def __init__(self) -> None:
        self.names: set[str] = set()

    def add(self, *names: str) -> None:
        self.names.update(names)


@pytest.fixture
async def janitor(rabbit_up: None) -> AsyncIterator[QueueJanitor]:
    found = QueueJanitor()
    yield found
    await delete_queues(sorted(found.names))
