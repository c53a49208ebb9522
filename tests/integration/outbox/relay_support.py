"""Shared by the relay tests: an outbox table of the test's own, rows written straight into it,
what the table holds afterwards, and brokers that count or fail on purpose.

Rows are the ``OrderPlaced`` events of ``tests.integration.brokers.support`` (order ``n`` has
payload ``order_id = n``), stored as the 4.x JSON codec stores them, so a consumer can decode
what the relay published and tests can count by order id or by event id.
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cqrs._internal.brokers.protocol import Message, MessageBroker, PublishError
from cqrs._internal.serialization.json import default_serializer
from tests.integration.brokers.support import order_event
from tests.sql_support import drop_tables, engine_for, unique_name

EVENT_NAME = "OrderPlaced"
ROOT = Path(__file__).resolve().parents[3]


@dataclass
class Outbox:
    """One test's outbox: its engine, its model (a table of its own) and the table name."""

    kind: str
    engine: Any
    model: type[Any]

    @property
    def table(self) -> str:
        return str(self.model.__table__.name)


def new_model(prefix: str = "relay") -> type[Any]:
    """An outbox model on a fresh declarative base, with a table name no other test uses."""
    from sqlalchemy.orm import DeclarativeBase

    from cqrs._internal.outbox.sqlalchemy import OutboxModel, rebind_outbox_model

    class TestBase(DeclarativeBase):
        pass

    return rebind_outbox_model(OutboxModel, TestBase, unique_name(prefix))


async def create_table(engine: Any, model: type[Any]) -> None:
    async with engine.begin() as connection:
        await connection.run_sync(model.metadata.create_all)


@pytest.fixture
async def outbox(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Outbox]:
    """An outbox table on the database of the test's ``kind`` parameter, dropped afterwards."""
    kind: str = request.param
    engine = engine_for(kind, tmp_path)
    model = new_model()
    try:
        await create_table(engine, model)
        yield Outbox(kind, engine, model)
    finally:
        await drop_tables(engine, [model.__table__.name])
        await engine.dispose()


def row_values(n: int, topic: str) -> dict[str, Any]:
    """The column values of order ``n`` as the 4.x repository writes them."""
    event = order_event(n, topic)
    return {
        "event_id": event.event_id,
        "event_id_bin": event.event_id.bytes,
        "event_name": EVENT_NAME,
        "topic": topic,
        "payload": default_serializer(event),
        "created_at": datetime.datetime.now(datetime.UTC).replace(tzinfo=None),
        "flush_counter": 0,
    }


async def insert_orders(
    engine: Any,
    model: type[Any],
    count: int,
    topic: str,
    *,
    start: int = 0,
    chunk: int = 2_000,
    payload: Callable[[bytes], bytes] | None = None,
) -> dict[uuid.UUID, int]:
    """Write orders ``start .. start+count-1`` as NEW rows; return event id -> order id."""
    from sqlalchemy import insert

    from cqrs._internal.outbox.models import EventStatus

    ids: dict[uuid.UUID, int] = {}
    rows: list[dict[str, Any]] = []
    for n in range(start, start + count):
        values = row_values(n, topic)
        values["event_status"] = EventStatus.NEW
        if payload is not None:
            values["payload"] = payload(values["payload"])
        ids[values["event_id"]] = n
        rows.append(values)
    async with engine.begin() as connection:
        for first in range(0, len(rows), chunk):
            await connection.execute(insert(model.__table__), rows[first : first + chunk])
    return ids


async def status_counts(engine: Any, model: type[Any]) -> dict[str, int]:
    """Rows per status name (``NEW``, ``PRODUCED``, ``NOT_PRODUCED``)."""
    from sqlalchemy import func, select

    table = model.__table__
    async with engine.connect() as connection:
        result = await connection.execute(
            select(table.c.event_status, func.count()).group_by(table.c.event_status)
        )
        return {status.name: int(count) for status, count in result}


async def rows_of(engine: Any, model: type[Any]) -> list[Any]:
    """Every row of the table (id order): id, event_id, status, flush_counter, lease."""
    from sqlalchemy import select

    table = model.__table__
    c = table.c
    async with engine.connect() as connection:
        result = await connection.execute(
            select(
                c.id, c.event_id, c.event_status, c.flush_counter, c.claimed_until, c.claim_token
            ).order_by(c.id)
        )
        return list(result)


class CountingBroker(MessageBroker):
    """Counts every confirmed message by message id; ``fail`` (message, call) may raise to
    refuse one, ``delay`` seconds pass before each confirmation."""

    def __init__(
        self,
        *,
        delay: float = 0.0,
        fail: Callable[[Message, int], None] | None = None,
    ) -> None:
        self.delay = delay
        self.fail = fail
        self.calls = 0
        self.confirmed: collections.Counter[uuid.UUID] = collections.Counter()
        self.messages: list[Message] = []
        self.in_flight = 0
        self.peak_in_flight = 0

    async def send_message(self, message: Message) -> None:
        self.calls += 1
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            else:
                await asyncio.sleep(0)
            if self.fail is not None:
                self.fail(message, self.calls)
        finally:
            self.in_flight -= 1
        self.confirmed[message.message_id] += 1
        self.messages.append(message)

    @property
    def duplicates(self) -> int:
        return sum(self.confirmed.values()) - len(self.confirmed)


def outage(message: Message, call: int) -> None:
    raise PublishError(f"broker away (call {call})")


def relay_process(
    url: str,
    table: str,
    log: Path,
    *,
    delay: float,
    lease: float,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``tests.integration.outbox.relay_worker`` on ``table`` (see its docstring);
    ``env`` adds to the environment (``RELAY_AMQP_URL``: publish to RabbitMQ too)."""
    return subprocess.Popen(
        [sys.executable, "-W", "error", "-m", "tests.integration.outbox.relay_worker",
         url, table, str(log), str(delay), str(lease)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


def logged_ids(path: Path) -> list[uuid.UUID]:
    """The message ids a relay worker logged as confirmed, in order (none before the file)."""
    try:
        return [uuid.UUID(line) for line in path.read_text(encoding="utf-8").split()]
    except FileNotFoundError:
        return []


async def kill_mid_batch(
    worker: subprocess.Popen[bytes], log: Path, *, at_least: int, batch: int
) -> None:
    """SIGKILL ``worker`` once it logged at least ``at_least`` confirmations and is part-way
    through a batch of ``batch`` (so some rows are confirmed but not settled); always reaped.
    Fails naming its stderr if the worker exits by itself first."""
    import signal

    from tests.support import PATIENCE, wait_until_async

    def mid_batch() -> bool:
        if worker.poll() is not None:
            error = worker.stderr.read().decode() if worker.stderr else ""
            raise AssertionError(f"the relay process exited early: {error}")
        published = len(logged_ids(log))
        return published >= at_least and published % batch != 0

    try:
        await wait_until_async(mid_batch, "the relay process part-way through a batch")
        worker.send_signal(signal.SIGKILL)
        await asyncio.to_thread(worker.wait, PATIENCE)
    finally:
        if worker.poll() is None:
            worker.kill()
            await asyncio.to_thread(worker.wait, PATIENCE)
        if worker.stderr is not None:
            worker.stderr.close()
    assert worker.returncode == -signal.SIGKILL


async def nothing_pending(relay: Any) -> bool:
    """Whether ``relay``'s table has no row waiting to be published (a wait condition)."""
    return bool((await relay.lag()).pending == 0)


async def consume(subscription: Any, seen: collections.Counter[uuid.UUID]) -> int:
    """Count and ack every delivery of ``subscription`` until it is closed; return how many
    acks failed because the server went away under them (those messages come again)."""
    from cqrs.errors import DeliveryLostError

    failed_acks = 0
    async for delivery in subscription:
        seen[delivery.message.message_id] += 1
        try:
            await delivery.ack()
        except DeliveryLostError:
            failed_acks += 1
    return failed_acks
