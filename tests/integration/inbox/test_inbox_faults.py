"""A consumer process with the inbox on, SIGKILLed mid-work and replaced, on real RabbitMQ and
SQLite, PostgreSQL, MariaDB: every order's handler effect is in the database exactly once.

The process (``consumer_process.py``) handles orders 0..199 to the end; then it holds its
whole prefetch: nine orders handled and committed but not acked (the window where a crash
makes the broker deliver a handled event again), and one order in the middle of its
handler, its effect row written in the open transaction. Then it is killed. RabbitMQ
returns the ten messages; the database rolls the open transaction back. A consumer started
afterwards with the same inbox finds the nine committed ones and skips them, runs the one
whose transaction died, and handles the rest.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("sqlalchemy", reason="the sqlalchemy extra is not installed")

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import async_sessionmaker

from cqrs.consumers import EventConsumer
from cqrs.inbox import IdempotentEventMediator
from cqrs.inbox.sqlalchemy import SqlAlchemyInbox, current_inbox_session
from cqrs.message_brokers.amqp import AMQPMessageBroker
from tests.integration.brokers.conftest import RABBIT_URL, QueueJanitor
from tests.integration.brokers.support import OrderPlaced, Recorder, mediator_for, order_messages
from tests.integration.inbox.support import Tables, make_tables
from tests.sql_support import DATABASES, engine_for, url_for
from tests.support import LONG_TEST_TIMEOUT, PATIENCE, wait_until_async

pytestmark = [pytest.mark.rabbitmq, pytest.mark.timeout(LONG_TEST_TIMEOUT)]

ROOT = Path(__file__).resolve().parents[3]
TOTAL, HOLD_FROM, PREFETCH = 260, 200, 10
MID = HOLD_FROM + PREFETCH - 1  # orders HOLD_FROM..MID-1 are held after commit, MID inside


def start_consumer(url: str, queue: str, tables: Tables, log: Path) -> subprocess.Popen[bytes]:
    """``consumer_process.py`` on ``queue`` and ``tables`` (see its docstring)."""
    return subprocess.Popen(
        [sys.executable, "-W", "error", "-m", "tests.integration.inbox.consumer_process",
         url, queue, tables.inbox.__table__.name, tables.effects.name, str(log),
         str(HOLD_FROM), str(MID), str(PREFETCH)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip


def log_lines(log: Path) -> list[tuple[str, int]]:
    if not log.exists():
        return []
    return [(what, int(n)) for what, n in (line.split() for line in log.read_text().splitlines())]


@pytest.mark.parametrize("kind", DATABASES)
async def test_a_consumer_killed_mid_handler_leaves_every_effect_exactly_once(
    kind: str, tmp_path: Path, queues: QueueJanitor, capsys: pytest.CaptureFixture[str]
) -> None:
    url = url_for(kind, tmp_path)
    engine = engine_for(kind, tmp_path)
    tables = make_tables()
    name = f"cqrs-inbox-kill-{uuid.uuid4().hex[:10]}"
    queues.add(name)
    log = tmp_path / "process.log"
    messages = order_messages(TOTAL, name)
    publisher = AMQPMessageBroker.from_url(RABBIT_URL, "cqrs-test", confirm_timeout=PATIENCE)
    try:
        await tables.create(engine)
        async with publisher:
            await asyncio.gather(*(publisher.send_message(m) for m in messages[:MID]))
            process = start_consumer(url, name, tables, log)
            try:

                def alive() -> None:
                    if process.poll() is not None:
                        assert process.stderr is not None
                        raise AssertionError(
                            f"the consumer process exited: {process.stderr.read().decode()}"
                        )

                def counted(what: str) -> int:
                    alive()
                    return sum(1 for w, _ in log_lines(log) if w == what)

                await wait_until_async(
                    lambda: counted("done") == HOLD_FROM and counted("held") == MID - HOLD_FROM,
                    f"{HOLD_FROM} orders done and {MID - HOLD_FROM} held after their commit",
                    details=lambda: str(log_lines(log)[-5:]),
                )
                await asyncio.gather(*(publisher.send_message(m) for m in messages[MID:]))
                await wait_until_async(
                    lambda: counted("mid") == 1, f"order {MID} inside its handler"
                )
                before_kill = await tables.effect_counts(engine)
            finally:
                process.send_signal(signal.SIGKILL)
                process.wait(PATIENCE)
                assert process.stderr is not None
                process.stderr.close()
        by_process = log_lines(log)

        recorder = Recorder()

        async def write(event: Any, call: int) -> None:
            session = current_inbox_session()
            await session.execute(sa.insert(tables.effects).values(order_id=event.payload.order_id))

        recorder.behaviour = write
        inbox = SqlAlchemyInbox(async_sessionmaker(engine), consumer="billing", model=tables.inbox)
        guarded = IdempotentEventMediator(mediator_for(recorder), inbox)
        consumer_side = AMQPMessageBroker.from_url(RABBIT_URL, "cqrs-test")
        async with consumer_side:
            consumer = EventConsumer(
                await consumer_side.subscribe(name, prefetch=PREFETCH), guarded, OrderPlaced
            )
            running = asyncio.create_task(consumer.run())
            try:
                await wait_until_async(
                    lambda: consumer.stats.acked == TOTAL - HOLD_FROM,
                    f"the {TOTAL - HOLD_FROM} orders left acked",
                    details=lambda: f"{consumer.stats}, {guarded.stats}",
                )
            finally:
                await consumer.stop(grace=PATIENCE)
                await running
        effects = await tables.effect_counts(engine)
        records = await tables.inbox_rows(engine)
    finally:
        try:
            await tables.drop(engine)
        finally:
            await engine.dispose()
    assert sorted(n for w, n in by_process if w == "done") == list(range(HOLD_FROM))
    assert sorted(n for w, n in by_process if w == "held") == list(range(HOLD_FROM, MID))
    assert [n for w, n in by_process if w == "mid"] == [MID]
    assert before_kill == dict.fromkeys(range(MID), 1)  # order MID's row was not committed
    assert effects == dict.fromkeys(range(TOTAL), 1)  # every effect exactly once
    assert len(records) == TOTAL
    assert sorted(recorder.calls) == list(range(MID, TOTAL))  # held ones not run again
    assert sum(recorder.calls.values()) == TOTAL - MID
    skipped = guarded.stats.duplicates
    assert (guarded.stats.handled, skipped, guarded.stats.failed) == (
        TOTAL - MID,
        MID - HOLD_FROM,
        0,
    )
    assert (consumer.stats.retried, consumer.stats.dead_lettered) == (0, 0)
    with capsys.disabled():
        print(
            f"\n{kind}: consumer SIGKILLed with {MID - HOLD_FROM} handled-but-unacked and 1 "
            f"mid-handler: {TOTAL} effects each once, {skipped} redeliveries skipped by the inbox"
        )
