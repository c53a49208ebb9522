"""Naive UTC times: how the outbox, the relay and the inbox store and compare times."""

from __future__ import annotations

import datetime

__all__ = ["naive_utc", "utc_now"]


def utc_now() -> datetime.datetime:
    """Now in UTC, without a time zone."""
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


def naive_utc(moment: datetime.datetime) -> datetime.datetime:
    """``moment`` in UTC without a time zone; a naive ``moment`` is taken as UTC already."""
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(datetime.UTC).replace(tzinfo=None)
