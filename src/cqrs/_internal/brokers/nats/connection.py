"""One nats-py connection that reconnects by itself, opened within a deadline.

nats-py reconnects after a network failure or a server restart (here: forever, every
``RECONNECT_WAIT`` seconds), restores its subscriptions and sends what was published
meanwhile from its pending buffer. Its first connection, though, would retry forever too
when the server is down; :func:`connect` bounds it and names the last error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, cast

from cqrs._internal._optional import require

with require("nats-py", extra="nats", feature="cqrs.message_brokers.nats"):
    from nats.aio.client import Client
    from nats.errors import Error as NatsError

__all__ = ["RECONNECT_WAIT", "close_client", "connect"]

logger = logging.getLogger("cqrs.nats")

RECONNECT_WAIT = 0.5
"""Seconds between two reconnection attempts (nats-py's default is 2)."""


async def connect(
    servers: str | Sequence[str],
    *,
    within: float,
    name: str | None,
    options: Mapping[str, Any],
    on_reconnected: Callable[[], Awaitable[None]],
) -> Client:
    """A connected client for ``servers``; raises ``ConnectionError`` naming the last error
    when no server answered within ``within`` seconds. ``options`` go to
    ``nats.aio.client.Client.connect`` (they override ours)."""
    client = Client()
    last_error: list[BaseException] = []

    async def error(exc: Exception) -> None:
        last_error[:] = [exc]
        logger.debug("NATS connection error: %s: %s", type(exc).__name__, exc)

    async def disconnected() -> None:
        if client.is_reconnecting:  # not while the first connection is being made
            logger.warning("Disconnected from NATS; reconnecting.")

    async def reconnected() -> None:
        url = client.connected_url
        logger.warning("Reconnected to NATS at %s.", url.netloc if url else "?")
        await on_reconnected()

    settings: dict[str, Any] = {
        "servers": list(servers) if not isinstance(servers, str) else servers,
        "name": name,
        "allow_reconnect": True,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": RECONNECT_WAIT,
        "connect_timeout": max(1, min(int(within), 5)),
        "error_cb": error,
        "disconnected_cb": disconnected,
        "reconnected_cb": reconnected,
        **options,
    }
    try:
        async with asyncio.timeout(within):
            await client.connect(**settings)
    except TimeoutError:
        await _close_quietly(client)
        cause = last_error[0] if last_error else None
        detail = f" (last error: {type(cause).__name__}: {cause})" if cause else ""
        raise ConnectionError(
            f"Could not connect to NATS at {settings['servers']} within {within:g} s{detail}."
        ) from cause
    except BaseException:
        await _close_quietly(client)
        raise
    return client


async def _close_quietly(client: Client) -> None:
    try:
        await asyncio.shield(client.close())
    except Exception as exc:  # a client that never connected has little to close
        logger.debug("closing an unconnected NATS client failed: %s", exc)


async def close_client(client: Client) -> None:
    """Close ``client`` for good, also while it is reconnecting.

    nats-py's ``close`` stops half-way when its last flush fails (closed while reconnecting,
    with messages buffered): it has then cancelled its own tasks but not those of its
    subscriptions, nor closed its socket; this finishes that. What was buffered is lost: the
    server delivers unsettled messages again after ``ack_wait``.
    """
    try:
        await client.close()
        return
    except (NatsError, OSError) as exc:
        logger.debug("closing the NATS connection failed half-way: %s", exc)
    internals: Any = client
    leftovers: list[asyncio.Task[None]] = []
    for subscription in list(getattr(internals, "_subs", {}).values()):
        task = getattr(subscription, "_wait_for_msgs_task", None)
        if isinstance(task, asyncio.Task) and not task.done():
            task.cancel()
            leftovers.append(cast("asyncio.Task[None]", task))
    getattr(internals, "_subs", {}).clear()
    transport = getattr(internals, "_transport", None)
    if transport is not None:
        transport.close()
    await asyncio.gather(*leftovers, return_exceptions=True)
