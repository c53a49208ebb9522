"""Shared by the Redis broker tests: where Redis is, a private ``redis-server`` to kill and
restart, key cleanup, and a consumer process to SIGKILL.

Run as a program (``python -m tests.integration.brokers.redis_broker_support URL TOPIC LOG
HOLD_AT PREFETCH``) it consumes ``TOPIC`` into an ``EventMediator`` whose handler appends
each order id it handled to ``LOG`` (one line, flushed) and hangs, without returning, on
every order from ``HOLD_AT`` on: the process then holds ``PREFETCH`` unacknowledged
deliveries until it is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio

from tests.support import listening

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
REDIS_URL = f"redis://{REDIS_HOST}:{REDIS_PORT}/0"
NEEDS_REDIS = f"no Redis server reachable on {REDIS_HOST}:{REDIS_PORT}"
ROOT = Path(__file__).resolve().parents[3]


def redis_reachable() -> bool:
    return listening(REDIS_PORT, REDIS_HOST)


def unique_prefix() -> str:
    """A key prefix of one test alone (its keys are deleted afterwards)."""
    return f"cqrs-test-{uuid.uuid4().hex[:10]}:"


@contextlib.asynccontextmanager
async def own_prefix() -> AsyncIterator[str]:
    """A key prefix of one test alone, its keys deleted on exit; skips the test when no
    Redis is reachable on 127.0.0.1:6379."""
    if not redis_reachable():
        pytest.skip(NEEDS_REDIS)
    prefix = unique_prefix()
    try:
        yield prefix
    finally:
        await delete_keys(REDIS_URL, prefix)


async def delete_keys(url: str, prefix: str) -> None:
    """Delete every key starting with ``prefix``."""
    client: Any = redis.asyncio.Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def consumer_process(url: str, topic: str, log: Path, hold_at: int, prefetch: int) -> Any:
    """Start this module as a consumer process (see the module docstring)."""
    return subprocess.Popen(
        [sys.executable, "-W", "error", "-m", "tests.integration.brokers.redis_broker_support",
         url, topic, str(log), str(hold_at), str(prefetch)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip


async def _consume(url: str, topic: str, log: Path, hold_at: int, prefetch: int) -> None:
    from cqrs.consumers import EventConsumer
    from cqrs.message_brokers.redis import RedisMessageBroker
    from tests.integration.brokers.support import OrderPlaced, Recorder, mediator_for

    hang = asyncio.Event()  # never set

    async def behaviour(event: Any, call: int) -> None:
        if event.payload.order_id >= hold_at:
            await hang.wait()

    class LoggingRecorder(Recorder):
        async def handle(self, event: Any) -> None:
            await super().handle(event)
            out.write(f"{event.payload.order_id}\n")
            out.flush()

    with log.open("a", encoding="utf-8") as out:
        async with RedisMessageBroker.from_url(url) as broker:
            subscription = await broker.subscribe(topic, prefetch=prefetch)
            recorder = LoggingRecorder(behaviour)
            await EventConsumer(subscription, mediator_for(recorder), OrderPlaced).run()


if __name__ == "__main__":
    _url, _topic, _log, _hold_at, _prefetch = sys.argv[1:]
    asyncio.run(_consume(_url, _topic, Path(_log), int(_hold_at), int(_prefetch)))
