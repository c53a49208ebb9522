"""SqlAlchemyOutboxedEventRepository on SQLite, PostgreSQL and MariaDB: the 4.x semantics,
the lease rule, row locks, undecodable rows, and tables made by 4.x."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import re
import uuid
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import cqrs
from cqrs.compressors import ZlibCompressor
from cqrs.outbox.map import OutboxedEventMap
from cqrs.outbox.repository import EventStatus, OutboxedEventRepository
from cqrs.serializers import JsonEventSerializer
from tests.sql_support import DATABASES, drop_tables, engine_for, unique_name
from tests.support import PATIENCE

sa = pytest.importorskip("sqlalchemy", reason="the sqlalchemy extra is not installed")

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker  # noqa: E402
from sqlalchemy.orm import DeclarativeBase  # noqa: E402

from cqrs.outbox.sqlalchemy import (  # noqa: E402
    MAX_FLUSH_COUNTER_VALUE,
    OutboxModel,
    SqlAlchemyOutboxedEventRepository,
    rebind_outbox_model,
)
from cqrs.sqlalchemy_types import Binary16, PayloadBinary, UUIDBinary  # noqa: E402

DOCS = Path(__file__).resolve().parents[3] / "docs" / "outbox.md"


class Payload(cqrs.Response):
    order_id: str
    total: int = 0


class OrderPlaced(cqrs.NotificationEvent[Payload]):
    event_name: str = "order_placed"


class RushOrderPlaced(OrderPlaced):
    pass


class OrderCancelled(cqrs.NotificationEvent[Payload]):
    event_name: str = "order_cancelled"


def registry() -> OutboxedEventMap:
    found = OutboxedEventMap()
    found.register("order_placed", OrderPlaced)
    return found


def placed(order_id: str, topic: str = "orders") -> OrderPlaced:
    return OrderPlaced(payload=Payload(order_id=order_id), topic=topic)


@dataclasses.dataclass
class Db:
    kind: str
    engine: Any
    model: Any
    sessions: async_sessionmaker[AsyncSession]

    @property
    def table(self) -> Any:
        return self.model.__table__

    def repo(self, session: AsyncSession, **options: Any) -> SqlAlchemyOutboxedEventRepository:
        options.setdefault("event_map", registry())
        return SqlAlchemyOutboxedEventRepository(session, model=self.model, **options)

    async def rows(self) -> list[Any]:
        async with self.engine.connect() as connection:
            result = await connection.execute(sa.select(self.table).order_by(self.table.c.id))
            return list(result.all())

    async def execute(self, statement: Any) -> None:
        async with self.engine.begin() as connection:
            await connection.execute(statement)


@pytest.fixture(params=DATABASES)
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Db]:
    engine = engine_for(request.param, tmp_path)

    class Base(DeclarativeBase):
        pass

    name = unique_name("outbox")
    model = rebind_outbox_model(OutboxModel, Base, name)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(lambda c: Base.metadata.create_all(c, checkfirst=True))
        yield Db(request.param, engine, model, async_sessionmaker(engine, expire_on_commit=False))
    finally:
        await drop_tables(engine, [name])
        await engine.dispose()


async def add_committed(db: Db, *events: Any, **options: Any) -> None:
    async with db.sessions() as session:
        repo = db.repo(session, **options)
        for event in events:
            repo.add(event)
        await repo.commit()


# -- hostile input first ---------------------------------------------------------------------


async def test_undecodable_rows_are_logged_marked_and_never_raised(
    db: Db, cqrs_logs: pytest.LogCaptureFixture
) -> None:
    good = placed("good")
    await add_committed(db, good, placed("garbled"), placed("zipped"))
    rows = await db.rows()
    t = db.table
    # a name nobody registered, a payload that is not JSON, a payload compressed by a writer
    # that the reader (no compressor) cannot read
    unknown = uuid.uuid4()
    await db.execute(
        t.insert().values(
            event_id=unknown,
            event_id_bin=unknown.bytes,
            event_name="nobody_registered_this",
            topic="orders",
            payload=b"{}",
        )
    )
    await db.execute(t.update().where(t.c.id == rows[1].id).values(payload=b"\x00not json"))
    await db.execute(
        t.update().where(t.c.id == rows[2].id).values(payload=zlib.compress(rows[2].payload))
    )
    async with db.sessions() as session:
        repo = db.repo(session)
        batch = await repo.get_many(10)
        await repo.commit()
    assert [o.event for o in batch] == [good]
    after = {row.id: row for row in await db.rows()}
    bad_ids = sorted(set(after) - {rows[0].id})
    assert len(bad_ids) == 3
    for row_id in bad_ids:
        assert after[row_id].event_status == EventStatus.NOT_PRODUCED
        assert after[row_id].flush_counter == 1
        assert after[row_id].claimed_until is not None  # waits before the next try
    messages = [r.getMessage() for r in cqrs_logs.records if r.name == "cqrs.outbox"]
    assert len(messages) == 3
    for row_id in bad_ids:
        assert any(f"row {row_id} " in m for m in messages), (row_id, messages)
    assert any("nobody_registered_this" in m and "Register it" in m for m in messages)


async def test_an_unreadable_row_stops_being_picked_after_the_maximum(db: Db) -> None:
    await add_committed(db, placed("x"))
    t = db.table
    await db.execute(t.update().values(payload=b"garbage"))
    for _ in range(MAX_FLUSH_COUNTER_VALUE + 2):
        async with db.sessions() as session:
            repo = db.repo(session, retry_delay=None)  # 4.x: tried again at once
            assert await repo.get_many() == []
            await repo.commit()
    [row] = await db.rows()
    assert row.flush_counter == MAX_FLUSH_COUNTER_VALUE
    assert row.claimed_until is None


async def test_a_rollback_stores_neither_the_business_row_nor_the_event(db: Db) -> None:
    orders = sa.Table(
        unique_name("orders"), sa.MetaData(), sa.Column("id", sa.String(20), primary_key=True)
    )
    async with db.engine.begin() as connection:
        await connection.run_sync(orders.create)
    try:
        async with db.sessions() as session:
            repo = db.repo(session)
            await session.execute(orders.insert().values(id="A-1"))
            repo.add(placed("A-1"))
            await repo.rollback()
        async with db.sessions() as session:
            repo = db.repo(session)
            await session.execute(orders.insert().values(id="A-2"))
            repo.add(placed("A-2"))
            await repo.commit()
        async with db.engine.connect() as connection:
            stored = (await connection.execute(sa.select(orders.c.id))).scalars().all()
    finally:
        await drop_tables(db.engine, [orders.name])
    assert stored == ["A-2"]
    assert [row.event_name for row in await db.rows()] == ["order_placed"]
    assert len(await db.rows()) == 1


async def test_add_refuses_unregistered_and_foreign_events_and_stages_nothing(db: Db) -> None:
    async with db.sessions() as session:
        repo = db.repo(session)
        with pytest.raises(TypeError, match=r"OrderCancelled.*'order_cancelled'.*register"):
            repo.add(OrderCancelled(payload=Payload(order_id="x")))
        foreign = OrderCancelled(event_name="order_placed", payload=Payload(order_id="x"))
        with pytest.raises(TypeError, match="registered for OrderPlaced"):
            repo.add(foreign)

        class Broken(JsonEventSerializer):
            def serialize(self, event: Any) -> bytes:
                raise TypeError("cannot encode this")

        broken = db.repo(session, serializer=Broken())
        with pytest.raises(TypeError, match=r"OrderPlaced \(event_id .*cannot encode this"):
            broken.add(placed("x"))
        assert not session.new
        await repo.commit()
    assert await db.rows() == []


async def test_bad_arguments_are_refused(db: Db) -> None:
    async with db.sessions() as session:
        with pytest.raises(TypeError, match="OutboxMixin"):
            SqlAlchemyOutboxedEventRepository(session, model=dict)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="compress"):
            SqlAlchemyOutboxedEventRepository(session, compressor=object())  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="EventCodec"):
            SqlAlchemyOutboxedEventRepository(session, serializer=object())  # type: ignore[arg-type]
        repo = db.repo(session)
        with pytest.raises(ValueError, match="batch_size"):
            await repo.get_many(0)
        with pytest.raises(ValueError, match="new_status"):
            await repo.update_status(1, "sent")  # type: ignore[arg-type]


# -- the 4.x semantics -------------------------------------------------------------------------


async def test_add_writes_the_4x_row_and_get_many_reads_it_back(db: Db) -> None:
    event = placed("A-1")
    await add_committed(db, event)
    [row] = await db.rows()
    assert row.event_id == event.event_id
    assert row.event_id_bin == event.event_id.bytes
    assert row.event_name == "order_placed"
    assert row.topic == "orders"
    assert row.event_status == EventStatus.NEW
    assert row.flush_counter == 0
    assert row.payload == JsonEventSerializer().serialize(event)
    utc = event.event_timestamp.astimezone(datetime.UTC).replace(tzinfo=None)
    assert abs(row.created_at - utc) < datetime.timedelta(seconds=1)  # MariaDB: whole seconds
    assert row.claimed_until is None
    assert row.claim_token is None
    async with db.engine.connect() as connection:  # the database holds the member NAME
        raw = await connection.execute(sa.text(f"SELECT event_status FROM {db.table.name}"))
        assert raw.scalar_one() == "NEW"
    async with db.sessions() as session:
        repo = db.repo(session)
        assert isinstance(repo, OutboxedEventRepository)
        [outboxed] = await repo.get_many()
    assert outboxed.id == row.id
    assert outboxed.event == event
    assert isinstance(outboxed.event, OrderPlaced)
    assert outboxed.topic == "orders"
    assert outboxed.status is EventStatus.NEW
    assert outboxed.payload_bytes == row.payload
    assert outboxed.content_type is None


async def test_get_many_orders_new_first_then_by_id_with_batch_and_topic(db: Db) -> None:
    events = [placed(f"A-{n}", topic="a" if n % 2 else "b") for n in range(6)]
    await add_committed(db, *events)
    ids = [row.id for row in await db.rows()]
    async with db.sessions() as session:
        repo = db.repo(session, retry_delay=None)
        await repo.update_status(ids[0], EventStatus.NOT_PRODUCED)
        await repo.update_status(ids[1], EventStatus.PRODUCED)
        await repo.commit()
        assert [o.id for o in await repo.get_many()] == [*ids[2:], ids[0]]
        assert [o.id for o in await repo.get_many(2)] == ids[2:4]
        assert [o.id for o in await repo.get_many(topic="b")] == [ids[2], ids[4], ids[0]]
        statuses = [o.status for o in await repo.get_many()]
        await repo.commit()
    assert statuses == [EventStatus.NEW] * 4 + [EventStatus.NOT_PRODUCED]


async def test_subclass_of_the_registered_type_is_stored_and_read_as_registered(db: Db) -> None:
    rush = RushOrderPlaced(payload=Payload(order_id="R-1"))
    await add_committed(db, rush)
    async with db.sessions() as session:
        [outboxed] = await db.repo(session).get_many()
    assert type(outboxed.event) is OrderPlaced
    assert outboxed.event.event_id == rush.event_id
    assert outboxed.event.payload == rush.payload


async def test_compressed_payloads_round_trip(db: Db) -> None:
    event = placed("Z-1" * 100)
    await add_committed(db, event, compressor=ZlibCompressor())
    [row] = await db.rows()
    assert zlib.decompress(row.payload) == JsonEventSerializer().serialize(event)
    async with db.sessions() as session:
        [outboxed] = await db.repo(session, compressor=ZlibCompressor()).get_many()
    assert outboxed.event == event
    assert outboxed.payload_bytes == zlib.decompress(row.payload)  # what goes on the wire


async def test_class_level_map_and_per_name_codec(db: Db) -> None:
    class Tagged(JsonEventSerializer):
        def content_type_for(self, event: Any) -> str | None:
            return "application/x-tagged"

    saved = OutboxedEventMap.__dict__.get("_shared_instance")
    OutboxedEventMap._shared_instance = None  # pyright: ignore[reportPrivateUsage]
    try:
        OutboxedEventMap.register("order_placed", OrderPlaced, Tagged())
        await add_committed(db, placed("T-1"), event_map=None)
        async with db.sessions() as session:
            [outboxed] = await db.repo(session, event_map=None).get_many()
    finally:
        OutboxedEventMap._shared_instance = saved  # pyright: ignore[reportPrivateUsage]
    assert outboxed.content_type == "application/x-tagged"


# -- status, retries and the lease rule ----------------------------------------------------------


async def test_not_produced_counts_and_waits_before_the_next_try(db: Db) -> None:
    await add_committed(db, placed("A-1"), placed("A-2"))
    first, second = (row.id for row in await db.rows())
    before = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    async with db.sessions() as session:
        repo = db.repo(session, retry_delay=lambda failures: 100.0 * failures)
        await repo.update_status(first, EventStatus.NOT_PRODUCED)
        await repo.update_status(second, EventStatus.PRODUCED)
        await repo.commit()
        assert await repo.get_many() == []  # the failed one waits, the other is done
        await repo.commit()
    one, two = await db.rows()
    assert (one.event_status, one.flush_counter) == (EventStatus.NOT_PRODUCED, 1)
    assert datetime.timedelta(seconds=99) < one.claimed_until - before
    assert one.claimed_until - before < datetime.timedelta(seconds=100 + PATIENCE)
    assert two.event_status == EventStatus.PRODUCED
    # the wait is over: picked again
    past = before - datetime.timedelta(seconds=1)
    await db.execute(db.table.update().values(claimed_until=past))
    async with db.sessions() as session:
        repo = db.repo(session)
        assert [o.id for o in await repo.get_many()] == [first]
        await repo.update_status(first, EventStatus.NOT_PRODUCED)
        await repo.commit()
    one, _ = await db.rows()
    assert one.flush_counter == 2
    assert one.claimed_until - past > datetime.timedelta(seconds=1)  # 2 s after the 2nd


async def test_rows_leased_by_a_relay_or_given_up_are_not_handed_out(db: Db) -> None:
    await add_committed(db, *(placed(f"L-{n}") for n in range(4)))
    leased, expired, given_up, free = (row.id for row in await db.rows())
    now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    t = db.table
    await db.execute(
        t.update()
        .where(t.c.id == leased)
        .values(claimed_until=now + datetime.timedelta(minutes=5), claim_token="relay-1")
    )
    await db.execute(
        t.update()
        .where(t.c.id == expired)
        .values(claimed_until=now - datetime.timedelta(seconds=1), claim_token="relay-2")
    )
    await db.execute(
        t.update()
        .where(t.c.id == given_up)
        .values(event_status=EventStatus.NOT_PRODUCED, flush_counter=MAX_FLUSH_COUNTER_VALUE)
    )
    async with db.sessions() as session:
        assert [o.id for o in await db.repo(session).get_many()] == [expired, free]


async def test_two_loops_at_once_get_disjoint_rows_where_rows_lock(db: Db) -> None:
    await add_committed(db, *(placed(f"C-{n}") for n in range(30)))
    async with db.sessions() as one, db.sessions() as two, db.sessions() as three:
        first = await db.repo(one).get_many(10)
        second = await db.repo(two).get_many(10)
        third = await db.repo(three).get_many(20)
        for session in (one, two, three):
            await session.rollback()
    ids = [o.id for o in first + second + third]
    if db.kind == "sqlite":
        # no row locks: two loops see the same rows, as docs/outbox.md says (one EventProducer
        # loop per SQLite file; OutboxRelay's leases serve several relays there too)
        assert [o.id for o in first] == [o.id for o in second] == [o.id for o in third][:10]
        return
    assert len(ids) == 30
    assert len(set(ids)) == 30


async def test_a_held_batch_does_not_block_writers(db: Db) -> None:
    """While a loop holds the last pending rows (publishing), the application still inserts:
    on MariaDB a REPEATABLE READ locking read would gap-lock the end of the table."""
    await add_committed(db, placed("H-1"), placed("H-2"))
    async with db.sessions() as holder:
        held = await db.repo(holder).get_many(100)
        assert len(held) == 2
        async with asyncio.timeout(PATIENCE):
            await add_committed(db, placed("H-3"))
        await holder.rollback()
    assert len(await db.rows()) == 3


# -- a table created by python-cqrs 4.x ------------------------------------------------------


def _docs_migration(kind: str) -> list[str]:
    """The ALTER/CREATE lines docs/outbox.md gives for this database."""
    label = {"sqlite": "SQLite", "postgres": "PostgreSQL", "mariadb": "MariaDB"}[kind]
    blocks = re.findall(r"```sql\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.S)
    [block] = [b for b in blocks if b.startswith(f"-- {label}")]
    code = "\n".join(line for line in block.splitlines() if not line.startswith("--"))
    return [statement.strip() for statement in code.split(";") if statement.strip()]


def _table_4x(name: str) -> Any:
    """The outbox table as python-cqrs 4.x creates it: no claimed_until, no claim_token."""
    enum = sa.Enum(EventStatus, name="eventstatus")
    return sa.Table(
        name,
        sa.MetaData(),
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("event_id", UUIDBinary(), nullable=False),
        sa.Column("event_id_bin", Binary16(), nullable=False),
        sa.Column("event_status", enum, nullable=False, default=EventStatus.NEW),
        sa.Column("flush_counter", sa.SmallInteger(), nullable=False, default=0),
        sa.Column("event_name", sa.String(255), nullable=False),
        sa.Column("topic", sa.String(255), nullable=False, default=""),
        sa.Column("created_at", sa.DateTime(), nullable=False, server_default=sa.func.now()),
        sa.Column("payload", PayloadBinary(), nullable=False),
        sa.UniqueConstraint("event_id_bin", "event_name", name=f"{name}_event_id_unique_index"),
    )


async def test_a_4x_table_migrated_with_the_documented_lines(
    db: Db, cqrs_logs: pytest.LogCaptureFixture
) -> None:
    name = unique_name("outbox4x")
    old = _table_4x(name)

    class Base(DeclarativeBase):
        pass

    model = rebind_outbox_model(OutboxModel, Base, name)
    try:
        async with db.engine.begin() as connection:
            await connection.run_sync(lambda c: old.create(c, checkfirst=True))
        # a row written by 4.x code before the migration
        event = placed("old-1")
        await db.execute(
            old.insert().values(
                event_id=event.event_id,
                event_id_bin=event.event_id.bytes,
                event_name="order_placed",
                created_at=datetime.datetime(2024, 1, 1),
                topic="orders",
                payload=JsonEventSerializer().serialize(event),
            )
        )
        async with db.engine.begin() as connection:
            for statement in _docs_migration(db.kind):
                await connection.execute(sa.text(statement.replace("outbox", name)))
        fresh = placed("new-1")
        async with db.sessions() as session:
            repo = SqlAlchemyOutboxedEventRepository(session, event_map=registry(), model=model)
            repo.add(fresh)
            await repo.commit()
            batch = await repo.get_many()
            for outboxed in batch:
                await repo.update_status(outboxed.id, EventStatus.PRODUCED)
            await repo.commit()
        # 4.x code still reads the table with its own columns only
        async with db.engine.connect() as connection:
            statuses = (await connection.execute(sa.select(old.c.event_status))).scalars().all()
    finally:
        await drop_tables(db.engine, [name])
    assert [o.event for o in batch] == [event, fresh]
    assert statuses == [EventStatus.PRODUCED, EventStatus.PRODUCED]


async def test_add_writes_to_a_4x_table_not_migrated_yet(db: Db) -> None:
    name = unique_name("outbox4x")
    old = _table_4x(name)

    class Base(DeclarativeBase):
        pass

    model = rebind_outbox_model(OutboxModel, Base, name)
    event = placed("before-migration")
    try:
        async with db.engine.begin() as connection:
            await connection.run_sync(lambda c: old.create(c, checkfirst=True))
        async with db.sessions() as session:
            repo = SqlAlchemyOutboxedEventRepository(session, event_map=registry(), model=model)
            repo.add(event)
            await repo.commit()
        async with db.engine.connect() as connection:
            rows = (await connection.execute(sa.select(old))).all()
    finally:
        await drop_tables(db.engine, [name])
    assert [(r.event_id, r.event_name, r.event_status) for r in rows] == [
        (event.event_id, "order_placed", EventStatus.NEW)
    ]
