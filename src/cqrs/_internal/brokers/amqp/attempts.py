"""Attempt counts of RabbitMQ messages, exact on classic and quorum queues alike.

RabbitMQ counts deliveries itself only on a quorum queue (``x-delivery-count``); a classic
queue only says whether a message was delivered before (``redelivered``), so a message
returned with ``basic.nack`` looks like attempt 2 for ever. A retry on a classic queue
therefore publishes a copy carrying the attempts made so far in :data:`ATTEMPTS_HEADER`
and acks the original; :func:`attempt_of` adds that header to the copy's own delivery
number.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["ATTEMPTS_HEADER", "DELIVERY_COUNT_HEADER", "attempt_of", "copied_headers"]

ATTEMPTS_HEADER = "x-cqrs-attempts"
"""Header of a retried copy: how many attempts were made before it was published."""

DELIVERY_COUNT_HEADER = "x-delivery-count"
"""RabbitMQ's delivery count on a quorum queue (0 on the first delivery)."""


def attempt_of(headers: Mapping[str, Any] | None, redelivered: bool | None) -> int:
    """The attempt a delivery is: 1 for the first, 2 for the second, and so on.

    The attempts made before the copy was published (:data:`ATTEMPTS_HEADER`, 0 for an
    original) plus this copy's delivery number as RabbitMQ counts it:
    ``x-delivery-count + 1`` on a quorum queue, else 2 when redelivered and 1 when not.
    """
    headers = headers or {}
    count = headers.get(DELIVERY_COUNT_HEADER)
    delivery = count + 1 if isinstance(count, int) else 2 if redelivered else 1
    return _count(headers.get(ATTEMPTS_HEADER)) + delivery


def copied_headers(headers: Mapping[str, Any] | None) -> dict[str, Any]:
    """The headers for a copy (retry or dead letter): all but the counts."""
    copied: dict[str, Any] = dict(headers or {})
    copied.pop(DELIVERY_COUNT_HEADER, None)
    copied.pop(ATTEMPTS_HEADER, None)
    return copied


def _count(value: object) -> int:
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return max(0, value)
    if isinstance(value, bytes | str):
        text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
        return int(text) if text.isdigit() else 0
    return 0
