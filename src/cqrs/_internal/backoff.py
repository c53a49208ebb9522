"""Jittered exponential backoff for reconnecting loops.

Shared by the Redis broker (``brokers/redis/``) and the Redis replay buffer (``sse/``), which
may not import each other.
"""

from __future__ import annotations

import asyncio
import random

__all__ = ["Backoff"]


class Backoff:
    """Delays starting at ``first`` seconds (0.05 s) and doubling up to ``maximum`` (2 s),
    each with jitter: between half and all of it. Raises ``ValueError`` for a ``first`` that
    is not positive or a ``maximum`` below it."""

    __slots__ = ("delay", "first", "maximum")

    def __init__(self, first: float = 0.05, maximum: float = 2.0) -> None:
        if not 0 < first <= maximum:
            raise ValueError(
                f"backoff needs 0 < first <= maximum, got first={first!r}, maximum={maximum!r}"
            )
        self.first = first
        self.maximum = maximum
        self.delay = first

    def next(self) -> float:
        """The next delay in seconds."""
        delay = self.delay * (0.5 + random.random() / 2)
        self.delay = min(self.delay * 2, self.maximum)
        return delay

    def reset(self) -> None:
        """Start again from the first delay (after a call got through)."""
        self.delay = self.first

    async def sleep(self, deadline: float | None = None) -> None:
        """Sleep for the next delay, but not past ``deadline`` (loop time)."""
        delay = self.next()
        if deadline is not None:
            delay = min(delay, max(0.0, deadline - asyncio.get_running_loop().time()))
        await asyncio.sleep(delay)
