"""EventProducer (the 4.x relay loop) over the SQL outbox on SQLite, PostgreSQL and MariaDB:
broker failures, a relay cancelled mid-batch, and the idle wait. Counted at the end."""

from __future__ import annotations

import asyncio
import collections
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import cqrs
from cqrs.compressors import ZlibCompressor
from cqrs.message_brokers import Message
from cqrs.outbox.map import OutboxedEventMap
from cqrs.outbox.repository import EventStatus
from cqrs.producer import EventProducer
from cqrs.testing import CallbackMessageBroker
from tests.sql_support import DATABASES, drop_tables, engine_for, unique_name
from tests.support import PATIENCE

sa = pytest.importorskip("sqlalchemy", reason="the sqlalchemy extra is not installed")

from sqlalchemy import event as sa_event  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker  # noqa: E402
from sqlalchemy.orm import DeclarativeBase  # noqa: E402

from cqrs.outbox.sqlalchemy import (  # noqa: E402
    OutboxModel,
    SqlAlchemyOutboxedEventRepository,
    rebind_outbox_model,
)


class Payload(cqrs.Response):
    n: int


class Numbered(cqrs.NotificationEvent[Payload]):
    event_name: str = "numbered"
    topic: str = "numbers"


class Outbox:
    """One test's outbox table and its sessions."""

    def __init__(self, engine: Any, model: Any) -> None:
        self.engine = engine
        self.model = model
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)
        self.events = OutboxedEventMap()
        self.events.register("numbered", Numbered)

    def repository(
        self, session: AsyncSession, **options: Any
    ) -> SqlAlchemyOutboxedEventRepository:
        return SqlAlchemyOutboxedEventRepository(
            session, ZlibCompressor(), event_map=self.events, model=self.model, **options
        )

    async def write(self, count: int) -> list[uuid.UUID]:
        events = [Numbered(payload=Payload(n=n)) for n in range(count)]
        async with self.sessions() as session:
            repository = self.repository(session)
            for event in events:
                repository.add(event)
            await repository.commit()
        return [e.event_id for e in events]

    async def statuses(self) -> collections.Counter[EventStatus]:
        async with self.sessions() as session:
            found = await session.execute(sa.select(self.model.event_status))
            return collections.Counter(found.scalars())


@pytest.fixture(params=DATABASES)
async def outbox(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Outbox]:
    engine = engine_for(request.param, tmp_path)

    class Base(DeclarativeBase):
        pass

    name = unique_name("outbox")
    model = rebind_outbox_model(OutboxModel, Base, name)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(lambda c: Base.metadata.create_all(c, checkfirst=True))
        yield Outbox(engine, model)
    finally:
        await drop_tables(engine, [name])
        await engine.dispose()


async def run_until_drained(outbox: Outbox, broker: Any, **options: Any) -> None:
    """The 4.x loop, until no row waits (rows waiting for a retry included)."""
    async with asyncio.timeout(PATIENCE), outbox.sessions() as session:
        producer = EventProducer(broker, outbox.repository(session, **options), poll_interval=0.01)
        async for batch in producer.event_batch_generator(batch_size=10):
            for outboxed in batch:
                await producer.send_message(outboxed)
            await producer.repository.commit()
            statuses = await outbox.statuses()
            await session.commit()
            if set(statuses) == {EventStatus.PRODUCED}:
                return


async def test_a_broker_outage_mid_run_loses_nothing_and_duplicates_nothing(
    outbox: Outbox,
) -> None:
    ids = await outbox.write(100)
    attempts = 0
    published: list[Message] = []

    def send(message: Message) -> None:
        nonlocal attempts
        attempts += 1
        if 15 <= attempts < 45:  # the broker is down for 30 sends in the middle of the run
            raise ConnectionError("broker unavailable")
        published.append(message)

    await run_until_drained(
        outbox, CallbackMessageBroker(send), retry_delay=lambda failures: 0.02 * failures
    )
    assert sorted(m.message_id for m in published) == sorted(ids)  # each event exactly once
    assert attempts == 130  # 100 publishes + 30 failed tries
    assert await outbox.statuses() == {EventStatus.PRODUCED: 100}
    async with outbox.sessions() as session:
        counters = (await session.execute(sa.select(outbox.model.flush_counter))).scalars()
        assert sum(counters) == 30  # every failure counted once


async def test_a_relay_cancelled_mid_batch_republishes_only_that_batch(outbox: Outbox) -> None:
    ids = await outbox.write(35)
    published: list[uuid.UUID] = []
    stuck = asyncio.Event()

    async def send(message: Message) -> None:
        published.append(message.message_id)
        if len(published) == 15:  # the broker took it, the relay dies before marking it
            stuck.set()
            await asyncio.Event().wait()

    first = asyncio.create_task(run_until_drained(outbox, CallbackMessageBroker(send)))
    async with asyncio.timeout(PATIENCE):
        await stuck.wait()
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await outbox.statuses() == {EventStatus.PRODUCED: 10, EventStatus.NEW: 25}
    survivors: list[uuid.UUID] = []

    def resend(message: Message) -> None:
        survivors.append(message.message_id)

    await run_until_drained(outbox, CallbackMessageBroker(resend))
    assert sorted(set(published) | set(survivors)) == sorted(ids)  # nothing lost
    duplicates = set(published) & set(survivors)
    assert len(duplicates) == 5  # only the rows of the batch in flight
    assert len(survivors) == 25
    assert await outbox.statuses() == {EventStatus.PRODUCED: 35}


async def test_an_idle_loop_waits_between_queries(outbox: Outbox) -> None:
    selects: list[str] = []
    table = outbox.model.__table__.name

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and table in statement:
            selects.append(statement)

    sync_engine = outbox.engine.sync_engine
    sa_event.listen(sync_engine, "before_cursor_execute", count)
    loop = asyncio.get_running_loop()
    try:
        async with outbox.sessions() as session:
            producer = EventProducer(
                CallbackMessageBroker(lambda m: None),
                outbox.repository(session),
                poll_interval=0.05,
            )
            started = loop.time()
            batches = 0
            async for batch in producer.event_batch_generator():
                assert batch == []
                batches += 1
                if batches == 4:
                    break
            elapsed = loop.time() - started
    finally:
        sa_event.remove(sync_engine, "before_cursor_execute", count)
    assert len(selects) == 4
    assert elapsed >= 3 * 0.05
