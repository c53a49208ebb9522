"""How a Redis client or url is shown in errors and logs: never with its password.

Shared by the Redis broker (``brokers/redis/``) and the Redis replay buffer (``sse/``), which
may not import each other.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

__all__ = ["client_url", "without_password"]


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
    """Where a given client connects, as a url without credentials; ``"(a redis client)"``
    for an object without a redis-py connection pool."""
    try:
        kwargs: dict[str, Any] = client.connection_pool.connection_kwargs
    except AttributeError:
        return "(a redis client)"
    if kwargs.get("path"):
        return f"unix://{kwargs['path']}"
    host, port, db = kwargs.get("host", "localhost"), kwargs.get("port", 6379), kwargs.get("db", 0)
    return f"redis://{host}:{port}/{db}"
