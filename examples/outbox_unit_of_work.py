"""Notification events written in the handler's own transaction, then relayed to a broker.

Run it with ``python examples/outbox_unit_of_work.py`` (SQLite in a temporary directory and
the in-memory broker; needs the ``sqlalchemy`` extra). It shows:

* a command handler that stores an order row and its ``order_placed`` event in one
  transaction, so one commit stores both;
* a command that fails after writing (the card is declined): the transaction rolls back,
  the order and its event are both gone, nothing is ever published for it;
* a streaming handler that commits each item's row and event before it yields the item;
  a failing item rolls back its own writes only;
* ``EventProducer`` (the 4.x relay loop) publishing what was committed, each event once.
"""

from __future__ import annotations

import asyncio
import functools
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import cqrs
from cqrs.outbox.sqlalchemy import OutboxMixin, SqlAlchemyOutboxedEventRepository
from cqrs.producer import EventProducer
from cqrs.requests import bootstrap
from cqrs.testing import InMemoryMessageBroker, StaticContainer

Sessions = async_sessionmaker[AsyncSession]


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[str] = mapped_column(sa.String(20), primary_key=True)
    total: Mapped[int]


class Outbox(OutboxMixin, Base):
    """The outbox table in the application's own metadata (and so in its migrations)."""

    __tablename__ = "outbox"


class OrderPayload(cqrs.Response):
    order_id: str
    total: int


class OrderPlaced(cqrs.NotificationEvent[OrderPayload]):
    event_name: str = "order_placed"
    topic: str = "orders"


cqrs.OutboxedEventMap.register("order_placed", OrderPlaced)


class CardDeclined(Exception):
    pass


def charge(order_id: str, total: int) -> None:
    if total > 1_000:
        raise CardDeclined(f"card declined for {order_id} ({total})")


async def place(session: AsyncSession, order_id: str, total: int) -> None:
    """The unit of work: the order row and its event, staged in the same session."""
    session.add(Order(id=order_id, total=total))
    outbox = SqlAlchemyOutboxedEventRepository(session, model=Outbox)
    outbox.add(OrderPlaced(payload=OrderPayload(order_id=order_id, total=total)))
    charge(order_id, total)  # fails after the writes: everything above is rolled back


class PlaceOrder(cqrs.Request):
    order_id: str
    total: int


class PlaceOrderHandler(cqrs.RequestHandler[PlaceOrder, None]):
    def __init__(self, sessions: Sessions) -> None:
        self.sessions = sessions

    async def handle(self, request: PlaceOrder) -> None:
        # `begin()` commits when the block ends and rolls back when it raises
        async with self.sessions() as session, session.begin():
            await place(session, request.order_id, request.total)


class ImportOrders(cqrs.Request):
    orders: list[PlaceOrder]


class OrderImported(cqrs.Response):
    order_id: str
    stored: bool
    reason: str = ""


class ImportOrdersHandler(cqrs.StreamingRequestHandler[ImportOrders, OrderImported]):
    def __init__(self, sessions: Sessions) -> None:
        self.sessions = sessions

    def clear_events(self) -> None:
        pass

    async def handle(self, request: ImportOrders) -> AsyncIterator[OrderImported]:
        for order in request.orders:
            # one transaction per item, committed before the item is yielded
            try:
                async with self.sessions() as session, session.begin():
                    await place(session, order.order_id, order.total)
            except CardDeclined as exc:
                yield OrderImported(order_id=order.order_id, stored=False, reason=str(exc))
            else:
                yield OrderImported(order_id=order.order_id, stored=True)


async def relay(sessions: Sessions, broker: InMemoryMessageBroker) -> None:
    """The 4.x relay loop, stopped when the outbox has nothing more to publish."""
    async with sessions() as session:
        repository = SqlAlchemyOutboxedEventRepository(session, model=Outbox)
        producer = EventProducer(broker, repository)
        async for batch in producer.event_batch_generator(batch_size=100):
            if not batch:
                break
            for outboxed in batch:
                await producer.send_message(outboxed)
            await producer.repository.commit()


async def main(directory: Path) -> None:
    engine = create_async_engine(f"sqlite+aiosqlite:///{directory / 'shop.sqlite3'}")
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    container = StaticContainer(
        {
            PlaceOrderHandler: functools.partial(PlaceOrderHandler, sessions),
            ImportOrdersHandler: functools.partial(ImportOrdersHandler, sessions),
        }
    )

    def commands(mapper: cqrs.RequestMap) -> None:
        mapper.bind(PlaceOrder, PlaceOrderHandler)
        mapper.bind(ImportOrders, ImportOrdersHandler)

    mediator = bootstrap.bootstrap(di_container=container, commands_mapper=commands)
    streaming = bootstrap.bootstrap_streaming(di_container=container, commands_mapper=commands)

    for order_id, total in (("A-1", 120), ("A-2", 5_000)):
        try:
            await mediator.send(PlaceOrder(order_id=order_id, total=total))
            print(f"command {order_id}: committed")
        except CardDeclined as exc:
            print(f"command {order_id}: rolled back ({exc})")

    batch = ImportOrders(
        orders=[
            PlaceOrder(order_id="B-1", total=40),
            PlaceOrder(order_id="B-2", total=9_999),
            PlaceOrder(order_id="B-3", total=75),
        ]
    )
    async with streaming.stream(batch) as items:
        async for item in items:
            outcome = "committed" if item.stored else f"rolled back ({item.reason})"
            print(f"stream item {item.order_id}: {outcome}")

    broker = InMemoryMessageBroker()
    await relay(sessions, broker)
    for message in broker.published(topic="orders"):
        print(f"published: {message.message_name} {message.payload['payload']['order_id']}")

    async with sessions() as session:
        orders = (await session.execute(sa.select(sa.func.count()).select_from(Order))).scalar()
        waiting = (await session.execute(sa.select(sa.func.count()).select_from(Outbox))).scalar()
        left = await SqlAlchemyOutboxedEventRepository(session, model=Outbox).get_many()
    print(
        f"{len(broker.messages)} events published, {orders} orders stored, "
        f"{waiting} outbox rows, {len(left)} waiting to be published"
    )
    await engine.dispose()


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(main(Path(tmp)))
