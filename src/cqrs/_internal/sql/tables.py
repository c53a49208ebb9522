"""Checks on the models users hand to the outbox relay and the inbox."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cqrs._internal._optional import require

with require("sqlalchemy", extra="sqlalchemy", feature="the SQL outbox and inbox"):
    import sqlalchemy as sa

__all__ = ["table_with_columns"]


def table_with_columns(model: Any, columns: Sequence[str], *, kind: str, build: str) -> sa.Table:
    """The table of the mapped class ``model``, after checking it has ``columns``.

    Raises ``TypeError`` when ``model`` is not a mapped class ("model must be {kind}, got
    ...") or names the columns it lacks and how to build one that has them (``build``).
    """
    table = getattr(model, "__table__", None)
    if not isinstance(table, sa.Table):
        raise TypeError(f"model must be {kind}, got {model!r}")
    missing = [name for name in columns if name not in table.c]
    if missing:
        raise TypeError(
            f"model {model.__name__} (table {table.name!r}) lacks the columns {missing}; {build}"
        )
    return table
