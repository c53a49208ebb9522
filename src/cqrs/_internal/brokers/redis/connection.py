"""The redis-py client of the broker, which failures are worth a retry, and the backoff.

The broker retries by itself (with the backoff below, up to a deadline), so a client it
creates does not retry on its own. A client passed in keeps its own retry settings, under the
broker's.
"""

from __future__ import annotations

import asyncio
import random
import urllib.parse
from typing import Any, cast

from cqrs._internal._optional import require

with require("redis", extra="redis", feature="cqrs.message_brokers.redis"):
    import redis.asyncio
    import redis.asyncio.retry
    import redis.backoff
    import redis.exceptions

__all__ = [
    "FIRST_DELAY",
    "MAX_DELAY",
    "Backoff",
    "check_client",
    "client_url",
    "is_no_group",
    "make_client",
    "retryable",
    "without_password",
]

FIRST_DELAY, MAX_DELAY = 0.05, 2.0

_RETRYABLE: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,  # BusyLoadingError too: Redis is loading its data
    redis.exceptions.TimeoutError,
    OSError,
)
_FATAL: tuple[type[BaseException], ...] = (
    redis.exceptions.AuthenticationError,
    redis.exceptions.AuthorizationError,
)


def retryable(exc: BaseException) -> bool:
    """Whether ``exc`` is a connection failure or a timeout that waiting may cure (a wrong
    password is not one)."""
    return isinstance(exc, _RETRYABLE) and not isinstance(exc, _FATAL)


def is_no_group(exc: BaseException) -> bool:
    """Whether ``exc`` says the stream or its consumer group does not exist (``NOGROUP``, or
    ``UNBLOCKED`` for a read waiting on a key that was deleted): the key was deleted, or
    Redis restarted without persistence."""
    return isinstance(exc, redis.exceptions.ResponseError) and str(exc).startswith(
        ("NOGROUP", "UNBLOCKED")
    )


class Backoff:
    """Delays of 0.05 s doubling up to 2 s, each with jitter (between half and all of it)."""

    __slots__ = ("delay",)

    def __init__(self) -> None:
        self.delay = FIRST_DELAY

    def next(self) -> float:
        """The next delay in seconds."""
        delay = self.delay * (0.5 + random.random() / 2)
        self.delay = min(self.delay * 2, MAX_DELAY)
        return delay

    def reset(self) -> None:
        """Start again from the first delay (after a call got through)."""
        self.delay = FIRST_DELAY

    async def sleep(self, deadline: float | None = None) -> None:
        """Sleep for the next delay, but not past ``deadline`` (loop time)."""
        delay = self.next()
        if deadline is not None:
            delay = min(delay, max(0.0, deadline - asyncio.get_running_loop().time()))
        await asyncio.sleep(delay)


def make_client(url: str, *, socket_timeout: float) -> Any:
    """A ``redis.asyncio.Redis`` for ``url`` that returns bytes and does not retry by itself;
    ``socket_timeout`` and a 5 s connect timeout unless the url sets them. Raises
    ``ValueError`` for a url redis-py cannot read."""
    return cast(Any, redis.asyncio.Redis).from_url(
        url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=5.0,
        retry=redis.asyncio.retry.Retry(redis.backoff.NoBackoff(), 0),
    )


def check_client(client: Any) -> None:
    """Raise ``TypeError`` for a client that is not a ``redis.asyncio.Redis`` or that decodes
    responses (message bodies are bytes and must stay bytes)."""
    if not isinstance(client, redis.asyncio.Redis):
        raise TypeError(
            f"client must be a redis.asyncio.Redis, not {type(client).__name__}; or use "
            "RedisMessageBroker.from_url(url)"
        )
    kwargs: dict[str, Any] = cast(Any, client).connection_pool.connection_kwargs
    if kwargs.get("decode_responses"):
        raise TypeError(
            "the Redis client decodes responses (decode_responses=True), which would turn "
            "message bodies into text; pass a client made without it"
        )


def without_password(url: str) -> str:
    """``url`` without its password and query (which may hold one)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def client_url(client: Any) -> str:
    """Where a given client connects, as a url without credentials."""
    try:
        kwargs: dict[str, Any] = client.connection_pool.connection_kwargs
    except AttributeError:
        return "(a redis client)"
    if kwargs.get("path"):
        return f"unix://{kwargs['path']}"
    host, port, db = kwargs.get("host", "localhost"), kwargs.get("port", 6379), kwargs.get("db", 0)
    return f"redis://{host}:{port}/{db}"
