"""The outbox table as a SQLAlchemy model (4.x layout plus two nullable lease columns).

The columns, types, enum names and unique constraint are 4.x's, so 4.x code reads and writes
the same table. Two nullable columns are ours and 4.x code never sets them:
``claimed_until`` (a relay's lease on the row, or the earliest retry time after a failed
publish) and ``claim_token`` (which relay claim holds it). A table created by 4.x needs them
added before our relay uses it (README: "Outbox", migration).

A user puts the table in their own metadata (and so in Alembic) with :class:`OutboxMixin` on
their declarative base, or moves :class:`OutboxModel` there with :func:`rebind_outbox_model`.
"""

from __future__ import annotations

import datetime
import uuid
from typing import Any

from cqrs._internal._optional import require
from cqrs._internal.outbox.models import MAX_FLUSH_COUNTER_VALUE, EventStatus
from cqrs._internal.sql.types import Binary16, PayloadBinary, UUIDBinary

with require("sqlalchemy", extra="sqlalchemy", feature="cqrs.outbox.sqlalchemy"):
    import sqlalchemy as sa
    from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column

__all__ = [
    "DEFAULT_OUTBOX_TABLE_NAME",
    "MAX_FLUSH_COUNTER_VALUE",
    "Base",
    "BinaryUUID",
    "OutboxMixin",
    "OutboxModel",
    "rebind_outbox_model",
]

DEFAULT_OUTBOX_TABLE_NAME = "outbox"

BinaryUUID = UUIDBinary
"""Deprecated 4.x alias of :class:`~cqrs.sqlalchemy_types.UUIDBinary`."""

_ID_TYPE = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class Base(DeclarativeBase):
    """The declarative base :class:`OutboxModel` is defined on (4.x name)."""


class OutboxMixin:
    """The outbox columns, for a model on the user's own declarative base.

    ``class Outbox(OutboxMixin, MyBase): __tablename__ = "outbox"`` puts the table in
    ``MyBase.metadata``, where ``metadata.create_all`` and Alembic autogenerate see it. The
    unique constraint is named ``event_id_unique_index`` for the default table name and
    ``<table>_event_id_unique_index`` otherwise (PostgreSQL index names are per schema).
    """

    id: Mapped[int] = mapped_column(_ID_TYPE, primary_key=True, autoincrement=True)
    event_id: Mapped[uuid.UUID] = mapped_column(UUIDBinary(), nullable=False)
    event_id_bin: Mapped[bytes] = mapped_column(Binary16(), nullable=False)
    event_status: Mapped[EventStatus] = mapped_column(
        sa.Enum(EventStatus), nullable=False, default=EventStatus.NEW
    )
    flush_counter: Mapped[int] = mapped_column(sa.SmallInteger(), nullable=False, default=0)
    event_name: Mapped[str] = mapped_column(sa.String(255), nullable=False)
    topic: Mapped[str] = mapped_column(sa.String(255), nullable=False, default="")
    created_at: Mapped[datetime.datetime] = mapped_column(
        sa.DateTime(), nullable=False, server_default=sa.func.now()
    )
    payload: Mapped[bytes] = mapped_column(PayloadBinary(), nullable=False)
    claimed_until: Mapped[datetime.datetime | None] = mapped_column(
        sa.DateTime(), nullable=True, default=None
    )
    claim_token: Mapped[str | None] = mapped_column(sa.String(36), nullable=True, default=None)

    @declared_attr.directive
    @classmethod
    def __table_args__(cls) -> tuple[Any, ...]:
        name: str = getattr(cls, "__tablename__", DEFAULT_OUTBOX_TABLE_NAME)
        prefix = "" if name == DEFAULT_OUTBOX_TABLE_NAME else f"{name}_"
        return (
            sa.UniqueConstraint(
                "event_id_bin", "event_name", name=f"{prefix}event_id_unique_index"
            ),
            sa.Index(f"{name}_pending_index", "event_status", "id"),
        )

    def row_to_dict(self) -> dict[str, Any]:
        """The row's column values by column name (4.x helper)."""
        mapper = sa.inspect(type(self), raiseerr=True)
        return {column.name: getattr(self, key) for key, column in mapper.columns.items()}


class OutboxModel(OutboxMixin, Base):
    """The default outbox table, ``outbox``, on this module's :class:`Base` (4.x layout)."""

    __tablename__ = DEFAULT_OUTBOX_TABLE_NAME


def rebind_outbox_model(
    model: type[OutboxMixin], new_base: type[Any], table_name: str | None = None
) -> type[OutboxMixin]:
    """A copy of the outbox model on ``new_base`` (so in its metadata), optionally renamed.

    4.x moved the class in place through private SQLAlchemy API; here the original stays as it
    is and the returned class is the one to use (pass it as ``model=`` to the repository and
    the relay). ``new_base`` must be a SQLAlchemy declarative base; a table of that name already
    in its metadata raises ``ValueError`` naming it.
    """
    metadata: sa.MetaData | None = getattr(new_base, "metadata", None)
    if not isinstance(metadata, sa.MetaData) or getattr(new_base, "registry", None) is None:
        raise TypeError(
            "rebind_outbox_model needs a SQLAlchemy declarative base as new_base "
            f"(a DeclarativeBase subclass or declarative_base()), got {new_base!r}"
        )
    name = table_name or getattr(model, "__tablename__", DEFAULT_OUTBOX_TABLE_NAME)
    if name in metadata.tables:
        raise ValueError(
            f"table {name!r} is already in {new_base.__name__}.metadata; "
            "pass another table_name or use the model already defined there"
        )
    return type(model.__name__, (OutboxMixin, new_base), {"__tablename__": name})
