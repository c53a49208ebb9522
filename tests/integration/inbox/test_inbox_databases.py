"""``SqlAlchemyInbox`` on SQLite, PostgreSQL and MariaDB: a handler that writes then fails
leaves neither its rows nor the record; redelivered, republished and concurrent deliveries of
one event (one process or several engines, as several consumer processes) run its handlers
once; each consumer handles every event once. Rows are counted at the end."""

from __future__ import annotations

import asyncio
import datetime
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("sqlalchemy", reason="the sqlalchemy extra is not installed")

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import async_sessionmaker

from cqrs.consumers import Backoff, EventConsumer
from cqrs.inbox import IdempotentEventMediator
from cqrs.inbox.sqlalchemy import SqlAlchemyInbox, current_inbox_session
from cqrs.testing import InMemoryMessageBroker
from tests.integration.brokers.support import (
    OrderPlaced,
    Recorder,
    mediator_for,
    order_event,
    order_messages,
)
from tests.integration.inbox.support import Tables, make_tables
from tests.sql_support import DATABASES, engine_for
from tests.support import LONG_TEST_TIMEOUT, wait_until_async

pytestmark = pytest.mark.timeout(LONG_TEST_TIMEOUT)

NO_WAIT = Backoff(initial=0.0)


@pytest.fixture(params=DATABASES)
async def database(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[str, Any, Tables]]:
    """(kind, engine, tables) with this test's own inbox and effects tables."""
    kind: str = request.param
    engine = engine_for(kind, tmp_path)
    tables = make_tables()
    try:
        await tables.create(engine)
        yield kind, engine, tables
    finally:
        try:
            await tables.drop(engine)
        finally:
            await engine.dispose()


def writer(tables: Tables, fail: Any = None) -> Recorder:
    """A handler writing one effect row per call through the inbox session, then raising
    when ``fail(event, call)`` says so (its row must disappear with the record)."""

    async def behaviour(event: Any, call: int) -> None:
        session = current_inbox_session()
        await session.execute(sa.insert(tables.effects).values(order_id=event.payload.order_id))
        if fail is not None and fail(event, call):
            raise ConnectionError(f"fails after its write (call {call})")

    return Recorder(behaviour)


# -- the hostile cases first ----------------------------------------------------------------


async def test_writes_of_a_failed_handler_vanish_and_redeliveries_run_once(
    database: tuple[str, Any, Tables],
) -> None:
    """30 orders through EventConsumer with 5 at once: every 7th fails once after writing
    its effect row, 10 are published twice, and the ack of every 5th is lost once after its
    commit. Each order has exactly one effect row and one inbox record at the end."""
    _, engine, tables = database
    recorder = writer(
        tables, fail=lambda event, call: event.payload.order_id % 7 == 0 and call == 1
    )
    inbox = SqlAlchemyInbox(async_sessionmaker(engine), consumer="billing", model=tables.inbox)
    guarded = IdempotentEventMediator(mediator_for(recorder), inbox)
    lost: set[int] = set()

    class AckLost:
        async def send(self, event: Any) -> None:
            await guarded.send(event)
            order = event.payload.order_id
            if order % 5 == 0 and order not in lost:
                lost.add(order)
                raise ConnectionError("connection lost before the ack")

    name = f"orders-{uuid.uuid4().hex[:8]}"
    messages = order_messages(30, name)
    async with InMemoryMessageBroker() as broker:
        for message in [*messages, *messages[10:20]]:
            await broker.send_message(message)
        consumer = EventConsumer(
            await broker.subscribe(name, prefetch=10),
            AckLost(),
            OrderPlaced,
            backoff=NO_WAIT,
            concurrency=5,
        )
        running = asyncio.create_task(consumer.run())
        await wait_until_async(
            lambda: consumer.stats.acked == 40,
            "40 acks",
            details=lambda: f"{consumer.stats}, {guarded.stats}",
        )
        await consumer.stop()
        await running
    failing = [n for n in range(30) if n % 7 == 0]
    assert await tables.effect_counts(engine) == dict.fromkeys(range(30), 1)
    rows = await tables.inbox_rows(engine)
    assert sorted(r.event_id for r in rows) == sorted(m.message_id for m in messages)
    assert {(r.consumer, r.event_name) for r in rows} == {("billing", "OrderPlaced")}
    assert sum(recorder.calls.values()) == 30 + len(failing)
    assert recorder.handled == dict.fromkeys(range(30), 1)
    handled, duplicates, failed = (
        guarded.stats.handled,
        guarded.stats.duplicates,
        guarded.stats.failed,
    )
    assert (handled, failed) == (30, len(failing))
    assert duplicates == 10 + len(lost)  # the republished ten, and each lost ack's redelivery
    assert consumer.stats.dead_lettered == 0


async def test_a_handler_cancelled_mid_transaction_leaves_nothing_and_runs_again(
    database: tuple[str, Any, Tables],
) -> None:
    """A consumer stopped past its grace cancels the handler inside the open transaction
    (its effect row written): the rollback takes the row and the record; the redelivery
    then runs the handler and commits both."""
    _, engine, tables = database
    inside = asyncio.Event()

    async def hang_first(event: Any, call: int) -> None:
        session = current_inbox_session()
        await session.execute(sa.insert(tables.effects).values(order_id=event.payload.order_id))
        if call == 1:
            inside.set()
            await asyncio.Event().wait()

    recorder = Recorder(hang_first)
    inbox = SqlAlchemyInbox(async_sessionmaker(engine), model=tables.inbox)
    guarded = IdempotentEventMediator(mediator_for(recorder), inbox)
    event = order_event(3, "orders")
    sending = asyncio.create_task(guarded.send(event))
    await inside.wait()
    sending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sending
    assert await tables.effect_counts(engine) == {}
    assert not await inbox.contains(event.event_id)
    await guarded.send(event)
    await guarded.send(event)
    assert await tables.effect_counts(engine) == {3: 1}
    assert recorder.calls == {3: 2}
    assert (guarded.stats.handled, guarded.stats.duplicates, guarded.stats.failed) == (1, 1, 1)


async def test_concurrent_deliveries_from_several_engines_run_once(
    database: tuple[str, Any, Tables], tmp_path: Path
) -> None:
    """Three engines (as three consumer processes) deliver one event four times each, at
    once; the handler takes a while. The second insert of the key waits for the first
    transaction, then finds the record: one handler run, one effect row."""
    kind, engine, tables = database
    engines = [engine, engine_for(kind, tmp_path), engine_for(kind, tmp_path)]
    recorder = Recorder()

    async def slow_write(event: Any, call: int) -> None:
        session = current_inbox_session()
        await session.execute(sa.insert(tables.effects).values(order_id=event.payload.order_id))
        await asyncio.sleep(0.3)

    recorder.behaviour = slow_write
    guards = [
        IdempotentEventMediator(
            mediator_for(recorder),
            SqlAlchemyInbox(async_sessionmaker(e), consumer="billing", model=tables.inbox),
        )
        for e in engines
    ]
    event = order_event(1, "orders")
    try:
        await asyncio.gather(*(g.send(event) for g in guards for _ in range(4)))
    finally:
        for extra in engines[1:]:
            await extra.dispose()
    assert await tables.effect_counts(engine) == {1: 1}
    assert recorder.calls == {1: 1}
    assert sum(g.stats.handled for g in guards) == 1
    assert sum(g.stats.duplicates for g in guards) == 11
    assert sum(g.stats.failed for g in guards) == 0
    assert len(await tables.inbox_rows(engine)) == 1


async def test_when_the_first_concurrent_delivery_fails_exactly_one_other_runs(
    database: tuple[str, Any, Tables],
) -> None:
    """The first claim holds the key while its handler writes, waits, then fails; four
    other deliveries wait on the key meanwhile. After its rollback one of them runs the
    handler (on MariaDB the others may lose a deadlock first and try again), the rest find
    its record."""
    _, engine, tables = database
    first_in = asyncio.Event()
    release = asyncio.Event()

    async def first_fails(event: Any, call: int) -> None:
        session = current_inbox_session()
        await session.execute(sa.insert(tables.effects).values(order_id=event.payload.order_id))
        if call == 1:
            first_in.set()
            await release.wait()
            raise ConnectionError("the first delivery fails")

    recorder = Recorder(first_fails)
    inbox = SqlAlchemyInbox(async_sessionmaker(engine), model=tables.inbox)
    guarded = IdempotentEventMediator(mediator_for(recorder), inbox)
    event = order_event(2, "orders")
    first = asyncio.create_task(guarded.send(event))
    await first_in.wait()
    others = [asyncio.create_task(guarded.send(event)) for _ in range(4)]
    await asyncio.sleep(0.5)  # let them reach the key's lock (not needed for correctness)
    assert recorder.started == 1
    release.set()
    with pytest.raises(ConnectionError):
        await first
    await asyncio.gather(*others)
    assert await tables.effect_counts(engine) == {2: 1}
    assert recorder.calls == {2: 2}
    assert recorder.handled == {2: 1}
    assert (guarded.stats.handled, guarded.stats.duplicates, guarded.stats.failed) == (1, 3, 1)


async def test_each_consumer_handles_every_event_once(database: tuple[str, Any, Tables]) -> None:
    _, engine, tables = database
    factory = async_sessionmaker(engine)
    recorders = {name: writer(tables) for name in ("billing", "shipping")}
    guards = {
        name: IdempotentEventMediator(
            mediator_for(recorder), SqlAlchemyInbox(factory, consumer=name, model=tables.inbox)
        )
        for name, recorder in recorders.items()
    }
    events = [order_event(n, "orders") for n in range(3)]
    for _ in range(2):
        for event in events:
            for guard in guards.values():
                await guard.send(event)
    assert await tables.effect_counts(engine) == dict.fromkeys(range(3), 2)
    assert all(r.calls == dict.fromkeys(range(3), 1) for r in recorders.values())
    rows = await tables.inbox_rows(engine)
    assert sorted((r.consumer, r.event_id) for r in rows) == sorted(
        (c, e.event_id) for c in recorders for e in events
    )


async def test_purge_deletes_old_records_of_every_consumer(
    database: tuple[str, Any, Tables],
) -> None:
    _, engine, tables = database
    factory = async_sessionmaker(engine)
    inboxes = [SqlAlchemyInbox(factory, consumer=c, model=tables.inbox) for c in ("a", "b")]
    event = order_event(1, "orders")
    for inbox in inboxes:
        await IdempotentEventMediator(mediator_for(Recorder()), inbox).send(event)
    assert await inboxes[0].purge(datetime.datetime(2000, 1, 1)) == 0
    tomorrow = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)
    assert await inboxes[0].purge(tomorrow) == 2  # an aware time is converted to naive UTC
    assert not await inboxes[1].contains(event.event_id)
    assert await tables.inbox_rows(engine) == []
