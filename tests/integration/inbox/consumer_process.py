"""A consumer process for the inbox kill test, to be SIGKILLed mid-work.

``python -m tests.integration.inbox.consumer_process DB_URL QUEUE INBOX EFFECTS LOG HOLD_FROM
MID PREFETCH`` consumes ``QUEUE`` from RabbitMQ with ``EventConsumer`` through
``IdempotentEventMediator`` over ``SqlAlchemyInbox`` (table ``INBOX``, consumer
``billing``); the handler writes one row per order into ``EFFECTS`` through the inbox
session. It appends one line per order to ``LOG`` (flushed):

* ``done N``: handled, committed, about to be acked (orders below ``HOLD_FROM``);
* ``held N``: handled and committed, then hangs before its ack (``HOLD_FROM`` to ``MID - 1``);
* ``mid N``: its effect row written in the open transaction, then hangs before the commit
  (order ``MID``).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any, TextIO

RABBIT_URL = "amqp://guest:guest@127.0.0.1:5672/"


async def consume(
    db_url: str,
    queue: str,
    inbox_table: str,
    effects_table: str,
    log: TextIO,
    hold_from: int,
    mid: int,
    prefetch: int,
) -> None:
    import sqlalchemy as sa
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

    from cqrs.consumers import EventConsumer
    from cqrs.inbox import IdempotentEventMediator
    from cqrs.inbox.sqlalchemy import SqlAlchemyInbox, current_inbox_session
    from cqrs.message_brokers.amqp import AMQPMessageBroker
    from tests.integration.brokers.support import OrderPlaced, Recorder, mediator_for
    from tests.integration.inbox.support import make_tables

    tables = make_tables(inbox_table, effects_table)
    hang = asyncio.Event()  # never set

    def note(what: str, order: int) -> None:
        log.write(f"{what} {order}\n")
        log.flush()

    async def write(event: Any, call: int) -> None:
        order = event.payload.order_id
        session = current_inbox_session()
        await session.execute(sa.insert(tables.effects).values(order_id=order))
        if order == mid:
            await session.flush()
            note("mid", order)
            await hang.wait()

    guarded = IdempotentEventMediator(
        mediator_for(Recorder(write)),
        SqlAlchemyInbox(
            async_sessionmaker(create_async_engine(db_url)), consumer="billing", model=tables.inbox
        ),
    )

    class HoldBeforeAck:
        async def send(self, event: Any) -> None:
            await guarded.send(event)
            order = event.payload.order_id
            if hold_from <= order < mid:
                note("held", order)
                await hang.wait()
            note("done", order)

    async with AMQPMessageBroker.from_url(RABBIT_URL, "cqrs-test") as broker:
        subscription = await broker.subscribe(queue, prefetch=prefetch)
        await EventConsumer(subscription, HoldBeforeAck(), OrderPlaced).run()


if __name__ == "__main__":
    _url, _queue, _inbox, _effects, _log, _hold_from, _mid, _prefetch = sys.argv[1:]
    with Path(_log).open("a", encoding="utf-8") as _out:
        asyncio.run(
            consume(
                _url, _queue, _inbox, _effects, _out, int(_hold_from), int(_mid), int(_prefetch)
            )
        )
