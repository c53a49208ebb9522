"""The demo's two SQLite databases and the unit of work that writes notifications to the outbox.

* ``orders.sqlite3``, the order service's: the ``shipments`` table (its business rows) and the
  transactional ``outbox``. A handler writes an order's shipment and its notification in one
  transaction (:meth:`UnitOfWork.begin`): one commit stores both, a rollback neither.
* ``notifications.sqlite3``, the notification service's: its ``inbox``, which makes the
  consumer run each notification's handler once however often the broker delivers it.

Both files live in a directory (``DEMO_DB``, or a temporary one made on first use and
removed by :meth:`Storage.close`). Every session opens its own connection (no pool), so the
databases work from any event loop: the server's, and each test's.
"""

from __future__ import annotations

import atexit
import contextlib
import shutil
import sqlite3
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.pool import NullPool

import cqrs
from cqrs.inbox.sqlalchemy import InboxMixin
from cqrs.outbox.sqlalchemy import OutboxMixin, SqlAlchemyOutboxedEventRepository

BUSY_TIMEOUT = 30.0
"""Seconds a writer waits for SQLite's write lock (one writer at a time per file)."""


class OrdersBase(DeclarativeBase):
    """The order service's tables."""


class Shipment(OrdersBase):
    """An order the warehouse shipped: the business row written with its notification."""

    __tablename__ = "shipments"

    id: Mapped[int] = mapped_column(primary_key=True)
    order_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    position: Mapped[int]


class Outbox(OutboxMixin, OrdersBase):
    """The transactional outbox, in the order service's own metadata."""

    __tablename__ = "outbox"


class NotificationsBase(DeclarativeBase):
    """The notification service's tables."""


class Inbox(InboxMixin, NotificationsBase):
    """The records of the notifications the consumer handled."""

    __tablename__ = "inbox"


class Database:
    """One SQLite file; it and its tables are created on first use of :attr:`engine`."""

    def __init__(self, locate: Callable[[], Path], metadata: sa.MetaData) -> None:
        self._locate = locate
        self._metadata = metadata
        self._engine: AsyncEngine | None = None
        self._sessions: async_sessionmaker[AsyncSession] | None = None

    @property
    def path(self) -> Path:
        """The file (its directory is created on first use)."""
        return self._locate()

    @property
    def engine(self) -> AsyncEngine:
        """The async engine (aiosqlite; no pool). The first use creates the file, in WAL
        mode, and its tables."""
        if self._engine is None:
            path = self.path
            _create(path, self._metadata)
            self._engine = create_async_engine(
                f"sqlite+aiosqlite:///{path}",
                poolclass=NullPool,
                connect_args={"timeout": BUSY_TIMEOUT},
            )
        return self._engine

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        """Sessions on :attr:`engine` (objects stay readable after a commit)."""
        if self._sessions is None:
            self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        return self._sessions

    async def dispose(self) -> None:
        """Forget the engine; the next use makes a new one."""
        engine, self._engine, self._sessions = self._engine, None, None
        if engine is not None:
            await engine.dispose()


def _create(path: Path, metadata: sa.MetaData) -> None:
    """The file in write-ahead-log mode (readers never wait for the writer) with its tables."""
    with contextlib.closing(sqlite3.connect(path, timeout=BUSY_TIMEOUT)) as connection:
        connection.execute("PRAGMA journal_mode=WAL")
    engine = sa.create_engine(f"sqlite:///{path}", poolclass=NullPool)
    try:
        metadata.create_all(engine)
    finally:
        engine.dispose()


class Storage:
    """The directory of the demo's databases, and the two :class:`Database` objects.

    ``directory`` (created if missing) keeps the files between runs; ``None`` means a
    temporary directory, made on first use and removed by :meth:`close` (or at exit).
    """

    def __init__(self, directory: str | Path | None = None) -> None:
        self._given = Path(directory) if directory else None
        self._made: Path | None = None
        self.orders = Database(lambda: self.directory / "orders.sqlite3", OrdersBase.metadata)
        self.notifications = Database(
            lambda: self.directory / "notifications.sqlite3", NotificationsBase.metadata
        )

    @property
    def directory(self) -> Path:
        """Where the files are; raises ``NotADirectoryError`` when ``DEMO_DB`` names a file."""
        if self._given is not None:
            if self._given.exists() and not self._given.is_dir():
                raise NotADirectoryError(
                    f"DEMO_DB={self._given} is a file; give a directory for the demo's "
                    "databases (orders.sqlite3, notifications.sqlite3)"
                )
            self._given.mkdir(parents=True, exist_ok=True)
            return self._given
        if self._made is None:
            self._made = Path(tempfile.mkdtemp(prefix="cqrs-demo-"))
            atexit.register(shutil.rmtree, self._made, ignore_errors=True)
        return self._made

    @property
    def temporary(self) -> bool:
        """Whether the files go when the app stops (no ``DEMO_DB``)."""
        return self._given is None

    async def close(self) -> None:
        """Dispose of the engines and remove a temporary directory with its files."""
        await self.orders.dispose()
        await self.notifications.dispose()
        made, self._made = self._made, None
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)


class UnitOfWork:
    """Opens the order service's transactions, each with the outbox on its session.

    ``on_commit`` is called after each commit (the app sets it to wake the relay, so a
    committed notification is published at once rather than at the relay's next poll).
    """

    def __init__(self, database: Database, event_map: cqrs.OutboxedEventMap) -> None:
        self.database = database
        self.event_map = event_map
        self.on_commit: Callable[[], None] = _nothing

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[tuple[AsyncSession, SqlAlchemyOutboxedEventRepository]]:
        """One transaction: the session for the business rows and the outbox for the
        notifications. Leaving the block commits both; an exception rolls both back (and
        propagates)."""
        async with self.database.sessions() as session, session.begin():
            yield (
                session,
                SqlAlchemyOutboxedEventRepository(session, model=Outbox, event_map=self.event_map),
            )
        self.on_commit()


def _nothing() -> None:
    pass
