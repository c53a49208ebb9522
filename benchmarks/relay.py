"""Outbox relay rows: rows moved from the outbox table to a broker, ours beside a raw loop.

For each database (SQLite always; PostgreSQL on 127.0.0.1:5432 and MariaDB on 3306 when they
answer) and each broker (the in-memory one always; RabbitMQ on 5672 when it answers): ``N``
rows are written (untimed), then drained, timed, by

* **ours**: ``OutboxRelay(engine, broker).drain()``, batches of 100 until one claims nothing
  (claim under a lease with ``SKIP LOCKED``, publish the batch concurrently, settle it in one
  transaction);
* **raw**: the same loop written by hand on the database driver itself (asyncpg, asyncmy,
  aiosqlite, no SQLAlchemy): the same claim statement (``FOR UPDATE SKIP LOCKED`` on
  PostgreSQL and MariaDB; ``UPDATE ... RETURNING`` on SQLite), a pipelined publish of the batch
  with the client (``asyncio.gather`` of ``InMemoryMessageBroker.send_message`` of a bare
  ``Message``; aio-pika ``exchange.publish`` with confirms on one channel), then one
  ``UPDATE`` marking the batch produced.

µs of wall time per row (throughput = 1e6 / value); target ratio ≤ 1/0.7 (ours ≥ 0.7x the
raw throughput, ARCHITECTURE §6). Each run drains fresh rows of the same table, raw and ours
alternating, after one untimed batch of each; the relay is made once per row, as a service
makes it once. A missing driver or server gives an ``ERROR`` row saying so.
"""

from __future__ import annotations

import asyncio
import datetime
import importlib.util
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.broker_bench import comparison_row, reachable, sizes, timed
from benchmarks.report import Row, Target, failed_row
from benchmarks.settings import Settings

RABBIT_URL = "amqp://guest:guest@127.0.0.1:5672/"
EXCHANGE = "cqrs-bench"
BATCH = 100
RELAY_TARGET = Target("ratio", 1 / 0.7)
DATABASES = {
    "SQLite": ("aiosqlite", None),
    "PostgreSQL": ("asyncpg", 5432),
    "MariaDB": ("asyncmy", 3306),
}
PENDING = "event_status IN ('NEW', 'NOT_PRODUCED') AND flush_counter < 5"


def row_name(database: str, broker: str) -> str:
    return f"relay: {database} -> {broker}"


async def relay_rows(settings: Settings) -> list[Row]:
    """One row per database x broker; ``ERROR`` rows for what is not there."""

    rows: list[Row] = []
    for database, (driver, port) in DATABASES.items():
        for broker in ("memory", "RabbitMQ"):
            name = row_name(database, broker)
            missing = None
            if importlib.util.find_spec("sqlalchemy") is None:
                missing = "SQLAlchemy is not installed (the sqlalchemy extra)"
            elif importlib.util.find_spec(driver) is None:
                missing = f"{driver} is not installed"
            elif port is not None and not reachable(port):
                missing = f"no {database} server on 127.0.0.1:{port}"
            elif broker == "RabbitMQ" and importlib.util.find_spec("aio_pika") is None:
                missing = "aio-pika is not installed (the rabbit extra)"
            elif broker == "RabbitMQ" and not reachable(5672):
                missing = "no RabbitMQ server on 127.0.0.1:5672"
            if missing is not None:
                rows.append(Row(name, "-", error=missing))
                continue
            try:
                rows.append(await _row(settings, database, broker))
            except Exception as exc:  # reported as an ERROR row
                rows.append(failed_row(name, exc))
    return rows


# --- the databases, through SQLAlchemy (ours) and through the bare driver (raw) ---------------


class _Raw:
    """The raw loop's database side: claim a batch, mark ids produced."""

    async def claim(self, token: str) -> list[tuple[int, uuid.UUID, str, str, bytes]]:
        raise NotImplementedError

    async def mark(self, ids: list[int]) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


class _RawSqlite(_Raw):
    def __init__(self, connection: Any, table: str) -> None:
        self.connection = connection
        self.claim_sql = (
            f"UPDATE {table} SET claimed_until = ?, claim_token = ? WHERE id IN (SELECT id "
            f"FROM {table} WHERE {PENDING} AND (claimed_until IS NULL OR claimed_until <= ?) "
            f"ORDER BY event_status, id LIMIT {BATCH}) "
            "RETURNING id, event_id, event_name, topic, payload"
        )
        self.mark_sql = (
            f"UPDATE {table} SET event_status = 'PRODUCED', claimed_until = NULL, "
            "claim_token = NULL WHERE id IN ({})"
        )

    async def claim(self, token: str) -> list[tuple[int, uuid.UUID, str, str, bytes]]:
        now = _now()
        text = "%Y-%m-%d %H:%M:%S.%f"
        until = (now + datetime.timedelta(seconds=30)).strftime(text)
        cursor = await self.connection.execute(self.claim_sql, (until, token, now.strftime(text)))
        found = await cursor.fetchall()
        await self.connection.commit()
        return [(r[0], uuid.UUID(bytes=r[1]), r[2], r[3], r[4]) for r in found]

    async def mark(self, ids: list[int]) -> None:
        await self.connection.execute(self.mark_sql.format(",".join("?" * len(ids))), ids)
        await self.connection.commit()

    async def close(self) -> None:
        await self.connection.close()


class _RawPostgres(_Raw):
    def __init__(self, connection: Any, table: str) -> None:
        self.connection = connection
        self.claim_sql = (
            f"WITH picked AS (SELECT id FROM {table} WHERE {PENDING} AND (claimed_until IS "
            f"NULL OR claimed_until <= $1) ORDER BY event_status, id LIMIT {BATCH} FOR UPDATE "
            f"SKIP LOCKED) UPDATE {table} t SET claimed_until = $2, claim_token = $3 FROM "
            "picked WHERE t.id = picked.id RETURNING t.id, t.event_id, t.event_name, t.topic, "
            "t.payload"
        )
        self.mark_sql = (
            f"UPDATE {table} SET event_status = 'PRODUCED', claimed_until = NULL, "
            "claim_token = NULL WHERE id = ANY($1::bigint[])"
        )

    async def claim(self, token: str) -> list[tuple[int, uuid.UUID, str, str, bytes]]:
        now = _now()
        until = now + datetime.timedelta(seconds=30)
        found = await self.connection.fetch(self.claim_sql, now, until, token)
        return [(r[0], r[1], r[2], r[3], r[4]) for r in found]

    async def mark(self, ids: list[int]) -> None:
        await self.connection.execute(self.mark_sql, ids)

    async def close(self) -> None:
        await self.connection.close()


class _RawMariaDB(_Raw):
    def __init__(self, connection: Any, table: str) -> None:
        self.connection = connection
        self.table = table
        self.select_sql = (
            f"SELECT id, event_id, event_name, topic, payload FROM {table} WHERE {PENDING} AND "
            f"(claimed_until IS NULL OR claimed_until <= %s) ORDER BY event_status, id LIMIT "
            f"{BATCH} FOR UPDATE SKIP LOCKED"
        )

    async def claim(self, token: str) -> list[tuple[int, uuid.UUID, str, str, bytes]]:
        now = _now()
        until = now + datetime.timedelta(seconds=30)
        async with self.connection.cursor() as cursor:
            await cursor.execute(self.select_sql, (now,))
            found = await cursor.fetchall()
            if found:
                marks = ",".join(["%s"] * len(found))
                await cursor.execute(
                    f"UPDATE {self.table} SET claimed_until = %s, claim_token = %s "
                    f"WHERE id IN ({marks})",
                    (until, token, *(r[0] for r in found)),
                )
        await self.connection.commit()
        return [(r[0], uuid.UUID(bytes=r[1]), r[2], r[3], r[4]) for r in found]

    async def mark(self, ids: list[int]) -> None:
        async with self.connection.cursor() as cursor:
            await cursor.execute(
                f"UPDATE {self.table} SET event_status = 'PRODUCED', claimed_until = NULL, "
                f"claim_token = NULL WHERE id IN ({','.join(['%s'] * len(ids))})",
                ids,
            )
        await self.connection.commit()

    async def close(self) -> None:
        self.connection.close()


async def _open(database: str, directory: Path, table: str) -> tuple[Any, Callable[[], Any]]:
    """(SQLAlchemy engine, factory of the raw side) for ``database``."""
    from sqlalchemy.ext.asyncio import create_async_engine

    if database == "SQLite":
        path = directory / "relay-bench.sqlite3"
        engine = create_async_engine(f"sqlite+aiosqlite:///{path}")

        async def sqlite() -> _Raw:
            import aiosqlite

            return _RawSqlite(await aiosqlite.connect(path), table)

        return engine, sqlite
    if database == "PostgreSQL":
        engine = create_async_engine("postgresql+asyncpg://postgres@127.0.0.1:5432/test")

        async def postgres() -> _Raw:
            asyncpg: Any = importlib.import_module("asyncpg")

            connection = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/test")
            return _RawPostgres(connection, table)

        return engine, postgres
    engine = create_async_engine("mysql+asyncmy://root@127.0.0.1:3306/test")

    async def mariadb() -> _Raw:
        asyncmy: Any = importlib.import_module("asyncmy")

        connection: Any = await asyncmy.connect(host="127.0.0.1", port=3306, user="root", db="test")
        async with connection.cursor() as cursor:
            await cursor.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        return _RawMariaDB(connection, table)

    return engine, mariadb


def _model(table: str) -> type[Any]:
    from sqlalchemy.orm import DeclarativeBase

    from cqrs._internal.outbox.sqlalchemy import OutboxModel, rebind_outbox_model

    class BenchBase(DeclarativeBase):
        pass

    return rebind_outbox_model(OutboxModel, BenchBase, table)


async def _fill(engine: Any, model: type[Any], count: int, topic: str) -> None:
    """``count`` NEW rows of distinct events, as the repository writes them."""
    import pydantic
    from sqlalchemy import insert

    import cqrs
    from cqrs._internal.outbox.models import EventStatus
    from cqrs._internal.serialization.json import default_serializer

    class OrderPayload(pydantic.BaseModel):
        order_id: int

    rows: list[dict[str, Any]] = []
    for n in range(count):
        event = cqrs.NotificationEvent[OrderPayload](
            event_name="OrderPlaced", topic=topic, payload=OrderPayload(order_id=n)
        )
        rows.append(
            {
                "event_id": event.event_id,
                "event_id_bin": event.event_id.bytes,
                "event_name": "OrderPlaced",
                "topic": topic,
                "payload": default_serializer(event),
                "event_status": EventStatus.NEW,
                "flush_counter": 0,
                "created_at": _now(),
            }
        )
    async with engine.begin() as connection:
        await connection.execute(insert(model.__table__), rows)


async def _produced(engine: Any, model: type[Any]) -> int:
    from sqlalchemy import func, select

    from cqrs._internal.outbox.models import EventStatus

    table = model.__table__
    async with engine.connect() as connection:
        found = await connection.scalar(
            select(func.count()).where(table.c.event_status == EventStatus.PRODUCED)
        )
    return int(found or 0)


# --- the brokers -----------------------------------------------------------------------------


class _Brokers:
    """Ours: a ``MessageBroker``; raw: ``publish(rows)`` pipelining a batch with the client."""

    ours: Any
    topic: str

    async def fresh(self) -> None:
        """Before each timed drain."""

    async def raw_publish(self, rows: list[tuple[int, uuid.UUID, str, str, bytes]]) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        """After the row."""


class _Memory(_Brokers):
    def __init__(self, topic: str) -> None:
        self.topic = topic

    async def fresh(self) -> None:
        from cqrs._internal.brokers.memory import InMemoryMessageBroker

        self.ours = InMemoryMessageBroker()

    async def raw_publish(self, rows: list[tuple[int, uuid.UUID, str, str, bytes]]) -> None:
        from cqrs._internal.brokers.protocol import Message

        broker = self.ours
        await asyncio.gather(
            *(
                broker.send_message(
                    Message(
                        message_name=name,
                        topic=topic,
                        payload=body,
                        message_id=event_id,
                        payload_bytes=body,
                    )
                )
                for _, event_id, name, topic, body in rows
            )
        )


class _Rabbit(_Brokers):
    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.connection: Any = None
        self.exchange: Any = None

    async def start(self) -> None:
        import aio_pika

        from cqrs._internal.brokers.protocol import Message
        from cqrs.message_brokers.amqp import AMQPMessageBroker

        self.ours = AMQPMessageBroker.from_url(RABBIT_URL, EXCHANGE)
        await self.ours.open()
        warm = Message(message_name="warm", topic=self.topic, payload={"warm": True})
        await self.ours.send_message(warm)  # declares the queue for both
        self.connection = await aio_pika.connect(RABBIT_URL)
        channel = await self.connection.channel(publisher_confirms=True, on_return_raises=True)
        self.exchange = await channel.get_exchange(EXCHANGE, ensure=False)

    async def raw_publish(self, rows: list[tuple[int, uuid.UUID, str, str, bytes]]) -> None:
        import aio_pika

        exchange = self.exchange
        await asyncio.gather(
            *(
                exchange.publish(
                    aio_pika.Message(
                        body,
                        message_id=str(event_id),
                        type=name,
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    ),
                    routing_key=topic,
                    mandatory=True,
                )
                for _, event_id, name, topic, body in rows
            )
        )

    async def close(self) -> None:
        if self.connection is not None:
            channel = await self.connection.channel()
            await channel.queue_delete(self.topic)
            await self.connection.close()
        if self.ours is not None:
            await self.ours.close()


# --- the row ---------------------------------------------------------------------------------


async def _row(settings: Settings, database: str, broker_name: str) -> Row:
    from sqlalchemy import text

    from cqrs._internal.outbox.relay import OutboxRelay

    count, runs = sizes(settings)
    table = f"relay_bench_{uuid.uuid4().hex[:10]}"
    topic = f"cqrs-bench-{uuid.uuid4().hex[:8]}"
    model = _model(table)
    with tempfile.TemporaryDirectory() as directory:
        engine, open_raw = await _open(database, Path(directory), table)
        brokers: _Brokers = _Memory(topic) if broker_name == "memory" else _Rabbit(topic)
        raw_db: _Raw | None = None
        try:
            async with engine.begin() as connection:
                await connection.run_sync(model.metadata.create_all)
            if isinstance(brokers, _Rabbit):
                await brokers.start()
            raw_side: _Raw = await open_raw()
            raw_db = raw_side

            await brokers.fresh()
            relay = OutboxRelay(engine, brokers.ours, model=model, batch_size=BATCH)

            async def ours() -> None:
                relay.broker = brokers.ours
                await relay.drain()

            async def raw() -> None:
                while rows := await raw_side.claim(str(uuid.uuid4())):
                    await brokers.raw_publish(rows)
                    await raw_side.mark([r[0] for r in rows])

            ours_samples: list[tuple[int, int]] = []
            raw_samples: list[tuple[int, int]] = []
            expected = 0
            for run in (raw, ours):  # warm up both, untimed
                await _fill(engine, model, BATCH, topic)
                await brokers.fresh()
                await run()
                expected += BATCH
            for _ in range(runs):
                for run, samples in ((raw, raw_samples), (ours, ours_samples)):
                    await _fill(engine, model, count, topic)
                    await brokers.fresh()
                    samples.append(await timed(run))
                    expected += count
                    assert await _produced(engine, model) == expected
        finally:
            if raw_db is not None:
                await raw_db.close()
            await brokers.close()
            async with engine.begin() as connection:
                await connection.execute(text(f"DROP TABLE IF EXISTS {table}"))
            await engine.dispose()
    return comparison_row(
        row_name(database, broker_name),
        ours_samples,
        raw_samples,
        count,
        RELAY_TARGET,
        f"batches of {BATCH}, {count} rows per run",
    )


if __name__ == "__main__":
    from benchmarks.report import format_table
    from benchmarks.settings import FULL

    print(format_table(asyncio.run(relay_rows(FULL))))
