"""Inbox rows: a consumer with the inbox beside the same consumer without it, same run.

Each variant consumes its own ``N`` fresh events (distinct ids) from the in-memory broker
with ``EventConsumer`` (prefetch 10, one at a time, so the rows are the cost per event), on
SQLite (a file) and, when their servers answer on 127.0.0.1, PostgreSQL (asyncpg) and
MariaDB (asyncmy). Timed from starting the consumer until every event is handled and acked.
Rows per database, in CPU µs of this process per event (the medians of alternated runs;
wall time and events/s in the note). CPU, because wall time on SQLite is the disk's fsync,
which moves 2x between two runs of the same code on a shared machine; the database
server's own CPU (PostgreSQL, MariaDB) is not in it:

* **handler writes 1 row: with inbox vs own transaction.** Ours: ``IdempotentEventMediator``
  over ``SqlAlchemyInbox``; the handler inserts its row through ``current_inbox_session()``
  (one transaction: the inbox record and the row). Baseline: the same handler opening its
  own session, inserting the row and committing (one transaction, one row), which is what a
  consumer writing to a database does without an inbox. Target ratio <= 1.5: the inbox costs
  one more ``INSERT`` in a transaction the handler pays for anyway.
* **no-op handler: with inbox vs without.** The inbox's whole cost (a transaction per event)
  beside a consumer doing nothing; information.

Without SQLAlchemy (the sqlalchemy extra) every row is an ``ERROR`` row saying
so; a database whose server or driver is missing gives ``ERROR`` rows naming it; the run
goes on.
"""

from __future__ import annotations

import asyncio
import importlib.util
import statistics
import uuid
import warnings
from collections.abc import Awaitable, Callable
from tempfile import TemporaryDirectory
from typing import Any

from benchmarks.broker_bench import EventTypes, Sample, Samples, error_rows, reachable, sizes, timed
from benchmarks.report import Row, Target, failed_row
from benchmarks.settings import Settings

PREFETCH = 10
WRITE_TARGET = Target("ratio", 1.5)
NOTE = "in-memory broker, 1 event at a time"

_DATABASES: tuple[tuple[str, str, str, int | None], ...] = (
    # (label, driver module, URL, server port)
    ("SQLite", "aiosqlite", "sqlite+aiosqlite:///{folder}/inbox-bench.sqlite3", None),
    ("PostgreSQL", "asyncpg", "postgresql+asyncpg://postgres@127.0.0.1:5432/test", 5432),
    ("MariaDB", "asyncmy", "mysql+asyncmy://root@127.0.0.1:3306/test", 3306),
)


def _names(label: str) -> tuple[str, str]:
    return (
        f"inbox consume, {label}: handler writes 1 row, with inbox vs own transaction",
        f"inbox consume, {label}: no-op handler, with inbox vs without",
    )


async def inbox_rows(settings: Settings) -> list[Row]:
    """The inbox rows of every database (``ERROR`` rows where one cannot be measured)."""
    if importlib.util.find_spec("sqlalchemy") is None:
        names = [n for label, *_ in _DATABASES for n in _names(label)]
        return error_rows(names, "SQLAlchemy is not installed (the sqlalchemy extra)")
    rows: list[Row] = []
    with TemporaryDirectory() as folder:
        for label, driver, url, port in _DATABASES:
            names = _names(label)
            if importlib.util.find_spec(driver) is None:
                rows.extend(error_rows(names, f"the {label} driver {driver} is not installed"))
            elif port is not None and not reachable(port):
                rows.extend(error_rows(names, f"no {label} server on 127.0.0.1:{port}"))
            else:
                try:
                    rows.extend(await _database_rows(label, url.format(folder=folder), settings))
                except Exception as exc:  # reported as ERROR rows
                    rows.extend(failed_row(n, exc) for n in names)
    return rows


class _Done:
    """Wraps a mediator: counts the events it finished and wakes :meth:`wait` at ``count``."""

    def __init__(self, mediator: Any, count: int) -> None:
        self._mediator = mediator
        self._count = count
        self.sent = 0
        self.done = asyncio.Event()

    async def send(self, event: Any) -> None:
        await self._mediator.send(event)
        self.sent += 1
        if self.sent == self._count:
            self.done.set()


async def _consume(types: EventTypes, mediator: Any, count: int) -> Sample:
    """The sample of ``EventConsumer`` handling ``count`` fresh events through ``mediator``."""
    from cqrs.consumers import EventConsumer
    from cqrs.testing import InMemoryMessageBroker

    topic = f"inbox-bench-{uuid.uuid4().hex[:8]}"
    async with InMemoryMessageBroker() as broker:
        await types.fill(broker, topic, count, PREFETCH)
        done = _Done(mediator, count)
        consumer = EventConsumer(
            await broker.subscribe(topic, prefetch=PREFETCH), done, types.event, concurrency=1
        )

        async def run() -> None:
            running = asyncio.create_task(consumer.run())
            await done.done.wait()
            await consumer.stop()
            await running

        sample = await timed(run)
    if consumer.stats.acked != count:
        raise AssertionError(f"{consumer.stats.acked} of {count} events acked")
    return sample


async def _database_rows(label: str, url: str, settings: Settings) -> list[Row]:
    import sqlalchemy as sa
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
    from sqlalchemy.orm import DeclarativeBase

    import cqrs
    from cqrs.events import bootstrap
    from cqrs.inbox import IdempotentEventMediator
    from cqrs.inbox.sqlalchemy import (
        InboxModel,
        SqlAlchemyInbox,
        current_inbox_session,
        rebind_inbox_model,
    )
    from cqrs.testing import StaticContainer

    count, runs = sizes(settings, full=(500, 5), quick=(150, 3))
    types = EventTypes()
    suffix = uuid.uuid4().hex[:10]

    class Base(DeclarativeBase):
        pass

    inbox_model = rebind_inbox_model(InboxModel, Base, f"inbox_bench_{suffix}")
    effects = sa.Table(
        f"inbox_bench_effects_{suffix}",
        Base.metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("order_id", sa.Integer, nullable=False),
    )
    engine = create_async_engine(url)
    factory = async_sessionmaker(engine, expire_on_commit=False)
    insert = sa.insert(effects)
    event_type = types.event

    class OwnTransaction(cqrs.EventHandler[event_type]):  # type: ignore[valid-type]
        async def handle(self, event: Any) -> None:
            async with factory() as session:
                await session.execute(insert, {"order_id": event.payload.order_id})
                await session.commit()

    class InInbox(cqrs.EventHandler[event_type]):  # type: ignore[valid-type]
        async def handle(self, event: Any) -> None:
            await current_inbox_session().execute(insert, {"order_id": event.payload.order_id})

    def mediator(handler: type[Any]) -> Any:
        return bootstrap.bootstrap(
            di_container=StaticContainer({handler: handler()}),
            events_mapper=lambda mapper: mapper.bind(event_type, handler),
        )

    def guarded(inner: Any) -> Any:
        inbox = SqlAlchemyInbox(factory, consumer=f"bench-{suffix}", model=inbox_model)
        return IdempotentEventMediator(inner, inbox)

    variants: dict[str, Callable[[], Awaitable[Sample]]] = {
        "own": lambda: _consume(types, mediator(OwnTransaction), count),
        "inbox": lambda: _consume(types, guarded(mediator(InInbox)), count),
        "bare": lambda: _consume(types, types.mediator(types.counter()), count),
        "inbox_noop": lambda: _consume(types, guarded(types.mediator(types.counter())), count),
    }
    samples: dict[str, Samples] = {name: [] for name in variants}
    try:
        async with engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)
        for run in variants.values():  # warm-up: connections, statement caches
            await run()
        for _ in range(runs):
            for name, run in variants.items():
                samples[name].append(await run())
    finally:
        try:
            async with engine.begin() as connection:
                for table in (inbox_model.__table__.name, effects.name):  # type: ignore[attr-defined]
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        await connection.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        finally:
            await engine.dispose()
    write_row, noop_row = _names(label)
    return [
        _cpu_row(write_row, samples["inbox"], samples["own"], count, WRITE_TARGET, NOTE),
        _cpu_row(noop_row, samples["inbox_noop"], samples["bare"], count, None, NOTE),
    ]


def _cpu_row(
    name: str, ours: Samples, base: Samples, count: int, target: Target | None, note: str
) -> Row:
    """Ours beside the baseline in CPU µs per event (medians), wall time in the note."""

    def per_event(samples: Samples, index: int) -> float:
        return statistics.median(s[index] for s in samples) / count / 1000

    ours_cpu, base_cpu = per_event(ours, 1), per_event(base, 1)
    ours_wall, base_wall = per_event(ours, 0), per_event(base, 0)
    return Row(
        name=name,
        unit="CPU µs/event",
        ours=ours_cpu,
        baseline=base_cpu,
        target=target,
        note=(
            f"{note}; wall {ours_wall:.0f} vs {base_wall:.0f} µs/event "
            f"({1e6 / ours_wall:,.0f} vs {1e6 / base_wall:,.0f} events/s)"
        ),
        details={
            "events": count,
            "ours_wall_us": ours_wall,
            "baseline_wall_us": base_wall,
            "ours_samples_ns": ours,
            "baseline_samples_ns": base,
        },
    )


if __name__ == "__main__":  # python -m benchmarks.inbox [--quick]
    import sys

    from benchmarks.report import format_table
    from benchmarks.settings import FULL, QUICK

    chosen = QUICK if "--quick" in sys.argv[1:] else FULL
    print(format_table(asyncio.run(inbox_rows(chosen))))
