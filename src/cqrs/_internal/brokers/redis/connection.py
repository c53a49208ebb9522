"""The redis-py client of the broker and which failures are worth a retry.

The broker retries by itself (with ``cqrs._internal.backoff.Backoff``, up to a deadline), so
a client it creates does not retry on its own. A client passed in keeps its own retry
settings, under the broker's.
"""

from __future__ import annotations

from typing import Any, cast

from cqrs._internal._optional import require

with require("redis", extra="redis", feature="cqrs.message_brokers.redis"):
    import redis.asyncio
    import redis.asyncio.retry
    import redis.backoff
    import redis.exceptions

__all__ = [
    "check_client",
    "is_no_group",
    "make_client",
    "retryable",
]

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
