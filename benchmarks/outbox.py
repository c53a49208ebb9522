"""Outbox write cost (issue #9 §6): ``SqlAlchemyOutboxedEventRepository.add`` beside a plain
SQLAlchemy insert of the same row, in the same kind of transaction.

Each run opens one session and one transaction, writes ``BATCH`` notification events and
commits, ``count`` events in all; CPU µs of this process per event (the database server's own
CPU is not in it; wall time is in the note):

* **ours**: ``repository.add(event)`` for each event: the registry lookup and type check,
  serializing ``event.to_dict()`` to JSON, and ``session.add`` of the outbox row;
* **baseline**: ``session.add(OutboxModel(...))`` of the same columns, the JSON serialized by
  hand: what writing the event without the library costs at least.

Target ratio <= 1.3 (issue #9 §6). SQLite always; PostgreSQL and MariaDB when their servers
answer on 127.0.0.1 (else ``ERROR`` rows naming why, and the run goes on).
"""

from __future__ import annotations

import asyncio
import datetime
import importlib.util
import statistics
import uuid
import warnings
from collections.abc import Awaitable, Callable
from tempfile import TemporaryDirectory
from typing import Any

from benchmarks.broker_bench import Samples, alternate, error_rows, reachable, sizes
from benchmarks.report import Row, Target, failed_row
from benchmarks.settings import Settings

BATCH = 100  # events per transaction
TARGET = Target("ratio", 1.3)

_DATABASES: tuple[tuple[str, str, str, int | None], ...] = (
    ("SQLite", "aiosqlite", "sqlite+aiosqlite:///{folder}/outbox-bench.sqlite3", None),
    ("PostgreSQL", "asyncpg", "postgresql+asyncpg://postgres@127.0.0.1:5432/test", 5432),
    ("MariaDB", "asyncmy", "mysql+asyncmy://root@127.0.0.1:3306/test", 3306),
)


def _name(label: str) -> str:
    return f"outbox write: {label}, add vs plain insert"


async def outbox_rows(settings: Settings) -> list[Row]:
    """The outbox write row of every database (``ERROR`` rows where one cannot be measured)."""
    if importlib.util.find_spec("sqlalchemy") is None:
        names = [_name(label) for label, *_ in _DATABASES]
        return error_rows(names, "SQLAlchemy is not installed (the sqlalchemy extra)")
    rows: list[Row] = []
    with TemporaryDirectory() as folder:
        for label, driver, url, port in _DATABASES:
            name = _name(label)
            if importlib.util.find_spec(driver) is None:
                rows.extend(error_rows([name], f"the {label} driver {driver} is not installed"))
            elif port is not None and not reachable(port):
                rows.extend(error_rows([name], f"no {label} server on 127.0.0.1:{port}"))
            else:
                try:
                    rows.append(await _database_row(name, url.format(folder=folder), settings))
                except Exception as exc:  # reported as an ERROR row
                    rows.append(failed_row(name, exc))
    return rows


async def _database_row(name: str, url: str, settings: Settings) -> Row:
    import pydantic
    import sqlalchemy as sa
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
    from sqlalchemy.orm import DeclarativeBase

    import cqrs
    from cqrs.outbox.map import OutboxedEventMap
    from cqrs.outbox.sqlalchemy import (
        OutboxModel,
        SqlAlchemyOutboxedEventRepository,
        rebind_outbox_model,
    )
    from cqrs.serializers import default_serializer

    count, runs = sizes(settings, full=(3_000, 5), quick=(1_000, 3))

    class Payload(pydantic.BaseModel):
        order_id: int
        customer: str

    class OrderPlaced(cqrs.NotificationEvent[Payload]):
        event_name: str = "order_placed"
        topic: str = "orders"

    event_map = OutboxedEventMap()
    event_map.register("order_placed", OrderPlaced)

    class Base(DeclarativeBase):
        pass

    model: Any = rebind_outbox_model(OutboxModel, Base, f"outbox_bench_{uuid.uuid4().hex[:10]}")
    engine = create_async_engine(url)
    factory = async_sessionmaker(engine, expire_on_commit=False)

    def events() -> list[Any]:
        return [
            OrderPlaced(payload=Payload(order_id=n, customer=f"customer-{n}")) for n in range(count)
        ]

    async def in_batches(write: Callable[[AsyncSession, Any], None]) -> None:
        made = events()
        for first in range(0, count, BATCH):
            async with factory() as session, session.begin():
                for event in made[first : first + BATCH]:
                    write(session, event)

    def ours(session: AsyncSession, event: Any) -> None:
        SqlAlchemyOutboxedEventRepository(session, event_map=event_map, model=model).add(event)

    def plain(session: AsyncSession, event: Any) -> None:
        session.add(
            model(
                event_id=event.event_id,
                event_id_bin=event.event_id.bytes,
                event_name=event.event_name,
                created_at=event.event_timestamp.astimezone(datetime.UTC).replace(tzinfo=None),
                payload=default_serializer(event),
                topic=event.topic,
            )
        )

    async def run_ours() -> None:
        await in_batches(ours)

    async def run_plain() -> None:
        await in_batches(plain)

    async def empty() -> None:
        async with engine.begin() as connection:
            await connection.execute(sa.delete(model.__table__))

    variants: tuple[Callable[[], Awaitable[None]], ...] = (run_plain, run_ours)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)
        for run in variants:  # warm-up: connections, statement caches
            await run()
            await empty()
        ours_samples: Samples = []
        plain_samples: Samples = []
        for _ in range(runs):
            got_ours, got_plain = await alternate(1, run_plain, run_ours)
            ours_samples += got_ours
            plain_samples += got_plain
            await empty()
    finally:
        try:
            async with engine.begin() as connection:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    await connection.execute(sa.text(f"DROP TABLE IF EXISTS {model.__tablename__}"))
        finally:
            await engine.dispose()

    def per_event(samples: Samples, index: int) -> float:
        return statistics.median(s[index] for s in samples) / count / 1000

    ours_wall, plain_wall = per_event(ours_samples, 0), per_event(plain_samples, 0)
    return Row(
        name=name,
        unit="CPU µs/event",
        ours=per_event(ours_samples, 1),
        baseline=per_event(plain_samples, 1),
        target=TARGET,
        note=(
            f"{count} events, {BATCH} per transaction; wall {ours_wall:.0f} vs "
            f"{plain_wall:.0f} µs/event"
        ),
        details={
            "events": count,
            "ours_samples_ns": ours_samples,
            "baseline_samples_ns": plain_samples,
        },
    )


if __name__ == "__main__":  # python -m benchmarks.outbox [--quick]
    import sys

    from benchmarks.report import format_table
    from benchmarks.settings import FULL, QUICK

    chosen = QUICK if "--quick" in sys.argv[1:] else FULL
    print(format_table(asyncio.run(outbox_rows(chosen))))
