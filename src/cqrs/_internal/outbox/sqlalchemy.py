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
import logging
import uuid
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from cqrs._internal._optional import require
from cqrs._internal.clock import naive_utc, utc_now
from cqrs._internal.errors import ConfigurationError
from cqrs._internal.generics import describe_type
from cqrs._internal.messages.events import INotificationEvent
from cqrs._internal.outbox.map import OutboxedEventMap, resolve_event
from cqrs._internal.outbox.models import (
    MAX_FLUSH_COUNTER_VALUE,
    EventStatus,
    OutboxedEvent,
    checked_status,
)
from cqrs._internal.outbox.repository import OutboxedEventRepository
from cqrs._internal.serialization.compress import Compressor
from cqrs._internal.serialization.json import EventCodec, JsonEventSerializer
from cqrs._internal.sql.types import Binary16, PayloadBinary, UUIDBinary

with require("sqlalchemy", extra="sqlalchemy", feature="cqrs.outbox.sqlalchemy"):
    import sqlalchemy as sa
    from sqlalchemy.dialects import mysql
    from sqlalchemy.ext.asyncio import AsyncSession
    from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column

__all__ = [
    "DEFAULT_OUTBOX_TABLE_NAME",
    "MAX_FLUSH_COUNTER_VALUE",
    "Base",
    "BinaryUUID",
    "OutboxMixin",
    "OutboxModel",
    "SqlAlchemyOutboxedEventRepository",
    "default_retry_delay",
    "rebind_outbox_model",
    "utc_now",
]

logger = logging.getLogger("cqrs.outbox")

DEFAULT_OUTBOX_TABLE_NAME = "outbox"

BinaryUUID = UUIDBinary
"""Deprecated 4.x alias of :class:`~cqrs.sqlalchemy_types.UUIDBinary`."""

_ID_TYPE = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# MariaDB/MySQL DATETIME keeps whole seconds unless told otherwise; leases need better.
_LEASE_TIME_TYPE = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


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
    # A server default (NULL) makes the ORM leave them out of an INSERT that does not set them,
    # so ``add`` also writes to a 4.x table that has not been migrated yet.
    claimed_until: Mapped[datetime.datetime | None] = mapped_column(
        _LEASE_TIME_TYPE, nullable=True, server_default=sa.text("NULL")
    )
    claim_token: Mapped[str | None] = mapped_column(
        sa.String(36), nullable=True, server_default=sa.text("NULL")
    )

    # Not fetched back after an INSERT (they would be NULL), which a 4.x table lacks anyway.
    __mapper_args__: ClassVar[dict[str, Any]] = {"eager_defaults": False}

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
    class_name = model.__name__ if name == DEFAULT_OUTBOX_TABLE_NAME else f"{model.__name__}_{name}"
    return type(class_name, (OutboxMixin, new_base), {"__tablename__": name})


# -- the repository ----------------------------------------------------------------------------

RetryDelay = Callable[[int], float]
"""Seconds to wait before the next try of a row that failed ``n`` times (``n`` >= 1)."""

_PENDING = (EventStatus.NEW, EventStatus.NOT_PRODUCED)


def default_retry_delay(failures: int) -> float:
    """1, 2, 4, 8, ... seconds after the 1st, 2nd, 3rd, 4th... failure, at most 60."""
    return float(min(2 ** (failures - 1), 60))


def _supports_skip_locked(dialect: sa.Dialect) -> bool:
    """``FOR UPDATE SKIP LOCKED``: PostgreSQL 9.5+, MariaDB 10.6+, MySQL 8.0.1+."""
    version: tuple[Any, ...] = tuple(getattr(dialect, "server_version_info", None) or ())
    if dialect.name == "postgresql":
        return not version or version >= (9, 5)
    if dialect.name in ("mysql", "mariadb"):
        if getattr(dialect, "is_mariadb", False):
            return not version or version >= (10, 6)
        return not version or version >= (8, 0, 1)
    return False


class SqlAlchemyOutboxedEventRepository(OutboxedEventRepository):
    """The outbox on a SQLAlchemy ``AsyncSession``: rows of :class:`OutboxModel` (or ``model``).

    Write side: :meth:`add` stages an event in ``session`` beside the caller's own rows, so
    the caller's commit stores both and a rollback neither. The event's ``event_name`` must
    be registered in ``event_map`` (default: the class-level :class:`OutboxedEventMap`) for
    the event's type or a base of it. The payload is the registered codec's bytes, else
    ``serializer``'s, else JSON of ``to_dict()``; ``compressor`` compresses it.

    Read side (the 4.x relay loop): :meth:`get_many` returns rows waiting to be published:
    status ``NEW`` or ``NOT_PRODUCED``, fewer than ``MAX_FLUSH_COUNTER_VALUE`` failures, and
    not leased by a relay nor waiting for a retry (``claimed_until`` unset or past); ``NEW``
    first, then by id. Where the database has row locks (PostgreSQL, MariaDB 10.6+, MySQL
    8), the rows are locked ``FOR UPDATE SKIP LOCKED`` until the session's transaction ends,
    so two loops or a loop and a relay never get the same row at once (on MariaDB/MySQL a
    transaction that starts with ``get_many`` runs at ``READ COMMITTED``, so the locks never
    block the application's inserts; SQLite has no row locks). A row that cannot be
    read back (unknown name, bad bytes) is logged and marked ``NOT_PRODUCED``, never raised.
    :meth:`update_status` with ``NOT_PRODUCED`` counts a failure and sets the earliest next
    try to ``retry_delay(failures)`` seconds from now (``retry_delay=None``: at once, as
    4.x). Nothing is committed but by :meth:`commit` (or the caller's own commit).
    """

    def __init__(
        self,
        session: AsyncSession,
        compressor: Compressor | None = None,
        *,
        serializer: EventCodec | None = None,
        event_map: OutboxedEventMap | None = None,
        model: type[OutboxMixin] = OutboxModel,
        retry_delay: RetryDelay | None = default_retry_delay,
    ) -> None:
        if not (isinstance(model, type) and issubclass(model, OutboxMixin)):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise ConfigurationError(
                "SqlAlchemyOutboxedEventRepository(model=...) needs a mapped class with the "
                "outbox columns (OutboxModel, a class made by rebind_outbox_model, or "
                f"'class Outbox(OutboxMixin, YourBase)'), got {model!r}"
            )
        if compressor is not None and not isinstance(compressor, Compressor):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise ConfigurationError(
                "SqlAlchemyOutboxedEventRepository(compressor=...) needs an object with "
                f"compress(bytes) and decompress(bytes), got {type(compressor).__name__}"
            )
        if serializer is not None and not isinstance(serializer, EventCodec):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise ConfigurationError(
                "SqlAlchemyOutboxedEventRepository(serializer=...) needs an EventCodec "
                "(serialize, content_type_for and deserialize), got "
                f"{type(serializer).__name__}"
            )
        self.session = session
        self.compressor = compressor
        self.model = model
        self._new_row: Callable[..., OutboxMixin] = model
        self._codec: EventCodec = serializer if serializer is not None else JsonEventSerializer()
        self._map = event_map if event_map is not None else OutboxedEventMap.shared()
        self._retry_delay = retry_delay

    # -- write ---------------------------------------------------------------------------------

    def add(self, event: INotificationEvent[Any]) -> None:
        """Stage ``event`` in the session (no flush, no commit).

        Raises ``ConfigurationError`` (a ``TypeError``, as 4.x) when its ``event_name`` is not
        registered, is registered for another type, or its codec cannot encode it; the
        message names the event and what to register.
        """
        entry = resolve_event(self._map, event)
        codec = entry.codec if entry.codec is not None else self._codec
        try:
            payload = codec.serialize(event)
        except Exception as exc:
            raise ConfigurationError(
                f"Cannot add {describe_type(type(event))} (event_id {event.event_id}) to the "
                f"outbox: {type(codec).__name__} cannot encode it ({exc})"
            ) from exc
        if self.compressor is not None:
            payload = self.compressor.compress(payload)
        event_id = event.event_id
        self.session.add(
            self._new_row(
                event_id=event_id,
                event_id_bin=event_id.bytes,
                event_name=event.event_name,
                created_at=naive_utc(event.event_timestamp),
                payload=payload,
                topic=event.topic,
            )
        )

    # -- read ------------------------------------------------------------------------------------

    async def get_many(
        self, batch_size: int = 100, topic: str | None = None
    ) -> list[OutboxedEvent]:
        """Up to ``batch_size`` rows waiting to be published (see the class), decoded.

        Raises ``ValueError`` for a ``batch_size`` below 1, and what the database raises.
        Rows that cannot be decoded are left out, logged and marked ``NOT_PRODUCED``.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:  # pyright: ignore[reportUnnecessaryIsInstance]
            raise ValueError(f"get_many: batch_size must be a positive int, got {batch_size!r}")
        m = self.model
        query = (
            sa.select(m.id, m.event_name, m.topic, m.event_status, m.payload)
            .where(
                m.event_status.in_(_PENDING),
                m.flush_counter < MAX_FLUSH_COUNTER_VALUE,
                sa.or_(m.claimed_until.is_(None), m.claimed_until <= utc_now()),
            )
            # NEW sorts before NOT_PRODUCED on every backend (enum order, or by name where
            # the column is text), so the (event_status, id) index serves the order.
            .order_by(m.event_status, m.id)
            .limit(batch_size)
        )
        if topic is not None:
            query = query.where(m.topic == topic)
        bind = self.session.get_bind()
        dialect = bind.dialect
        if _supports_skip_locked(dialect):
            if (
                dialect.name != "postgresql"
                and isinstance(bind, sa.Engine)
                and not self.session.in_transaction()
            ):
                # InnoDB's default REPEATABLE READ also locks the gap after the last row a
                # locking scan reads, which would block every INSERT into the outbox until
                # this transaction ends; READ COMMITTED takes record locks only.
                await self.session.connection(
                    execution_options={"isolation_level": "READ COMMITTED"}
                )
            query = query.with_for_update(skip_locked=True)
        rows = (await self.session.execute(query)).all()
        found: list[OutboxedEvent] = []
        unreadable: list[int] = []
        for row_id, name, row_topic, status, payload in rows:
            outboxed = self._decode(row_id, name, row_topic, status, payload)
            if outboxed is None:
                unreadable.append(row_id)
            else:
                found.append(outboxed)
        if unreadable:
            await self._mark_failed(unreadable)
        return found

    def _decode(
        self, row_id: int, name: str, topic: str, status: EventStatus, payload: bytes
    ) -> OutboxedEvent | None:
        """The row as an :class:`OutboxedEvent`, or ``None`` (logged) if it cannot be read."""
        entry = self._map.entry(name)
        if entry is None:
            logger.error(
                "Outbox row %s cannot be read: no event type is registered under its "
                "event_name %r (registered: %s); marked NOT_PRODUCED. Register it with "
                "OutboxedEventMap.register(%r, EventType).",
                row_id,
                name,
                ", ".join(map(repr, self._map.names())) or "(none)",
                name,
            )
            return None
        codec = entry.codec if entry.codec is not None else self._codec
        try:
            data = bytes(payload)
            if self.compressor is not None:
                data = self.compressor.decompress(data)
            event = codec.deserialize(data, entry.event_type)
            content_type = codec.content_type_for(event)
        except Exception as exc:
            logger.error(
                "Outbox row %s (event_name %r) cannot be decoded as %s: %s: %s; marked "
                "NOT_PRODUCED.",
                row_id,
                name,
                describe_type(entry.event_type),
                type(exc).__name__,
                exc,
            )
            return None
        return OutboxedEvent(
            id=row_id,
            event=event,
            topic=topic,
            status=EventStatus(status),
            payload_bytes=data,
            content_type=content_type,
        )

    # -- status ----------------------------------------------------------------------------------

    async def update_status(self, outboxed_event_id: int, new_status: EventStatus) -> None:
        """Set the row's status. ``NOT_PRODUCED`` also counts a failure (``flush_counter``
        + 1; at ``MAX_FLUSH_COUNTER_VALUE`` the row is no longer picked) and sets the earliest
        next try (``retry_delay``). Takes effect at commit.

        Raises ``ValueError`` for a status that is not an ``EventStatus`` (or its value).
        """
        status = checked_status(new_status)
        if status is EventStatus.NOT_PRODUCED:
            await self._mark_failed([outboxed_event_id])
            return
        m = self.model
        await self.session.execute(
            sa.update(m)
            .where(m.id == outboxed_event_id)
            .values(event_status=status)
            .execution_options(synchronize_session=False)
        )

    async def _mark_failed(self, ids: Sequence[int]) -> None:
        m = self.model
        # MySQL evaluates SET assignments left to right, each seeing the ones before it:
        # the next try is computed from the failure count before this failure is counted.
        values: list[tuple[Any, Any]] = []
        if self._retry_delay is not None:
            now = utc_now()
            delay = self._retry_delay
            values.append(
                (
                    m.claimed_until,
                    sa.case(
                        *(
                            (
                                m.flush_counter == done,
                                now + datetime.timedelta(seconds=delay(done + 1)),
                            )
                            for done in range(MAX_FLUSH_COUNTER_VALUE)
                        ),
                        else_=now,
                    ),
                )
            )
        values.append((m.flush_counter, m.flush_counter + 1))
        values.append((m.event_status, EventStatus.NOT_PRODUCED))
        await self.session.execute(
            sa.update(m)
            .where(m.id.in_(ids))
            .ordered_values(*values)
            .execution_options(synchronize_session=False)
        )

    # -- transaction -----------------------------------------------------------------------------

    async def commit(self) -> None:
        """Commit the session."""
        await self.session.commit()

    async def rollback(self) -> None:
        """Roll the session back."""
        await self.session.rollback()
