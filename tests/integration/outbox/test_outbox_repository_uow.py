"""Writing in the unit of work, through the mediators, on SQLite, PostgreSQL and MariaDB: a
handler's rows and its events commit together; a rollback publishes nothing."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import cqrs
from cqrs.outbox.map import OutboxedEventMap
from cqrs.producer import EventProducer
from cqrs.requests import bootstrap
from cqrs.testing import InMemoryMessageBroker, StaticContainer
from tests.sql_support import DATABASES, drop_tables, engine_for, unique_name

sa = pytest.importorskip("sqlalchemy", reason="the sqlalchemy extra is not installed")

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker  # noqa: E402
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column  # noqa: E402

from cqrs.outbox.sqlalchemy import OutboxMixin, SqlAlchemyOutboxedEventRepository  # noqa: E402


class OrderPayload(cqrs.Response):
    order_id: str


class OrderPlaced(cqrs.NotificationEvent[OrderPayload]):
    event_name: str = "order_placed"
    topic: str = "orders"


class PlaceOrder(cqrs.Request):
    order_id: str
    fail: bool = False


class ImportOrders(cqrs.Request):
    orders: list[PlaceOrder]


class Imported(cqrs.Response):
    order_id: str


class Declined(Exception):
    pass


class Shop:
    """One test's tables (unique names) and the unit of work its handlers run."""

    def __init__(self, engine: Any, sessions: async_sessionmaker[AsyncSession]) -> None:
        class Base(DeclarativeBase):
            pass

        class Order(Base):
            __tablename__ = unique_name("orders")
            id: Mapped[str] = mapped_column(sa.String(20), primary_key=True)

        class Outbox(OutboxMixin, Base):
            __tablename__ = unique_name("outbox")

        self.base = Base
        self.order = Order
        self.outbox = Outbox
        self.engine = engine
        self.sessions = sessions
        self.events = OutboxedEventMap()
        self.events.register("order_placed", OrderPlaced)

    def repository(self, session: AsyncSession) -> SqlAlchemyOutboxedEventRepository:
        return SqlAlchemyOutboxedEventRepository(session, event_map=self.events, model=self.outbox)

    async def place(self, order: PlaceOrder) -> None:
        """The order row and its event in one transaction, failing after both writes."""
        async with self.sessions() as session, session.begin():
            session.add(self.order(id=order.order_id))
            self.repository(session).add(OrderPlaced(payload=OrderPayload(order_id=order.order_id)))
            await session.flush()  # both rows reached the database before the failure
            if order.fail:
                raise Declined(order.order_id)

    async def relay(self, broker: InMemoryMessageBroker) -> None:
        async with self.sessions() as session:
            producer = EventProducer(broker, self.repository(session), poll_interval=0)
            async for batch in producer.event_batch_generator(batch_size=7):
                if not batch:
                    break
                for outboxed in batch:
                    await producer.send_message(outboxed)
                await producer.repository.commit()

    async def stored_orders(self) -> list[str]:
        async with self.sessions() as session:
            found = await session.execute(sa.select(self.order.id).order_by(self.order.id))
            return list(found.scalars())

    async def outbox_rows(self) -> int:
        async with self.sessions() as session:
            count = await session.execute(sa.select(sa.func.count()).select_from(self.outbox))
            return int(count.scalar_one())


class PlaceOrderHandler(cqrs.RequestHandler[PlaceOrder, None]):
    def __init__(self, shop: Shop) -> None:
        self.shop = shop

    async def handle(self, request: PlaceOrder) -> None:
        await self.shop.place(request)


class ImportOrdersHandler(cqrs.StreamingRequestHandler[ImportOrders, Imported]):
    def __init__(self, shop: Shop) -> None:
        self.shop = shop

    def clear_events(self) -> None:
        pass

    async def handle(self, request: ImportOrders) -> AsyncIterator[Imported]:
        for order in request.orders:
            await self.shop.place(order)  # committed before the item is yielded
            yield Imported(order_id=order.order_id)


@pytest.fixture(params=DATABASES)
async def shop(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Shop]:
    engine = engine_for(request.param, tmp_path)
    found = Shop(engine, async_sessionmaker(engine, expire_on_commit=False))
    try:
        async with engine.begin() as connection:
            await connection.run_sync(lambda c: found.base.metadata.create_all(c, checkfirst=True))
        yield found
    finally:
        await drop_tables(engine, [found.outbox.__tablename__, found.order.__tablename__])
        await engine.dispose()


def mediators(shop: Shop) -> tuple[cqrs.RequestMediator, cqrs.StreamingRequestMediator]:
    container = StaticContainer(
        {
            PlaceOrderHandler: functools.partial(PlaceOrderHandler, shop),
            ImportOrdersHandler: functools.partial(ImportOrdersHandler, shop),
        }
    )

    def commands(mapper: cqrs.RequestMap) -> None:
        mapper.bind(PlaceOrder, PlaceOrderHandler)
        mapper.bind(ImportOrders, ImportOrdersHandler)

    return (
        bootstrap.bootstrap(di_container=container, commands_mapper=commands),
        bootstrap.bootstrap_streaming(di_container=container, commands_mapper=commands),
    )


def published_orders(broker: InMemoryMessageBroker) -> list[str]:
    return sorted(m.payload["payload"]["order_id"] for m in broker.published(topic="orders"))


async def test_failed_commands_publish_nothing_and_committed_ones_publish_once(
    shop: Shop,
) -> None:
    mediator, _ = mediators(shop)
    orders = [PlaceOrder(order_id=f"C-{n:02}", fail=n % 3 == 0) for n in range(30)]

    async def send(order: PlaceOrder) -> bool:
        try:
            await mediator.send(order)
        except Declined:
            return False
        return True

    outcomes = await asyncio.gather(*(send(order) for order in orders))
    committed = sorted(o.order_id for o, ok in zip(orders, outcomes, strict=True) if ok)
    assert len(committed) == 20
    broker = InMemoryMessageBroker()
    await shop.relay(broker)
    await shop.relay(broker)  # a second pass finds nothing more
    assert await shop.stored_orders() == committed
    assert published_orders(broker) == committed  # each committed order once, no other
    assert len(broker.messages) == 20
    assert await shop.outbox_rows() == 20


async def test_a_stream_commits_item_by_item_and_a_failing_item_takes_only_its_own(
    shop: Shop,
) -> None:
    _, streaming = mediators(shop)
    request = ImportOrders(
        orders=[
            PlaceOrder(order_id="S-1"),
            PlaceOrder(order_id="S-2"),
            PlaceOrder(order_id="S-3", fail=True),
            PlaceOrder(order_id="S-4"),
        ]
    )
    seen: list[str] = []
    with pytest.raises(Declined):
        async with streaming.stream(request) as items:
            async for item in items:
                seen.append(item.order_id)
                # what the client was shown is committed: a relay can publish it right now
                broker = InMemoryMessageBroker()
                await shop.relay(broker)
                assert published_orders(broker) == [item.order_id]
    assert seen == ["S-1", "S-2"]
    assert await shop.stored_orders() == ["S-1", "S-2"]
    assert await shop.outbox_rows() == 2
    broker = InMemoryMessageBroker()
    await shop.relay(broker)
    assert broker.messages == []  # nothing left: S-3 rolled back, S-4 never ran


async def test_a_stream_abandoned_by_its_client_keeps_what_it_committed(shop: Shop) -> None:
    _, streaming = mediators(shop)
    request = ImportOrders(orders=[PlaceOrder(order_id=f"B-{n}") for n in range(5)])
    async with streaming.stream(request) as items:
        async for item in items:
            if item.order_id == "B-1":
                break
    broker = InMemoryMessageBroker()
    await shop.relay(broker)
    assert published_orders(broker) == ["B-0", "B-1"]
    assert await shop.stored_orders() == ["B-0", "B-1"]
