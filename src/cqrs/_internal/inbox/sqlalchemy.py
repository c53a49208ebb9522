"""The inbox table as a SQLAlchemy model, and the inbox that claims events in it.

One row per handled event and consumer: ``(event_id, consumer)`` is the primary key, so a
second insert of the same key waits on the index until the first transaction ends
(PostgreSQL, MariaDB/MySQL), then fails if that one committed. On SQLite, which has one
writer at a time, the claims of one process take turns (one lock per engine and event loop)
and other processes wait in SQLite's busy timeout.

A user puts the table in their own metadata (and so in Alembic) with :class:`InboxMixin` on
their declarative base, or copies :class:`InboxModel` there with :func:`rebind_inbox_model`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import datetime
import logging
import uuid
import weakref
from collections.abc import AsyncGenerator, Callable
from typing import Any

from cqrs._internal._optional import require
from cqrs._internal.clock import naive_utc
from cqrs._internal.inbox.repository import (
    DEFAULT_CONSUMER,
    MAX_NAME_LENGTH,
    InboxRecord,
    NoInboxTransaction,
    checked_consumer,
)
from cqrs._internal.sql.tables import table_with_columns
from cqrs._internal.sql.types import UUIDBinary

with require("sqlalchemy", extra="sqlalchemy", feature="cqrs.inbox.sqlalchemy"):
    import sqlalchemy as sa
    from sqlalchemy.exc import DBAPIError, IntegrityError
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
    from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column

__all__ = [
    "DEFAULT_INBOX_TABLE_NAME",
    "InboxBase",
    "InboxMixin",
    "InboxModel",
    "SqlAlchemyInbox",
    "current_inbox_session",
    "rebind_inbox_model",
]

logger = logging.getLogger("cqrs.inbox")

DEFAULT_INBOX_TABLE_NAME = "inbox"

_COLUMNS = ("event_id", "consumer", "event_name", "received_at")
_DEADLOCK_RETRIES = 5
_DEADLOCK_CODES = frozenset({"40P01", "40001", 1213})
"""PostgreSQL's deadlock and serialization failures, MySQL/MariaDB's deadlock: a claim
chosen as the victim (waiters of a key whose first claim rolled back) simply tries again."""


class InboxBase(DeclarativeBase):
    """The declarative base :class:`InboxModel` is defined on."""


class InboxMixin:
    """The inbox columns, for a model on the user's own declarative base.

    ``class Inbox(InboxMixin, MyBase): __tablename__ = "inbox"`` puts the table in
    ``MyBase.metadata``. Columns: ``event_id`` (UUID; ``BINARY(16)`` on MySQL/MariaDB),
    ``consumer`` (``VARCHAR(255)``), together the primary key; ``event_name``
    (``VARCHAR(255)``); ``received_at`` (``DATETIME``, naive UTC), indexed as
    ``<table>_received_at_index`` for :meth:`SqlAlchemyInbox.purge`.
    """

    event_id: Mapped[uuid.UUID] = mapped_column(UUIDBinary(), primary_key=True)
    consumer: Mapped[str] = mapped_column(sa.String(MAX_NAME_LENGTH), primary_key=True)
    event_name: Mapped[str] = mapped_column(sa.String(MAX_NAME_LENGTH), nullable=False)
    received_at: Mapped[datetime.datetime] = mapped_column(sa.DateTime(), nullable=False)

    @declared_attr.directive
    @classmethod
    def __table_args__(cls) -> tuple[Any, ...]:
        name: str = getattr(cls, "__tablename__", DEFAULT_INBOX_TABLE_NAME)
        return (sa.Index(f"{name}_received_at_index", "received_at"),)


class InboxModel(InboxMixin, InboxBase):
    """The default inbox table, ``inbox``, on :class:`InboxBase`."""

    __tablename__ = DEFAULT_INBOX_TABLE_NAME


def rebind_inbox_model(
    model: type[InboxMixin], new_base: type[Any], table_name: str | None = None
) -> type[InboxMixin]:
    """A copy of the inbox model on ``new_base`` (so in its metadata), optionally renamed.

    The original stays as it is; pass the returned class as ``model=`` to
    :class:`SqlAlchemyInbox`. ``new_base`` must be a SQLAlchemy declarative base
    (``TypeError`` otherwise); a table of that name already in its metadata raises
    ``ValueError`` naming it.
    """
    metadata: sa.MetaData | None = getattr(new_base, "metadata", None)
    if not isinstance(metadata, sa.MetaData) or getattr(new_base, "registry", None) is None:
        raise TypeError(
            "rebind_inbox_model needs a SQLAlchemy declarative base as new_base "
            f"(a DeclarativeBase subclass or declarative_base()), got {new_base!r}"
        )
    name = table_name or getattr(model, "__tablename__", DEFAULT_INBOX_TABLE_NAME)
    if name in metadata.tables:
        raise ValueError(
            f"table {name!r} is already in {new_base.__name__}.metadata; "
            "pass another table_name or use the model already defined there"
        )
    return type(model.__name__, (InboxMixin, new_base), {"__tablename__": name})


_SESSION: contextvars.ContextVar[AsyncSession | None] = contextvars.ContextVar(
    "cqrs_inbox_session", default=None
)


def current_inbox_session() -> AsyncSession:
    """The session of the inbox transaction the calling handler runs in.

    Write through it (``session.add(...)``, ``await session.execute(...)``) and the writes
    commit together with the inbox record, or roll back with it when a handler fails. Do not
    commit or roll it back yourself: the inbox does, after the last handler. Raises
    :class:`~cqrs.inbox.NoInboxTransaction` outside a handler run by
    ``IdempotentEventMediator`` over a :class:`SqlAlchemyInbox`.
    """
    session = _SESSION.get()
    if session is None:
        raise NoInboxTransaction(
            "No inbox transaction is open here: current_inbox_session() works inside an "
            "event handler run by IdempotentEventMediator over a SqlAlchemyInbox."
        )
    return session


_Turns = weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock]
_SQLITE_TURNS: weakref.WeakKeyDictionary[Any, _Turns] = weakref.WeakKeyDictionary()


def _sqlite_turn(engine: Any) -> asyncio.Lock:
    """The lock the SQLite claims of ``engine`` take turns on in the running loop."""
    by_loop = _SQLITE_TURNS.get(engine)
    if by_loop is None:
        by_loop = _SQLITE_TURNS[engine] = weakref.WeakKeyDictionary()
    loop = asyncio.get_running_loop()
    lock = by_loop.get(loop)
    if lock is None:
        lock = by_loop[loop] = asyncio.Lock()
    return lock


def _retryable(exc: DBAPIError) -> bool:
    orig = exc.orig
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if code is None:
        args: tuple[Any, ...] = getattr(orig, "args", ())
        code = args[0] if args else None
    return code in _DEADLOCK_CODES


class SqlAlchemyInbox:
    """An :class:`~cqrs.inbox.Inbox` in a SQL table (SQLite, PostgreSQL, MariaDB/MySQL).

    ``session_factory`` makes an ``AsyncSession`` per claim (an ``async_sessionmaker``; an
    ``AsyncEngine`` is wrapped in one). ``consumer`` names the consumer records are written
    for; ``model`` is the table (:class:`InboxModel`, or a class made with
    :class:`InboxMixin` / :func:`rebind_inbox_model`). Create the table with its metadata
    (``metadata.create_all``) or a migration; this class never issues DDL.

    A claim opens a session, inserts the record (waiting on the key while another
    transaction holds it), publishes the session to :func:`current_inbox_session` while the
    handlers run, then commits; a handler error or a cancellation rolls everything back.
    Database errors propagate (the consumer retries the message). Raises ``TypeError`` for a
    ``session_factory`` that is not callable or a ``model`` without the inbox columns, and
    ``ValueError`` for a bad ``consumer``.
    """

    def __init__(
        self,
        session_factory: Callable[[], AsyncSession] | AsyncEngine,
        *,
        consumer: str = DEFAULT_CONSUMER,
        model: type[Any] = InboxModel,
    ) -> None:
        if isinstance(session_factory, AsyncEngine):
            session_factory = async_sessionmaker(session_factory, expire_on_commit=False)
        if not callable(session_factory):
            raise TypeError(
                "session_factory must make AsyncSessions (an async_sessionmaker) or be an "
                f"AsyncEngine, got {session_factory!r}"
            )
        table = table_with_columns(
            model,
            _COLUMNS,
            kind="a mapped inbox class (InboxModel, or one made with InboxMixin or "
            "rebind_inbox_model)",
            build="build it with InboxMixin or rebind_inbox_model",
        )
        self._factory = session_factory
        self._consumer = checked_consumer(consumer)
        self._model = model
        self._table = table
        self._insert = sa.insert(table)
        self._key = table.c.event_id, table.c.consumer

    @property
    def consumer(self) -> str:
        """The consumer name records are written for."""
        return self._consumer

    @property
    def model(self) -> type[Any]:
        """The mapped inbox class."""
        return self._model

    @contextlib.asynccontextmanager
    async def claim(self, record: InboxRecord) -> AsyncGenerator[bool]:
        """See ``Inbox.claim``: one transaction holding the record while the block runs;
        committed when it ends normally, rolled back when it raises or is cancelled."""
        session = self._factory()
        try:
            async with self._turn(session):
                if not await self._record(session, record):
                    yield False
                    return
                token = _SESSION.set(session)
                try:
                    yield True
                finally:
                    _SESSION.reset(token)
                await session.commit()
        except BaseException:
            await self._rollback(session)
            raise
        finally:
            await self._close(session)

    @contextlib.asynccontextmanager
    async def _turn(self, session: AsyncSession) -> AsyncGenerator[None]:
        bind = session.get_bind()
        if bind.dialect.name != "sqlite":
            yield
            return
        engine: Any = getattr(bind, "engine", bind)
        async with _sqlite_turn(engine):
            yield

    async def _record(self, session: AsyncSession, record: InboxRecord) -> bool:
        """Insert the record; False when the key is there already (committed by another
        transaction, which this one waited for)."""
        values = {
            "event_id": record.event_id,
            "consumer": record.consumer,
            "event_name": record.event_name,
            "received_at": record.received_at,
        }
        for attempt in range(1, _DEADLOCK_RETRIES + 1):
            try:
                await session.execute(self._insert, values)
            except IntegrityError:
                await session.rollback()
                if await self._exists(session, record.event_id, record.consumer):
                    return False
                raise
            except DBAPIError as exc:
                if attempt == _DEADLOCK_RETRIES or not _retryable(exc):
                    raise
                await session.rollback()
                logger.debug(
                    "Inbox claim of %s for %r lost a deadlock; trying again.",
                    record.event_id,
                    record.consumer,
                )
                continue
            return True
        raise AssertionError("unreachable")  # pragma: no cover

    async def _exists(self, session: AsyncSession, event_id: uuid.UUID, consumer: str) -> bool:
        event_column, consumer_column = self._key
        found = await session.execute(
            sa.select(event_column).where(event_column == event_id, consumer_column == consumer)
        )
        return found.first() is not None

    async def contains(self, event_id: uuid.UUID, consumer: str | None = None) -> bool:
        """Whether ``event_id`` is recorded (committed) for ``consumer`` (default: this
        inbox's)."""
        async with self._factory() as session:
            return await self._exists(session, event_id, consumer or self._consumer)

    async def purge(self, before: datetime.datetime) -> int:
        """Delete the records received before ``before`` (naive UTC), for every consumer of
        the table, and return how many. An event redelivered after its record is gone runs
        again: keep records longer than any redelivery can take."""
        before = naive_utc(before)
        async with self._factory() as session:
            done: Any = await session.execute(
                sa.delete(self._table).where(self._table.c.received_at < before)
            )
            await session.commit()
            return int(done.rowcount)

    @staticmethod
    async def _rollback(session: AsyncSession) -> None:
        try:
            await session.rollback()
        except Exception:  # the connection is gone: the database rolls back by itself
            logger.debug("rolling back an inbox transaction failed", exc_info=True)

    @staticmethod
    async def _close(session: AsyncSession) -> None:
        try:
            await session.close()
        except Exception:
            logger.debug("closing an inbox session failed", exc_info=True)
