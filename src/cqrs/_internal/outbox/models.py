"""Outbox values shared by every repository and the relay (no database library here)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from cqrs._internal.messages.events import INotificationEvent

__all__ = ["MAX_FLUSH_COUNTER_VALUE", "EventStatus", "OutboxedEvent", "checked_status"]

MAX_FLUSH_COUNTER_VALUE = 5
"""A row whose publish failed this many times is no longer picked (4.x value)."""


class EventStatus(enum.StrEnum):
    """Where an outbox row stands. SQL tables store the member *names* (``NEW``, ...), as 4.x."""

    NEW = "new"
    PRODUCED = "produced"
    NOT_PRODUCED = "not_produced"


def checked_status(new_status: object) -> EventStatus:
    """``new_status`` as an :class:`EventStatus` (a member or its value); ``ValueError``
    naming the allowed values otherwise."""
    try:
        return EventStatus(new_status)
    except ValueError:
        raise ValueError(
            f"update_status: new_status must be one of {[s.value for s in EventStatus]}, "
            f"got {new_status!r}"
        ) from None


@dataclass(frozen=True)
class OutboxedEvent:
    """One outbox row read back: its id, the decoded event, where it goes and its status.

    ``payload_bytes`` is the stored payload after decompression (what goes on the wire);
    ``content_type`` is the codec's content type for the event, when it declares one.
    """

    id: int
    event: INotificationEvent[Any]
    topic: str
    status: EventStatus
    payload_bytes: bytes | None = None
    content_type: str | None = None
