"""How the Redis broker lays out and reads its streams."""

from __future__ import annotations

import dataclasses
import math

__all__ = ["StreamOptions"]


@dataclasses.dataclass(frozen=True)
class StreamOptions:
    """Settings of the streams a :class:`~cqrs.message_brokers.redis.RedisMessageBroker`
    publishes to and reads.

    * ``maxlen``: entries kept per stream, trimmed with ``XADD ... MAXLEN ~`` (Redis drops
      whole internal nodes, so a few more than ``maxlen`` stay). A stream is a log, not a
      queue: acknowledged entries stay until trimmed, and trimming does not look at consumer
      groups, so a group more than ``maxlen`` entries behind loses the oldest ones (the
      subscription counts and logs them). ``None``: never trimmed (memory grows forever).
    * ``group``: the consumer group of subscriptions (one group per consuming service: its
      subscriptions compete for the messages; another group gets its own copy of each).
      A new group starts at the oldest entry the stream still holds.
    * ``claim_idle``: seconds after which a delivered, unsettled message whose consumer
      stopped renewing it (the process died, or was cut off from Redis) is taken over by
      another subscription of the group (``XAUTOCLAIM``). Live subscriptions renew their
      messages every ``claim_idle / 3`` seconds, so slow handlers keep theirs.
    * ``delivery_limit``: a message delivered this many times without ever being settled (a
      handler that kills its process) is moved to the dead-letter stream instead of being
      delivered again; ``None``: no limit.
    * ``prefix``: put before every topic to make the stream key (``prefix + topic``), so
      deployments can share one Redis.

    Raises ``ValueError`` for a setting out of range.
    """

    maxlen: int | None = 100_000
    group: str = "cqrs"
    claim_idle: float = 15.0
    delivery_limit: int | None = 20
    prefix: str = ""

    def __post_init__(self) -> None:
        if self.maxlen is not None and self.maxlen < 1:
            raise ValueError(f"maxlen must be at least 1 or None, got {self.maxlen!r}")
        if not self.group:
            raise ValueError("group must be a non-empty consumer group name")
        if not (math.isfinite(self.claim_idle) and self.claim_idle > 0):
            raise ValueError(
                f"claim_idle must be a positive number of seconds, got {self.claim_idle!r}"
            )
        if self.delivery_limit is not None and self.delivery_limit < 1:
            raise ValueError(
                f"delivery_limit must be at least 1 or None, got {self.delivery_limit!r}"
            )

    def key(self, topic: str) -> str:
        """The stream key of ``topic``."""
        return self.prefix + topic

    @property
    def claim_idle_ms(self) -> int:
        """``claim_idle`` in whole milliseconds (at least 1)."""
        return max(1, math.ceil(self.claim_idle * 1000))
