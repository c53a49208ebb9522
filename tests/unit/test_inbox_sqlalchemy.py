"""The inbox table and ``SqlAlchemyInbox`` on SQLite: the model, its copies on a user's base,
the arguments refused with what to do, the session handlers write through, and that
``import cqrs.inbox`` loads no SQLAlchemy. (Every database: tests/integration/inbox.)"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("sqlalchemy", reason="the sqlalchemy extra is not installed")
pytest.importorskip("aiosqlite", reason="the sqlalchemy extra (aiosqlite) is not installed")

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase

from cqrs.inbox import IdempotentEventMediator, NoInboxTransaction
from cqrs.inbox.sqlalchemy import (
    DEFAULT_INBOX_TABLE_NAME,
    InboxBase,
    InboxMixin,
    InboxModel,
    SqlAlchemyInbox,
    current_inbox_session,
    rebind_inbox_model,
)
from tests.integration.brokers.support import Recorder, mediator_for, order_event

ROOT = Path(__file__).resolve().parents[2]


class UserBase(DeclarativeBase):
    pass


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    created = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'inbox.sqlite3'}")
    yield created
    await created.dispose()


def test_the_default_table() -> None:
    table: Any = InboxModel.__table__
    assert table.name == DEFAULT_INBOX_TABLE_NAME == "inbox"
    assert table.metadata is InboxBase.metadata
    assert [c.name for c in table.primary_key.columns] == ["event_id", "consumer"]
    assert [c.name for c in table.columns] == ["event_id", "consumer", "event_name", "received_at"]
    assert {i.name for i in table.indexes} == {"inbox_received_at_index"}
    assert not any(c.nullable for c in table.columns)


def test_rebind_copies_the_model_onto_a_users_base_under_another_name() -> None:
    copy: Any = rebind_inbox_model(InboxModel, UserBase, "billing_inbox")
    assert copy.__table__.name == "billing_inbox"
    assert UserBase.metadata.tables["billing_inbox"] is copy.__table__
    assert {i.name for i in copy.__table__.indexes} == {"billing_inbox_received_at_index"}
    assert InboxModel.__table__.name == "inbox"  # type: ignore[attr-defined]  # left alone
    with pytest.raises(ValueError, match=r"table 'billing_inbox' is already in UserBase\.metadata"):
        rebind_inbox_model(InboxModel, UserBase, "billing_inbox")
    with pytest.raises(TypeError, match="needs a SQLAlchemy declarative base as new_base"):
        rebind_inbox_model(InboxModel, object)


def test_the_mixin_puts_the_table_in_the_users_metadata() -> None:
    class ShippingInbox(InboxMixin, UserBase):
        __tablename__ = "shipping_inbox"

    table: Any = ShippingInbox.__table__
    assert UserBase.metadata.tables["shipping_inbox"] is table
    SqlAlchemyInbox(lambda: None, model=ShippingInbox)  # type: ignore[arg-type,return-value]


def test_bad_arguments_are_refused_with_what_to_do(engine: AsyncEngine) -> None:
    with pytest.raises(TypeError, match="session_factory must make AsyncSessions"):
        SqlAlchemyInbox("sqlite://")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="model must be a mapped inbox class"):
        SqlAlchemyInbox(engine, model=dict)

    class Other(UserBase):
        __tablename__ = "not_an_inbox"
        id: Any = sa.Column(sa.Integer, primary_key=True)
        event_id: Any = sa.Column(sa.String(36))

    with pytest.raises(TypeError) as caught:
        SqlAlchemyInbox(engine, model=Other)
    assert str(caught.value) == (
        "model Other (table 'not_an_inbox') lacks the columns ['consumer', "
        "'event_name', 'received_at']; build it with InboxMixin or rebind_inbox_model"
    )
    with pytest.raises(ValueError, match="consumer must be 1 to 255 characters"):
        SqlAlchemyInbox(engine, consumer="")


def test_the_session_is_only_there_inside_a_handler() -> None:
    with pytest.raises(NoInboxTransaction) as caught:
        current_inbox_session()
    assert isinstance(caught.value, RuntimeError)
    assert "works inside an event handler run by IdempotentEventMediator" in str(caught.value)


async def test_on_sqlite_an_event_is_handled_once_and_handler_writes_share_its_fate(
    engine: AsyncEngine,
) -> None:
    metadata = sa.MetaData()
    effects = sa.Table("effects", metadata, sa.Column("order_id", sa.Integer, nullable=False))
    async with engine.begin() as connection:
        await connection.run_sync(InboxBase.metadata.create_all)
        await connection.run_sync(metadata.create_all)

    async def write_then_maybe_fail(event: Any, call: int) -> None:
        session = current_inbox_session()
        await session.execute(sa.insert(effects).values(order_id=event.payload.order_id))
        if call == 1:
            raise ConnectionError("fails after its write")

    recorder = Recorder(write_then_maybe_fail)
    inbox = SqlAlchemyInbox(async_sessionmaker(engine), consumer="billing")
    guarded = IdempotentEventMediator(mediator_for(recorder), inbox)
    event = order_event(4, "orders")
    with pytest.raises(ConnectionError):
        await guarded.send(event)
    assert not await inbox.contains(event.event_id)
    await guarded.send(event)
    await guarded.send(event)
    async with engine.connect() as connection:
        rows = (await connection.execute(sa.select(effects.c.order_id))).scalars().all()
        inbox_rows = (await connection.execute(sa.select(InboxModel.__table__))).all()
    assert rows == [4]
    assert [(r.event_id, r.consumer, r.event_name) for r in inbox_rows] == [
        (event.event_id, "billing", "OrderPlaced")
    ]
    assert recorder.calls == {4: 2}
    assert (guarded.stats.handled, guarded.stats.duplicates, guarded.stats.failed) == (1, 1, 1)
    assert await inbox.contains(event.event_id)
    assert not await inbox.contains(event.event_id, "shipping")


def test_importing_the_inbox_loads_no_sqlalchemy() -> None:
    code = (
        "import sys, cqrs, cqrs.inbox; "
        "assert 'sqlalchemy' not in sys.modules, 'sqlalchemy loaded'; "
        "print(cqrs.inbox.IdempotentEventMediator.__name__)"
    )
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "IdempotentEventMediator"
