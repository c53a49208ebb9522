"""Relays at scale on SQLite, PostgreSQL and MariaDB: a relay process killed with SIGKILL in
the middle of a batch and a new relay after it (zero lost; duplicates only among the rows the
dead one had in flight), and three relays at once (zero duplicates).

Counted at the end, by event id, on the broker side: the dead process's log of what it had
published, and what the relays in the test published.
"""

from __future__ import annotations

import asyncio
import collections
from pathlib import Path

import pytest

from cqrs._internal.outbox.relay import OutboxRelay, RelayCounts
from tests.integration.outbox.relay_support import (
    CountingBroker,
    Outbox,
    insert_orders,
    kill_mid_batch,
    logged_ids,
    nothing_pending,
    outbox,
    relay_process,
    rows_of,
    status_counts,
)
from tests.sql_support import DATABASES, engine_for, unique_name, url_for
from tests.support import LONG_TEST_TIMEOUT, wait_until_async

pytestmark = pytest.mark.timeout(LONG_TEST_TIMEOUT)

__all__ = ["outbox"]  # the fixture, imported for pytest

by_database = pytest.mark.parametrize("outbox", DATABASES, indirect=True)


@by_database
async def test_a_relay_killed_mid_batch_loses_nothing(
    outbox: Outbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = await insert_orders(outbox.engine, outbox.model, 1_000, unique_name("orders"))
    log = tmp_path / "published.log"
    lease = 2.0
    worker = relay_process(
        url_for(outbox.kind, tmp_path), outbox.table, log, delay=0.01, lease=lease
    )
    await kill_mid_batch(worker, log, at_least=320, batch=50)
    before = collections.Counter(logged_ids(log))
    in_flight = {
        row.event_id
        for row in await rows_of(outbox.engine, outbox.model)
        if row.claim_token is not None and row.event_status.name != "PRODUCED"
    }
    # the kill caught a batch of 50 publishing, and maybe the next one, claimed ahead
    assert len(in_flight) in (50, 100)
    assert max(before.values()) == 1

    broker = CountingBroker()
    relay = OutboxRelay(outbox.engine, broker, model=outbox.model, poll_interval=0.05)
    async with relay:  # the dead relay's rows come back once its lease ran out
        await wait_until_async(
            lambda: nothing_pending(relay), "every row produced", details=lambda: str(relay.totals)
        )
    after = broker.confirmed
    assert set(before) | set(after) == set(ids)  # zero lost
    twice = set(before) & set(after)
    assert twice <= in_flight  # duplicates only among the rows in flight at the kill
    assert broker.duplicates == 0
    assert relay.totals.lost_leases == 0
    assert await status_counts(outbox.engine, outbox.model) == {"PRODUCED": 1_000}
    with capsys.disabled():
        print(
            f"\n{outbox.kind}: relay killed after {len(before)} of 1,000 published, "
            f"{len(in_flight)} rows claimed and unsettled, {len(twice)} published twice, 0 lost"
        )


@by_database
async def test_three_relays_at_once_publish_no_row_twice(
    outbox: Outbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    count = 3_000
    ids = await insert_orders(outbox.engine, outbox.model, count, unique_name("orders"))
    broker = CountingBroker(delay=0.001)
    engines = [engine_for(outbox.kind, tmp_path) for _ in range(3)]
    relays = [
        OutboxRelay(engine, broker, model=outbox.model, batch_size=50, poll_interval=0.05)
        for engine in engines
    ]
    try:
        async with relays[0], relays[1], relays[2]:
            await wait_until_async(
                lambda: nothing_pending(relays[0]),
                f"{count} rows produced by three relays",
                details=lambda: str([relay.totals for relay in relays]),
            )
    finally:
        await asyncio.gather(*(engine.dispose() for engine in engines))
    assert set(broker.confirmed) == set(ids)  # zero lost
    assert broker.duplicates == 0  # zero published twice
    total = sum((relay.totals for relay in relays), RelayCounts())
    assert total == RelayCounts(claimed=count, produced=count)
    shares = [relay.totals.produced for relay in relays]
    assert sum(1 for share in shares if share) >= 2  # they really ran side by side
    assert await status_counts(outbox.engine, outbox.model) == {"PRODUCED": count}
    with capsys.disabled():
        print(f"\n{outbox.kind}: three relays, {count} rows, shares {shares}, 0 duplicates")
