"""Shared by the inbox tests on real databases: a private inbox table and an effects table
per test (the rows a handler writes through ``current_inbox_session()``), and counting them.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase

from cqrs.inbox.sqlalchemy import InboxModel, rebind_inbox_model
from tests.sql_support import drop_tables, unique_name


@dataclass
class Tables:
    """One test's inbox model and effects table (``effects(order_id)``, no unique key, so a
    handler that ran twice shows as two rows)."""

    inbox: Any
    effects: sa.Table
    metadata: sa.MetaData

    @property
    def names(self) -> list[str]:
        return [self.inbox.__table__.name, self.effects.name]

    async def create(self, engine: Any) -> None:
        async with engine.begin() as connection:
            await connection.run_sync(self.metadata.create_all)

    async def drop(self, engine: Any) -> None:
        await drop_tables(engine, self.names)

    async def effect_counts(self, engine: Any) -> collections.Counter[int]:
        """How many effect rows each order has."""
        async with engine.connect() as connection:
            found = await connection.execute(sa.select(self.effects.c.order_id))
            return collections.Counter(found.scalars().all())

    async def inbox_rows(self, engine: Any) -> list[Any]:
        async with engine.connect() as connection:
            return list((await connection.execute(sa.select(self.inbox.__table__))).all())


def make_tables(inbox_name: str | None = None, effects_name: str | None = None) -> Tables:
    """Fresh tables on a fresh declarative base (unique names unless given)."""

    class Base(DeclarativeBase):
        pass

    inbox = rebind_inbox_model(InboxModel, Base, inbox_name or unique_name("inbox"))
    effects = sa.Table(
        effects_name or unique_name("effects"),
        Base.metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("order_id", sa.Integer, nullable=False),
    )
    return Tables(inbox, effects, Base.metadata)
