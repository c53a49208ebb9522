"""Connection and channel pools (the 4.x ``cqrs.adapters.amqp`` factories).

Connections are aio-pika *robust* connections: after a network failure or a broker restart
they reconnect by themselves every ``reconnect_interval`` seconds (1 s here; aio-pika's
default is 5 s) and restore their channels, exchanges, queues and consumers.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from cqrs._internal._optional import require

with require("aio-pika", extra="rabbit", feature="cqrs.adapters.amqp"):
    import aio_pika
    from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractRobustConnection
    from aio_pika.pool import Pool

__all__ = [
    "RECONNECT_INTERVAL",
    "channel_pool_factory",
    "connection_pool_factory",
    "make_pools",
]

RECONNECT_INTERVAL = 1.0
"""Seconds between reconnection attempts of a robust connection."""


async def connection_pool_factory(url: str) -> AbstractRobustConnection:
    """A robust connection to ``url`` (4.x: the item factory of the connection pool).

    Raises aio-pika's connection errors (``AMQPConnectionError``, ``OSError``) when the
    first connection attempt fails.
    """
    return await aio_pika.connect_robust(url, reconnect_interval=RECONNECT_INTERVAL)


async def channel_pool_factory(connection_pool: Pool[AbstractConnection]) -> AbstractChannel:
    """A new channel with publisher confirms on a connection of ``connection_pool`` (4.x:
    the item factory of the channel pool). Unroutable messages make the publish raise."""
    async with connection_pool.acquire() as connection:
        return await connection.channel(publisher_confirms=True, on_return_raises=True)


def make_pools(
    url: str, max_connection_pool_size: int = 2, max_channel_pool_size: int = 10
) -> tuple[Pool[Any], Pool[Any]]:
    """The connection pool and the channel pool of ``url``; nothing connects until first use.

    Raises ``ValueError`` for a pool size below 1.
    """
    for name, size in (
        ("max_connection_pool_size", max_connection_pool_size),
        ("max_channel_pool_size", max_channel_pool_size),
    ):
        if size < 1:
            raise ValueError(f"{name} must be at least 1, got {size}")
    connections: Pool[Any] = Pool(
        partial(connection_pool_factory, url), max_size=max_connection_pool_size
    )
    channels: Pool[Any] = Pool(
        partial(channel_pool_factory, connections), max_size=max_channel_pool_size
    )
    return connections, channels
