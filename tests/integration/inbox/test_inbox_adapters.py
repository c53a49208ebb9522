"""The inbox behind the two other ways a RabbitMQ message reaches a mediator: the FastStream
adapter (``subscribe_events``) and a 4.x ``AMQPConsumer`` handler. In both, every message's
ack is lost once after its handlers committed (the process failed between the two), so
RabbitMQ delivers it again: the handlers ran once per event. The 4.x path also receives
each event twice under two random message ids, as 4.x publishers send it: the inbox keys on
the event id in the body. Counted at the end: handler calls, effect rows, inbox records."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("sqlalchemy", reason="the sqlalchemy extra is not installed")
pytest.importorskip("aiosqlite", reason="the sqlalchemy extra (aiosqlite) is not installed")

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import async_sessionmaker

from cqrs.inbox import IdempotentEventMediator
from cqrs.inbox.sqlalchemy import SqlAlchemyInbox, current_inbox_session
from tests.integration.brokers.conftest import RABBIT_URL, QueueJanitor
from tests.integration.brokers.support import OrderPlaced, Recorder, mediator_for, order_messages
from tests.integration.inbox.support import Tables, make_tables
from tests.sql_support import engine_for
from tests.support import LONG_TEST_TIMEOUT, PATIENCE, wait_until_async

pytestmark = [pytest.mark.rabbitmq, pytest.mark.timeout(LONG_TEST_TIMEOUT)]

ORDERS = 20


@pytest.fixture
async def sqlite(tmp_path: Path) -> AsyncIterator[tuple[Any, Tables]]:
    engine = engine_for("sqlite", tmp_path)
    tables = make_tables()
    await tables.create(engine)
    try:
        yield engine, tables
    finally:
        await engine.dispose()


def guarded_writer(engine: Any, tables: Tables) -> tuple[Recorder, IdempotentEventMediator]:
    async def write(event: Any, call: int) -> None:
        session = current_inbox_session()
        await session.execute(sa.insert(tables.effects).values(order_id=event.payload.order_id))

    recorder = Recorder(write)
    inbox = SqlAlchemyInbox(async_sessionmaker(engine), consumer="billing", model=tables.inbox)
    return recorder, IdempotentEventMediator(mediator_for(recorder), inbox)


class AckLostOnce:
    """Sends through ``guarded``, then fails the first delivery of every order, as a process
    that dies after its commit and before its ack would."""

    def __init__(self, guarded: IdempotentEventMediator) -> None:
        self.guarded = guarded
        self.lost: set[int] = set()

    async def send(self, event: Any) -> None:
        await self.guarded.send(event)
        order = event.payload.order_id
        if order not in self.lost:
            self.lost.add(order)
            raise ConnectionError("the ack was lost")


async def test_faststream_redeliveries_run_the_handlers_once(
    queues: QueueJanitor, sqlite: tuple[Any, Tables]
) -> None:
    pytest.importorskip("faststream", reason="the faststream extra is not installed")
    from faststream import FastStream
    from faststream.rabbit import RabbitBroker

    from cqrs.consumers import Backoff
    from cqrs.integrations.faststream import subscribe_events
    from cqrs.message_brokers.amqp import AMQPMessageBroker

    engine, tables = sqlite
    name = f"cqrs-inbox-fs-{uuid.uuid4().hex[:10]}"
    queues.add(name)
    recorder, guarded = guarded_writer(engine, tables)
    broker = RabbitBroker(RABBIT_URL, logger=None, graceful_timeout=PATIENCE)
    route = subscribe_events(
        broker,
        name,
        AckLostOnce(guarded),
        {"OrderPlaced": OrderPlaced},
        backoff=Backoff(initial=0.01),
    )
    messages = order_messages(ORDERS, name)
    async with AMQPMessageBroker.from_url(
        RABBIT_URL, "cqrs-test", confirm_timeout=PATIENCE
    ) as amqp:
        await asyncio.gather(*(amqp.send_message(m) for m in messages))
    app = FastStream(broker, logger=None)
    await app.start()
    try:
        await wait_until_async(
            lambda: route.stats.acked == ORDERS,
            f"{ORDERS} acks",
            details=lambda: f"{route.stats}, {guarded.stats}",
        )
    finally:
        await app.stop()
    assert recorder.calls == dict.fromkeys(range(ORDERS), 1)
    assert await tables.effect_counts(engine) == dict.fromkeys(range(ORDERS), 1)
    assert (guarded.stats.handled, guarded.stats.duplicates) == (ORDERS, ORDERS)
    assert (route.stats.received, route.stats.retried, route.stats.dead_lettered) == (
        2 * ORDERS,
        ORDERS,
        0,
    )
    assert len(await tables.inbox_rows(engine)) == ORDERS


async def test_4x_amqp_consumer_redeliveries_and_republished_events_run_once(
    queues: QueueJanitor, sqlite: tuple[Any, Tables]
) -> None:
    import aio_pika
    from aio_pika.abc import AbstractIncomingMessage

    from cqrs.adapters.amqp import amqp_consumer_factory
    from cqrs.deserializers import JsonDeserializer

    engine, tables = sqlite
    name = f"cqrs-inbox-4x-{uuid.uuid4().hex[:10]}"
    queues.add(name)
    recorder, guarded = guarded_writer(engine, tables)
    acking = AckLostOnce(guarded)
    deserializer = JsonDeserializer(OrderPlaced)
    message_ids: list[str | None] = []

    async def on_message(message: AbstractIncomingMessage) -> None:  # 4.x handler shape
        message_ids.append(message.message_id)
        try:
            async with message.process(requeue=True):
                await acking.send(deserializer(message.body))
        except ConnectionError:
            pass  # process() returned the message to the queue

    consumer = amqp_consumer_factory(RABBIT_URL)
    consuming = asyncio.create_task(consumer.consume(on_message, name))
    try:
        # as a 4.x publisher: the event's JSON body, a fresh random message_id each time
        messages = order_messages(ORDERS, name)
        connection = await aio_pika.connect(RABBIT_URL)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            await wait_until_async(
                lambda: _declared(connection, name), f"the consumer to declare {name}"
            )
            for message in [*messages, *messages]:
                assert message.payload_bytes is not None
                await channel.default_exchange.publish(
                    aio_pika.Message(message.payload_bytes, message_id=str(uuid.uuid4())),
                    routing_key=name,
                )
        await wait_until_async(
            lambda: len(message_ids) == 3 * ORDERS and guarded.stats.duplicates == 2 * ORDERS,
            f"{3 * ORDERS} deliveries",
            details=lambda: f"{len(message_ids)} deliveries, {guarded.stats}",
        )
    finally:
        consuming.cancel()
        await asyncio.gather(consuming, return_exceptions=True)
        await consumer.close()
    assert len(set(message_ids)) == 2 * ORDERS  # every publish had its own random id
    assert recorder.calls == dict.fromkeys(range(ORDERS), 1)
    assert await tables.effect_counts(engine) == dict.fromkeys(range(ORDERS), 1)
    assert (guarded.stats.handled, guarded.stats.duplicates, guarded.stats.failed) == (
        ORDERS,
        2 * ORDERS,
        0,
    )


async def _declared(connection: Any, name: str) -> bool:
    """Whether queue ``name`` exists (a passive declaration on a channel of its own)."""
    import aio_pika

    probe = await connection.channel()
    try:
        await probe.declare_queue(name, passive=True)
    except aio_pika.exceptions.ChannelClosed:
        return False
    finally:
        if not probe.is_closed:
            await probe.close()
    return True
