"""The outbox relay on SQLite, PostgreSQL and MariaDB: failures first, then the normal path.

Each test writes its rows straight into a table of its own and counts, at the end, what the
broker confirmed (by event id) against what the table says (status, attempts, leases).
"""

from __future__ import annotations

import asyncio
import datetime
import uuid
import zlib
from pathlib import Path
from typing import Any

import pytest

from cqrs._internal.brokers.protocol import Message, PublishError
from cqrs._internal.outbox.models import EventStatus
from cqrs._internal.outbox.relay import OutboxRelay, RelayCounts, RelayStateError
from cqrs._internal.sql.locking import OutboxTableError, Retry, utc_now
from tests.integration.outbox.relay_support import (
    CountingBroker,
    Outbox,
    insert_orders,
    nothing_pending,
    outage,
    outbox,
    rows_of,
    status_counts,
)
from tests.sql_support import DATABASES, drop_tables, engine_for, unique_name
from tests.support import LONG_TEST_TIMEOUT, PATIENCE, wait_until_async

pytestmark = pytest.mark.timeout(LONG_TEST_TIMEOUT)

__all__ = ["outbox"]  # the fixture, imported for pytest

by_database = pytest.mark.parametrize("outbox", DATABASES, indirect=True)

FAST = {"poll_interval": 0.02, "backoff": lambda attempt: 0.05}


async def drain(relay: OutboxRelay, what: str) -> None:
    """Run ``relay`` in the background until the table has nothing pending, then stop it."""
    async with relay:
        await wait_until_async(
            lambda: nothing_pending(relay), what, details=lambda: f"totals {relay.totals}"
        )


# -- failures --------------------------------------------------------------------------------


@by_database
async def test_an_outage_gives_up_nothing_and_poison_rows_are_given_up(outbox: Outbox) -> None:
    ids = await insert_orders(outbox.engine, outbox.model, 300, unique_name("orders"))
    order_of = dict(ids)
    poison = {7, 150, 299}
    flaky = {20, 21}
    broken = asyncio.Event()
    broken.set()
    seen: dict[int, int] = {}

    def fail(message: Message, call: int) -> None:
        if broken.is_set():
            raise PublishError("the broker is away")
        order = order_of[message.message_id]
        seen[order] = seen.get(order, 0) + 1
        if order in poison:
            raise ValueError(f"order {order} cannot be encoded for this broker")
        if order in flaky and seen[order] <= 2:
            raise PublishError(f"order {order} not confirmed in time")

    broker = CountingBroker(fail=fail)
    relay = OutboxRelay(outbox.engine, broker, model=outbox.model, max_attempts=3, **FAST)
    async with relay:
        await wait_until_async(lambda: relay.totals.deferred >= 300, "three batches put back")
        during = await relay.lag()
        broken.clear()
        relay.wake()
        await wait_until_async(
            lambda: nothing_pending(relay), "every row produced or given up", within=PATIENCE
        )
    assert during.pending == 300
    assert during.given_up == 0
    assert during.oldest_pending_age is not None
    assert during.oldest_pending_age >= 0
    after = await relay.lag()
    assert (after.pending, after.given_up) == (0, len(poison))
    produced = set(broker.confirmed)
    assert {order_of[i] for i in produced} == set(range(300)) - poison  # zero lost
    assert broker.duplicates == 0
    rows = {order_of[row.event_id]: row for row in await rows_of(outbox.engine, outbox.model)}
    for order, row in rows.items():
        if order in poison:
            assert (row.event_status, row.flush_counter) == (EventStatus.NOT_PRODUCED, 3)
        elif order in flaky:
            assert row.event_status is EventStatus.PRODUCED
            assert 1 <= row.flush_counter <= 2
        else:  # the outage counted no attempt against them
            assert (row.event_status, row.flush_counter) == (EventStatus.PRODUCED, 0)
        assert row.claim_token is None
    assert relay.totals.given_up == len(poison)
    assert relay.totals.produced == 297
    assert relay.totals.lost_leases == 0

    assert await relay.requeue_given_up() == len(poison)
    assert (await relay.lag()).pending == len(poison)
    poison.clear()
    await drain(relay, "the requeued rows produced")
    assert {order_of[i] for i in broker.confirmed} == set(range(300))
    assert broker.duplicates == 0


@pytest.mark.parametrize("outbox", ["sqlite"], indirect=True)
async def test_a_broker_outage_is_retried_at_a_growing_pause_not_a_poll(outbox: Outbox) -> None:
    """A broker that refuses everything for 3 s: the relay tries the batch again after a
    pause doubling from 0.1 s (jittered), not every ``poll_interval`` (0.02 s, which would
    make about 150 tries); every try puts the rows back without counting an attempt."""
    await insert_orders(outbox.engine, outbox.model, 50, unique_name("orders"))
    broker = CountingBroker(fail=outage)
    relay = OutboxRelay(outbox.engine, broker, model=outbox.model, **FAST)
    async with relay:
        await asyncio.sleep(3.0)
    tries = broker.calls / 50
    assert tries == int(tries)  # whole batches
    # Pauses of 0.05-0.1, 0.1-0.2, 0.2-0.4, 0.4-0.8, 0.8-1.6, 1.6-3.2 s: at most 7 tries fit
    # in 3 s (a loaded machine only makes fewer).
    assert 2 <= tries <= 8, tries
    assert relay.totals.deferred == broker.calls
    assert (relay.totals.retried, relay.totals.given_up) == (0, 0)
    rows = await rows_of(outbox.engine, outbox.model)
    assert {(row.event_status, row.flush_counter) for row in rows} == {(EventStatus.NEW, 0)}


@pytest.mark.parametrize("outbox", ["sqlite"], indirect=True)
async def test_an_idle_relay_polls_at_its_interval(outbox: Outbox) -> None:
    """An empty table is claimed once per ``poll_interval``, not in a loop."""
    broker = CountingBroker()
    relay = OutboxRelay(outbox.engine, broker, model=outbox.model, poll_interval=0.1)
    claims = 0
    claim = relay._claim  # pyright: ignore[reportPrivateUsage]

    async def counting() -> Any:
        nonlocal claims
        claims += 1
        return await claim()

    relay._claim = counting  # type: ignore[method-assign]
    async with relay:
        await asyncio.sleep(1.0)
    assert 2 <= claims <= 1.0 / 0.1 + 2, claims
    assert broker.calls == 0


@pytest.mark.parametrize("outbox", DATABASES[1:], indirect=True)
async def test_database_connections_cut_mid_run_lose_nothing(outbox: Outbox) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    from tests.tcp_proxy import TcpProxy

    ids = await insert_orders(outbox.engine, outbox.model, 2_000, unique_name("orders"))
    port = 5432 if outbox.kind == "postgres" else 3306
    async with TcpProxy(port) as proxy:
        url = outbox.engine.url.set(host="127.0.0.1", port=proxy.port)
        engine = create_async_engine(url)
        broker = CountingBroker(delay=0.002)
        relay = OutboxRelay(
            engine, broker, model=outbox.model, batch_size=50, concurrency=10, lease=3.0, **FAST
        )
        try:
            async with relay:
                await wait_until_async(lambda: len(broker.confirmed) >= 500, "500 published")
                assert await proxy.blip(1.0) > 0  # every connection cut, then refused for 1 s
                await wait_until_async(
                    lambda: len(broker.confirmed) == 2_000,
                    "every row published",
                    details=lambda: f"{len(broker.confirmed)} published; {relay.totals}",
                )
        finally:
            await engine.dispose()
    assert set(broker.confirmed) == set(ids)  # zero lost
    assert broker.duplicates == 0  # a claim or settle cut off is retried, not republished
    assert await status_counts(outbox.engine, outbox.model) == {"PRODUCED": 2_000}


@by_database
async def test_a_cancelled_relay_settles_what_the_broker_confirmed(outbox: Outbox) -> None:
    await insert_orders(outbox.engine, outbox.model, 50, unique_name("orders"))
    gate = asyncio.Event()
    confirmed_before_cancel = 20

    class Gated(CountingBroker):
        async def send_message(self, message: Message) -> None:
            if self.calls >= confirmed_before_cancel:
                self.calls += 1
                await gate.wait()  # never set: these hang until cancelled
            await super().send_message(message)

    broker = Gated()
    relay = OutboxRelay(outbox.engine, broker, model=outbox.model, concurrency=1, **FAST)
    running = asyncio.create_task(relay.run())
    await wait_until_async(lambda: broker.calls > confirmed_before_cancel, "a publish hanging")
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert not relay.running
    assert await status_counts(outbox.engine, outbox.model) == {"PRODUCED": 20, "NEW": 30}
    assert all(row.claim_token is None for row in await rows_of(outbox.engine, outbox.model))

    second = CountingBroker()
    await drain(OutboxRelay(outbox.engine, second, model=outbox.model, **FAST), "the rest")
    assert len(second.confirmed) == 30
    assert not set(second.confirmed) & set(broker.confirmed)


@by_database
async def test_a_dead_claim_comes_back_after_its_lease(outbox: Outbox) -> None:
    await insert_orders(outbox.engine, outbox.model, 30, unique_name("orders"))
    relay = OutboxRelay(outbox.engine, CountingBroker(), model=outbox.model, batch_size=10)
    now = utc_now()
    lease = datetime.timedelta(seconds=2)
    dead = await relay.claims.claim(10, now=now, until=now + lease, token=str(uuid.uuid4()))
    assert [row.id for row in dead] == sorted(row.id for row in dead)
    assert len(dead) == 10

    first = await relay.run_once()
    second = await relay.run_once()
    assert (first.produced, second.produced) == (10, 10)
    assert await relay.run_once() == RelayCounts()  # the dead claim's rows are leased
    await wait_until_async(
        lambda: utc_now() > now + lease + datetime.timedelta(seconds=1), "the lease to run out"
    )
    assert (await relay.run_once()).produced == 10
    assert await status_counts(outbox.engine, outbox.model) == {"PRODUCED": 30}


@by_database
async def test_a_settle_after_the_lease_ran_out_changes_nothing(outbox: Outbox) -> None:
    await insert_orders(outbox.engine, outbox.model, 10, unique_name("orders"))
    relay = OutboxRelay(outbox.engine, CountingBroker(), model=outbox.model)
    now = utc_now()
    late = str(uuid.uuid4())
    past = now - datetime.timedelta(seconds=5)  # a claim whose lease has run out already
    rows = await relay.claims.claim(10, now=now, until=past, token=late)
    assert (await relay.run_once()).produced == 10  # another relay takes the rows
    assert await relay.claims.settle(late, produced=[row.id for row in rows]) == 0
    retry = Retry([row.id for row in rows], now)
    assert await relay.claims.settle(late, retries=[retry], released=retry) == 0
    assert await status_counts(outbox.engine, outbox.model) == {"PRODUCED": 10}
    assert {row.flush_counter for row in await rows_of(outbox.engine, outbox.model)} == {0}


@by_database
async def test_a_publish_still_unconfirmed_near_the_lease_end_counts_as_failed(
    outbox: Outbox,
) -> None:
    ids = await insert_orders(outbox.engine, outbox.model, 10, unique_name("orders"))
    hung = next(event_id for event_id, order in ids.items() if order == 5)
    forever = asyncio.Event()

    class Hangs(CountingBroker):
        async def send_message(self, message: Message) -> None:
            if message.message_id == hung:
                await forever.wait()
            await super().send_message(message)

    broker = Hangs()
    relay = OutboxRelay(outbox.engine, broker, model=outbox.model, lease=0.4, **FAST)
    counts = await relay.run_once()  # publishing is cut at 0.3 s
    assert counts == RelayCounts(claimed=10, produced=9, retried=1)
    assert hung not in broker.confirmed
    row = next(row for row in await rows_of(outbox.engine, outbox.model) if row.event_id == hung)
    assert (row.event_status, row.flush_counter, row.claim_token) == (
        EventStatus.NOT_PRODUCED,
        1,
        None,
    )


@by_database
async def test_stop_finishes_the_batch_in_hand(outbox: Outbox) -> None:
    await insert_orders(outbox.engine, outbox.model, 200, unique_name("orders"))
    broker = CountingBroker(delay=0.01)
    relay = OutboxRelay(outbox.engine, broker, model=outbox.model, batch_size=50, concurrency=5)
    running = asyncio.create_task(relay.run())
    await wait_until_async(lambda: broker.calls > 60, "the second batch publishing")
    relay.stop()
    counts = await asyncio.wait_for(running, PATIENCE)
    assert counts.produced == len(broker.confirmed) == broker.calls  # the batch was finished
    assert counts.produced % 50 == 0
    assert 50 < counts.produced < 200
    # the batch the relay had claimed ahead went back unpublished, counting no attempt
    assert counts.deferred in (0, 50)
    assert counts.claimed == counts.produced + counts.deferred
    assert broker.peak_in_flight == 5
    statuses = await status_counts(outbox.engine, outbox.model)
    assert statuses == {"PRODUCED": counts.produced, "NEW": 200 - counts.produced}
    rows = await rows_of(outbox.engine, outbox.model)
    assert all(row.claim_token is None and row.flush_counter == 0 for row in rows)
    assert await OutboxRelay(outbox.engine, broker, model=outbox.model).run_once() != RelayCounts()


@pytest.mark.parametrize("kind", DATABASES)
async def test_a_4x_table_without_the_lease_columns_is_named(kind: str, tmp_path: Path) -> None:
    from sqlalchemy import text

    from tests.integration.outbox.relay_support import create_table, new_model

    engine = engine_for(kind, tmp_path)
    model = new_model()
    name = model.__table__.name
    await create_table(engine, model)
    try:
        async with engine.begin() as connection:  # the table as python-cqrs 4.x made it
            for column in ("claimed_until", "claim_token"):
                await connection.execute(text(f"ALTER TABLE {name} DROP COLUMN {column}"))
        relay = OutboxRelay(engine, CountingBroker(), model=model)
        with pytest.raises(OutboxTableError, match="ALTER TABLE"):
            await relay.run_once()
        assert (await relay.lag()).pending == 0  # reading the lag needs only 4.x's columns
    finally:
        await drop_tables(engine, [name])
        await engine.dispose()


def test_bad_settings_are_named(tmp_path: Path) -> None:
    pytest.importorskip("aiosqlite")
    from sqlalchemy.ext.asyncio import create_async_engine

    from tests.integration.outbox.relay_support import new_model

    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    model = new_model()
    broker = CountingBroker()
    settings: list[tuple[str, Any]] = [
        ("batch_size", 0),
        ("lease", 0),
        ("max_attempts", 0),
        ("poll_interval", -1),
        ("concurrency", 0),
    ]
    for option, value in settings:
        with pytest.raises(ValueError, match=option):
            OutboxRelay(engine, broker, model=model, **{option: value})
    with pytest.raises(TypeError, match="model"):
        OutboxRelay(engine, broker, model=int)
    with pytest.raises(TypeError, match="AsyncEngine"):
        OutboxRelay("sqlite:///x.db", broker, model=model)  # pyright: ignore[reportArgumentType]


@pytest.mark.parametrize("kind", ["sqlite"])
async def test_a_relay_runs_once_at_a_time(kind: str, tmp_path: Path) -> None:
    from tests.integration.outbox.relay_support import create_table, new_model

    engine = engine_for(kind, tmp_path)
    model = new_model()
    await create_table(engine, model)
    relay = OutboxRelay(engine, CountingBroker(), model=model, poll_interval=0.01)
    try:
        async with relay:
            assert relay.running
            with pytest.raises(RelayStateError, match="already running"):
                await relay.run()
        assert not relay.running
        relay.stop()  # not running: nothing happens, the next run is not cut short
        async with relay:
            await asyncio.sleep(0.05)
            assert relay.running
    finally:
        await engine.dispose()


# -- the normal path -------------------------------------------------------------------------


@by_database
async def test_every_row_is_published_once_then_marked_produced(outbox: Outbox) -> None:
    topic = unique_name("orders")
    ids = await insert_orders(outbox.engine, outbox.model, 1_000, topic)
    broker = CountingBroker()
    relay = OutboxRelay(outbox.engine, broker, model=outbox.model, batch_size=64, **FAST)
    before = await relay.lag()
    assert (before.pending, before.retrying, before.given_up) == (1_000, 0, 0)
    await drain(relay, "1,000 rows produced")
    assert set(broker.confirmed) == set(ids)
    assert broker.duplicates == 0
    assert relay.totals == RelayCounts(claimed=1_000, produced=1_000)
    assert await status_counts(outbox.engine, outbox.model) == {"PRODUCED": 1_000}
    message = broker.messages[0]
    assert message.message_name == "OrderPlaced"
    assert message.topic == topic
    assert message.payload["payload"] == {"order_id": ids[message.message_id]}
    assert message.payload_bytes is not None
    assert message.content_type is None
    after = await relay.lag()
    assert (after.pending, after.oldest_pending_age, after.given_up) == (0, None, 0)


@pytest.mark.parametrize("kind", ["sqlite"])
async def test_compressed_and_non_json_payloads(kind: str, tmp_path: Path) -> None:
    from tests.integration.outbox.relay_support import create_table, new_model

    engine = engine_for(kind, tmp_path)
    model = new_model()
    await create_table(engine, model)
    try:
        ids = await insert_orders(engine, model, 5, "t", payload=zlib.compress)
        broker = CountingBroker()
        relay = OutboxRelay(
            engine,
            broker,
            model=model,
            compressor=zlib,
            content_types={"OrderPlaced": "application/x-protobuf"},
        )
        assert (await relay.run_once()).produced == 5
        message = broker.messages[0]
        assert message.content_type == "application/x-protobuf"
        assert message.headers == {
            "event_name": "OrderPlaced",
            "message_id": str(message.message_id),
        }
        assert isinstance(message.payload, bytes)
        assert message.payload == message.payload_bytes
        assert (message.payload_bytes or b"").startswith(b"{")  # decompressed
        assert set(broker.confirmed) == set(ids)
    finally:
        await engine.dispose()


@pytest.mark.parametrize("kind", ["sqlite"])
async def test_a_session_factory_works_as_the_database(kind: str, tmp_path: Path) -> None:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from tests.integration.outbox.relay_support import create_table, new_model

    engine = engine_for(kind, tmp_path)
    model = new_model()
    await create_table(engine, model)
    try:
        await insert_orders(engine, model, 20, "t")
        factories: list[Any] = [async_sessionmaker(engine), lambda: AsyncSession(engine)]
        for factory in factories:
            broker = CountingBroker()
            relay = OutboxRelay(factory, broker, model=model, batch_size=10)
            assert (await relay.run_once()).produced == 10
            assert relay.claims.uses_row_locks is False
        assert await status_counts(engine, model) == {"PRODUCED": 20}
    finally:
        await engine.dispose()


async def command(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run the relay command; (exit status, stdout, stderr)."""
    import os
    import sys

    from tests.integration.outbox.relay_support import ROOT

    process = await asyncio.create_subprocess_exec(
        sys.executable, "-W", "error", "-m", "cqrs._internal.outbox.relay_cli", *args,
        cwd=ROOT, env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), PATIENCE)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.mark.parametrize("kind", ["sqlite"])
async def test_the_command_relays_until_idle_and_reports_the_lag(kind: str, tmp_path: Path) -> None:
    import json

    from tests.integration.outbox.relay_support import create_table, new_model
    from tests.sql_support import url_for

    engine = engine_for(kind, tmp_path)
    model = new_model()
    await create_table(engine, model)
    try:
        ids = await insert_orders(engine, model, 30, "t")
        where = ["--database", url_for(kind, tmp_path), "--table", model.__table__.name]
        status, out, _ = await command(*where, "--lag")
        assert status == 0
        assert json.loads(out)["pending"] == 30

        log = tmp_path / "published.log"
        broker = "tests.integration.outbox.relay_worker:file_broker"
        status, out, err = await command(
            *where, "--broker", broker, "--once", "--batch-size", "8", env={"RELAY_LOG": str(log)}
        )
        assert status == 0, err
        assert json.loads(out)["produced"] == 30
        assert {uuid.UUID(line) for line in log.read_text().split()} == set(ids)
        assert await status_counts(engine, model) == {"PRODUCED": 30}

        status, _, err = await command(*where, "--broker", "carrier-pigeon://loft")
        assert status == 2
        assert "neither a broker URL" in err
    finally:
        await engine.dispose()


def test_the_installed_command_is_the_relay_main() -> None:
    from importlib.metadata import entry_points

    from cqrs.outbox.relay import main

    [script] = entry_points(group="console_scripts", name="cqrs-outbox-relay")
    assert script.value == "cqrs.outbox.relay:main"
    assert script.load() is main
