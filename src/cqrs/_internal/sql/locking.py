"""The outbox relay's side of the database: claim rows under a lease, settle them, read the lag.

A relay takes a batch of rows in one short transaction, the **claim**: it picks up to N
claimable rows and stamps them with a lease (``claimed_until = now + lease``) and a fresh
``claim_token``, then commits. A row is claimable when its status is ``NEW`` or
``NOT_PRODUCED``, its ``flush_counter`` is below the maximum of attempts, and it holds no
running lease (``claimed_until`` is ``NULL`` or past). New rows come first, then rows being
retried, each in id order (4.x's order; the table's ``(event_status, id)`` index serves it).
Per dialect:

* **PostgreSQL**: one statement, ``WITH picked AS (SELECT id ... FOR UPDATE SKIP LOCKED)
  UPDATE ... FROM picked RETURNING ...``: relays claiming at the same time skip each other's
  rows instead of waiting for them.
* **MariaDB / MySQL** (``SKIP LOCKED`` from MariaDB 10.6 and MySQL 8.0): ``SELECT ... FOR
  UPDATE SKIP LOCKED`` then ``UPDATE ... WHERE id IN (...)`` in one ``READ COMMITTED``
  transaction (no gap locks, so the application's inserts never wait for a claim).
* **SQLite** (no row locks; one writer at a time): one ``UPDATE ... WHERE id IN (SELECT ...
  LIMIT n) RETURNING ...``; the database's single write lock makes it atomic.

Two relays therefore never hold the same row while its lease runs. The relay then
**settles** the batch in one transaction: rows the broker confirmed become ``PRODUCED``; rows
that failed become ``NOT_PRODUCED`` with ``flush_counter + 1`` and ``claimed_until`` set to
the time of their next try; rows put back without an attempt keep their status and get the
time they may be claimed again. Every settling ``UPDATE`` is guarded by the claim's token, so
a relay whose lease ran out (another relay took the rows) changes nothing.

Times are naive UTC on the relay's clock (:func:`utc_now`): relays on several machines need
clocks in sync to well under the lease.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import uuid
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import Any, NamedTuple, TypeAlias

from cqrs._internal._optional import require
from cqrs._internal.clock import utc_now
from cqrs._internal.errors import CQRSError
from cqrs._internal.outbox.models import EventStatus
from cqrs._internal.sql.tables import table_with_columns

with require("sqlalchemy", extra="sqlalchemy", feature="cqrs outbox relay"):
    import sqlalchemy as sa
    from sqlalchemy import exc as sa_exc
    from sqlalchemy.dialects import postgresql
    from sqlalchemy.ext.asyncio import (
        AsyncConnection,
        AsyncEngine,
        AsyncSession,
        create_async_engine,
    )
    from sqlalchemy.orm import DeclarativeBase

__all__ = [
    "RELAY_COLUMNS",
    "ClaimedRow",
    "Database",
    "LagFigures",
    "OutboxClaims",
    "OutboxTableError",
    "Retry",
    "engine_for_url",
    "is_transient",
    "outbox_model",
    "utc_now",
]

Database: TypeAlias = "AsyncEngine | Callable[[], AsyncSession]"
"""Where the outbox table lives: an ``AsyncEngine``, or an ``async_sessionmaker`` (or any
callable returning an ``AsyncSession``)."""

RELAY_COLUMNS = (
    "id",
    "event_id",
    "event_name",
    "topic",
    "payload",
    "event_status",
    "flush_counter",
    "created_at",
    "claimed_until",
    "claim_token",
)
"""The columns the relay reads or writes (``OutboxMixin`` has them all)."""

_PENDING_NAMES = (EventStatus.NEW.name, EventStatus.NOT_PRODUCED.name)
_SKIP_LOCKED_DIALECTS = frozenset({"postgresql", "mysql", "mariadb"})
_TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "55P03", "57P01", "57P02", "57P03", "53300"})
_TRANSIENT_MYSQL_ERRORS = frozenset({1040, 1053, 1205, 1213, 2002, 2003, 2006, 2013, 2055, 4031})
_READ_COMMITTED = sa.text("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
_MISSING = ("no such column", "does not exist", "unknown column")


class OutboxTableError(CQRSError, RuntimeError):
    """The outbox table cannot serve a relay as it is (a 4.x table without the relay's two
    columns, say); the message says what to change."""


class ClaimedRow(NamedTuple):
    """One claimed row: what the relay needs to publish it."""

    id: int
    event_id: uuid.UUID
    event_name: str
    topic: str
    payload: bytes
    flush_counter: int
    """Failed attempts before this claim."""


@dataclasses.dataclass(frozen=True, slots=True)
class Retry:
    """Failed rows that get their next try at ``at`` (naive UTC)."""

    ids: Sequence[int]
    at: datetime.datetime


@dataclasses.dataclass(frozen=True, slots=True)
class LagFigures:
    """What :meth:`OutboxClaims.lag` reads, in one query."""

    pending: int
    retrying: int
    oldest_created_at: datetime.datetime | None
    given_up: int


def engine_for_url(url: str) -> AsyncEngine:
    """An ``AsyncEngine`` for a SQLAlchemy URL with an async driver
    (``postgresql+asyncpg://...``, ``mysql+asyncmy://...``, ``sqlite+aiosqlite:///file``);
    raises ``ValueError`` naming the URL when SQLAlchemy cannot use it."""
    try:
        return create_async_engine(url)
    except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError, ImportError) as exc:
        raise ValueError(
            f"cannot open the database {url!r} ({exc}); give a SQLAlchemy URL with an async "
            "driver, e.g. postgresql+asyncpg://user@host/db or sqlite+aiosqlite:///outbox.db"
        ) from exc


def outbox_model(table: str) -> type[Any]:
    """The outbox model of the table called ``table`` (``OutboxModel`` for ``outbox``)."""
    from cqrs._internal.outbox.sqlalchemy import (
        DEFAULT_OUTBOX_TABLE_NAME,
        OutboxModel,
        rebind_outbox_model,
    )

    if table == DEFAULT_OUTBOX_TABLE_NAME:
        return OutboxModel

    class RelayBase(DeclarativeBase):
        pass

    return rebind_outbox_model(OutboxModel, RelayBase, table)


def is_transient(error: BaseException) -> bool:
    """Whether a database error is worth retrying as it is: a lost or refused connection, a
    deadlock, a lock wait that timed out, a busy SQLite file. A missing table or column, a
    syntax error or a constraint violation is not."""
    if isinstance(error, TimeoutError | ConnectionError | OSError):
        return True
    if not isinstance(error, sa_exc.DBAPIError):
        return False
    if error.connection_invalidated or isinstance(error, sa_exc.InterfaceError):
        return True
    original: Any = error.orig
    if isinstance(original, TimeoutError | ConnectionError | OSError):
        return True
    state = getattr(original, "sqlstate", None) or getattr(original, "pgcode", None)
    if isinstance(state, str):  # PostgreSQL
        return state in _TRANSIENT_SQLSTATES or state.startswith("08")
    args: tuple[Any, ...] = getattr(original, "args", ())
    if args and isinstance(args[0], int):  # MySQL / MariaDB error number
        return args[0] in _TRANSIENT_MYSQL_ERRORS
    text = str(original).lower()  # SQLite
    return "locked" in text or "busy" in text


class OutboxClaims:
    """Claims, settles and measures the rows of one outbox table for a relay.

    ``database`` is an ``AsyncEngine`` (statements run on its connections) or a session
    factory such as ``async_sessionmaker`` (statements run in its sessions; one with a bound
    engine is used through that engine). ``model`` is the outbox model (``OutboxModel``, one
    from ``rebind_outbox_model`` or a class with ``OutboxMixin``); a model without the
    relay's columns raises ``TypeError`` naming them. ``max_attempts`` is the failed
    publishes after which a row is no longer claimed.
    """

    def __init__(self, database: Database, model: type[Any], *, max_attempts: int) -> None:
        table = table_with_columns(
            model,
            RELAY_COLUMNS,
            kind="a SQLAlchemy model of the outbox table (OutboxModel, or a class made with "
            "rebind_outbox_model or OutboxMixin)",
            build="build it from OutboxMixin (or rebind_outbox_model)",
        )
        self.table = table
        self.max_attempts = max_attempts
        self._engine: AsyncEngine | None = None
        self._sessions: Callable[[], AsyncSession] | None = None
        if isinstance(database, AsyncEngine):
            self._engine = database
        elif callable(database):
            bind = getattr(database, "kw", {}).get("bind")
            if isinstance(bind, AsyncEngine):
                self._engine = bind
            else:
                self._sessions = database
        else:
            raise TypeError(
                f"database must be an AsyncEngine or an async_sessionmaker, got {database!r}"
            )
        self._dialect: str | None = None if self._engine is None else self._engine.dialect.name
        self._built: _Statements | None = None
        self._holding = 0
        self._held: dict[str, AsyncConnection] = {}
        self._autocommit: AsyncEngine | None = None

    def _statements(self) -> _Statements:
        built = self._built
        if built is None:
            assert self._dialect is not None
            built = self._built = _Statements(self.table, self._dialect)
        return built

    # -- connections -------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def holding(self) -> AsyncGenerator[None]:
        """Keep a connection for the claims and one for the settles made inside the block
        (a relay's run loop, which claims the next batch while it settles the last), so a
        batch pays no pool checkout; each is replaced after any error and closed on
        leaving. Without it every claim and settle checks a connection out."""
        self._holding += 1
        try:
            yield
        finally:
            self._holding -= 1
            if not self._holding:
                held, self._held = self._held, {}
                for connection in held.values():
                    await _close_quietly(connection)

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncGenerator[AsyncConnection | AsyncSession]:
        """A transaction on a connection (or session) of its own."""
        if self._engine is not None:
            async with self._engine.begin() as connection:
                yield connection
            return
        assert self._sessions is not None
        async with self._sessions() as session, session.begin():
            if self._dialect is None:
                self._dialect = session.get_bind().dialect.name
            yield session

    @contextlib.asynccontextmanager
    async def _batch(self, role: str, *, single: bool) -> AsyncGenerator[tuple[Any, bool]]:
        """The connection for a claim or a settle (``role``), in a transaction, and whether
        it reads committed rows already (MySQL's claim sets it otherwise). ``single``: the
        work is one statement, which PostgreSQL then runs without BEGIN/COMMIT (one round
        trip)."""
        engine = self._engine
        if engine is None:
            async with self._transaction() as session:
                yield session, False
            return
        postgres = self._dialect == "postgresql"
        if postgres and not single:
            async with engine.begin() as connection:
                yield connection, False
            return
        if not self._holding:
            if postgres:
                if self._autocommit is None:
                    self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
                engine = self._autocommit
            async with engine.begin() as connection:
                yield connection, False
            return
        connection = self._held.pop(role, None)  # taken out while in use
        if connection is None:
            connection = await engine.connect()
            if postgres:
                await connection.execution_options(isolation_level="AUTOCOMMIT")
            elif self._dialect in _SKIP_LOCKED_DIALECTS:
                await connection.execution_options(isolation_level="READ COMMITTED")
        try:
            async with connection.begin():
                yield connection, True
        except BaseException:
            await _close_quietly(connection)  # it may be broken: the next batch opens another
            raise
        if self._holding and role not in self._held:
            self._held[role] = connection
        else:
            await _close_quietly(connection)

    async def _run(
        self, work: Callable[[Any, bool], Any], *, role: str | None = None, single: bool = True
    ) -> Any:
        """Run ``work(connection, read_committed)`` in one transaction (see :meth:`_batch`
        for ``role`` and ``single``); turn a missing-column error into
        :class:`OutboxTableError`."""
        try:
            if role is not None:
                async with self._batch(role, single=single) as (connection, read_committed):
                    return await work(connection, read_committed)
            async with self._transaction() as connection:
                return await work(connection, False)
        except sa_exc.DBAPIError as exc:
            text = str(exc.orig).lower()
            if any(word in text for word in _MISSING) and (
                "claimed_until" in text or "claim_token" in text
            ):
                raise OutboxTableError(
                    f"the outbox table {self.table.name!r} has no claimed_until/claim_token "
                    f"columns (a table made by python-cqrs 4.x?); add them: ALTER TABLE "
                    f"{self.table.name} ADD COLUMN claimed_until TIMESTAMP NULL, ADD COLUMN "
                    f"claim_token VARCHAR(36) NULL (DATETIME on MySQL/MariaDB)"
                ) from exc
            raise

    # -- claim ---------------------------------------------------------------------------------

    async def claim(
        self, limit: int, *, now: datetime.datetime, until: datetime.datetime, token: str
    ) -> list[ClaimedRow]:
        """Claim up to ``limit`` claimable rows for ``token`` until ``until``; return them
        sorted by id. Commits before returning."""
        params = {
            "max_attempts": self.max_attempts,
            "now": now,
            "limit": limit,
            "until": until,
            "token": token,
        }

        async def work(connection: Any, read_committed: bool) -> list[ClaimedRow]:
            statements = self._statements()
            if statements.stamp is None:
                result = await connection.execute(statements.claim, params)
                rows = [_claimed(row) for row in result]
                rows.sort(key=_by_id)
                return rows
            if not read_committed:
                await connection.execute(_READ_COMMITTED)
            rows = [_claimed(row) for row in await connection.execute(statements.claim, params)]
            if rows:
                await connection.execute(
                    statements.stamp, {"ids": [row.id for row in rows], **params}
                )
            return rows

        return await self._run(work, role="claim")

    # -- settle --------------------------------------------------------------------------------

    async def settle(
        self,
        token: str,
        *,
        produced: Sequence[int] = (),
        retries: Sequence[Retry] = (),
        released: Retry | None = None,
    ) -> int:
        """In one transaction, for the rows of claim ``token`` only: mark ``produced`` rows
        ``PRODUCED``; mark each ``retries`` group ``NOT_PRODUCED`` with ``flush_counter + 1``,
        claimable again from its ``at``; give the ``released`` rows back (status and counter
        unchanged), claimable from their ``at``. Return how many rows changed: fewer than
        given means another relay had re-claimed some after this claim's lease ran out."""

        async def work(connection: Any, read_committed: bool) -> int:
            statements = self._statements()
            changed = 0
            if produced:
                result: Any = await connection.execute(
                    statements.produced, {"token": token, "ids": list(produced)}
                )
                changed += result.rowcount
            for retry in retries:
                if retry.ids:
                    result = await connection.execute(
                        statements.retry, {"token": token, "ids": list(retry.ids), "at": retry.at}
                    )
                    changed += result.rowcount
            if released is not None and released.ids:
                result = await connection.execute(
                    statements.release,
                    {"token": token, "ids": list(released.ids), "at": released.at},
                )
                changed += result.rowcount
            return changed

        statements = bool(produced) + sum(1 for r in retries if r.ids)
        statements += bool(released is not None and released.ids)
        return await self._run(work, role="settle", single=statements <= 1)

    # -- lag -----------------------------------------------------------------------------------

    async def lag(self) -> LagFigures:
        """Rows not produced yet, in one query: ``pending`` (still to be published, leased
        or waiting for their next try included), ``retrying`` (of those, the ones that
        failed before), the oldest pending row's ``created_at``, and ``given_up`` (failed
        ``max_attempts`` times: no relay takes them any more)."""

        async def work(connection: Any, read_committed: bool) -> LagFigures:
            statement = self._statements().lag
            row = (await connection.execute(statement, {"max_attempts": self.max_attempts})).one()
            oldest = row[2]
            if isinstance(oldest, str):  # SQLite: a CASE of a DateTime comes back as text
                oldest = datetime.datetime.fromisoformat(oldest)
            return LagFigures(int(row[0]), int(row[1]), oldest, int(row[3]))

        return await self._run(work)

    async def requeue_given_up(self) -> int:
        """Give every given-up row a fresh set of attempts (``flush_counter = 0``, claimable
        now); return how many. For after the cause of the failures was fixed."""

        async def work(connection: Any, read_committed: bool) -> int:
            statement = self._statements().requeue
            result: Any = await connection.execute(statement, {"max_attempts": self.max_attempts})
            return int(result.rowcount)

        return await self._run(work)

    @property
    def concurrent_writers(self) -> bool:
        """Whether a claim and a settle can run at once without queueing for one write lock
        (every database but SQLite; unknown, so false, before the first statement when the
        database is a session factory)."""
        return self._dialect is not None and self._dialect != "sqlite"

    @property
    def uses_row_locks(self) -> bool:
        """Whether claims use ``FOR UPDATE SKIP LOCKED`` (PostgreSQL, MariaDB, MySQL); known
        after the first statement when the database is a session factory."""
        return self._dialect in _SKIP_LOCKED_DIALECTS


async def _close_quietly(connection: AsyncConnection) -> None:
    """Close a connection that may be broken already (its error was reported)."""
    with contextlib.suppress(Exception):
        await connection.close()


def _claimed(row: Any) -> ClaimedRow:
    """A claimed row from the driver's values: the event id as a UUID (PostgreSQL gives one,
    others 16 bytes, a custom column type maybe text), the payload as bytes."""
    event_id = row[1]
    if not isinstance(event_id, uuid.UUID):
        if isinstance(event_id, str):
            event_id = uuid.UUID(event_id)
        else:
            event_id = uuid.UUID(bytes=bytes(event_id))
    payload = row[4]
    if type(payload) is not bytes:
        payload = bytes(payload)
    return ClaimedRow(row[0], event_id, row[2], row[3], payload, row[5])


def _by_id(row: ClaimedRow) -> int:
    return row.id


class _Statements:
    """The relay's statements for one table on one dialect, built once (SQLAlchemy then
    reuses their compiled form; only the parameters change between batches)."""

    def __init__(self, table: sa.Table, dialect: str) -> None:
        c = table.c
        # Written into the SQL (the column stores member names): a list parameter would be
        # expanded again on every execution.
        pending = c.event_status.in_([sa.literal_column(f"'{name}'") for name in _PENDING_NAMES])
        claimable = sa.and_(
            pending,
            c.flush_counter < sa.bindparam("max_attempts"),
            sa.or_(c.claimed_until.is_(None), c.claimed_until <= sa.bindparam("now")),
        )
        # event_id and payload come back as the driver gives them (see _claimed)
        columns = (
            c.id,
            sa.type_coerce(c.event_id, sa.types.NullType()),
            c.event_name,
            c.topic,
            sa.type_coerce(c.payload, sa.types.NullType()),
            c.flush_counter,
        )
        stamp: dict[str, Any] = {
            "claimed_until": sa.bindparam("until"),
            "claim_token": sa.bindparam("token"),
        }
        picked = (
            sa.select(c.id)
            .where(claimable)
            .order_by(c.event_status, c.id)
            .limit(sa.bindparam("limit", type_=sa.Integer()))
        )
        if dialect == "postgresql":
            # one array parameter instead of one parameter per id
            ids: Any = c.id == sa.any_(sa.bindparam("ids", type_=postgresql.ARRAY(sa.BigInteger())))
        else:
            ids = c.id.in_(sa.bindparam("ids", expanding=True))
        self.stamp: Any = None
        if dialect == "postgresql":
            cte = picked.with_for_update(skip_locked=True).cte("picked")
            self.claim: Any = (
                sa.update(table).where(c.id == cte.c.id).values(stamp).returning(*columns)
            )
        elif dialect in ("mysql", "mariadb"):
            self.claim = (
                sa.select(*columns)
                .where(claimable)
                .order_by(c.event_status, c.id)
                .limit(sa.bindparam("limit", type_=sa.Integer()))
                .with_for_update(skip_locked=True)
            )
            self.stamp = sa.update(table).where(ids).values(stamp)
        else:
            self.claim = (
                sa.update(table)
                .where(c.id.in_(picked.scalar_subquery()))
                .values(stamp)
                .returning(*columns)
            )
        mine = sa.and_(c.claim_token == sa.bindparam("token"), ids)
        self.produced = (
            sa.update(table)
            .where(mine)
            .values(event_status=EventStatus.PRODUCED, claimed_until=None, claim_token=None)
        )
        self.retry = (
            sa.update(table)
            .where(mine)
            .values(
                event_status=EventStatus.NOT_PRODUCED,
                flush_counter=c.flush_counter + 1,
                claimed_until=sa.bindparam("at"),
                claim_token=None,
            )
        )
        self.release = (
            sa.update(table).where(mine).values(claimed_until=sa.bindparam("at"), claim_token=None)
        )
        live = c.flush_counter < sa.bindparam("max_attempts")
        one, zero = sa.literal(1), sa.literal(0)
        retrying = sa.and_(live, c.event_status == EventStatus.NOT_PRODUCED)
        self.lag = sa.select(
            sa.func.coalesce(sa.func.sum(sa.case((live, one), else_=zero)), 0),
            sa.func.coalesce(sa.func.sum(sa.case((retrying, one), else_=zero)), 0),
            sa.func.min(sa.case((live, c.created_at))),
            sa.func.coalesce(sa.func.sum(sa.case((live, zero), else_=one)), 0),
        ).where(pending)
        self.requeue = (
            sa.update(table)
            .where(pending, c.flush_counter >= sa.bindparam("max_attempts"))
            .values(flush_counter=0, claimed_until=None, claim_token=None)
        )
