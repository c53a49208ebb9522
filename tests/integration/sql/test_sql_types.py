"""The portable column types on each real database: what the column is, what goes in and
what comes back, and the per-type dialect registry."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.sql_support import DATABASES, drop_tables, engine_for, unique_name

sa = pytest.importorskip("sqlalchemy", reason="the sqlalchemy extra is not installed")

from cqrs._internal.sql.types import (  # noqa: E402
    Binary16,
    DialectAwareType,
    DialectTypeHandler,
    JSONType,
    PayloadBinary,
    UUIDBinary,
)


@pytest.fixture(params=DATABASES)
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    engine = engine_for(request.param, tmp_path)
    yield engine
    await engine.dispose()


def _table(name: str) -> Any:
    return sa.Table(
        name,
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("uid", UUIDBinary()),
        sa.Column("raw", Binary16()),
        sa.Column("doc", JSONType()),
        sa.Column("payload", PayloadBinary()),
    )


def _row(id: int, uid: object, raw: object, doc: object, payload: object) -> dict[str, object]:
    return {"id": id, "uid": uid, "raw": raw, "doc": doc, "payload": payload}


async def test_values_round_trip_on_each_database(engine: Any) -> None:
    table = _table(unique_name("types"))
    ids = [uuid.uuid4() for _ in range(3)]
    big = bytes(range(256)) * 1024  # 256 KiB: over MariaDB's 64 KiB BLOB
    try:
        async with engine.begin() as connection:
            await connection.run_sync(table.metadata.create_all)
            await connection.execute(
                table.insert(),
                [
                    _row(1, ids[0], ids[0].bytes, {"a": [1]}, big),
                    _row(2, ids[1].bytes, ids[1].bytes, None, b""),
                    _row(3, str(ids[2]), None, [], None),
                ],
            )
        async with engine.connect() as connection:
            rows = (await connection.execute(sa.select(table).order_by(table.c.id))).all()
            found = (
                await connection.execute(sa.select(table.c.id).where(table.c.uid == ids[1]))
            ).scalar_one()
    finally:
        await drop_tables(engine, [table.name])
    assert [row.uid for row in rows] == ids
    assert all(isinstance(row.uid, uuid.UUID) for row in rows)
    assert [row.raw for row in rows] == [ids[0].bytes, ids[1].bytes, None]
    assert [row.doc for row in rows] == [{"a": [1]}, None, []]
    assert rows[0].payload == big
    assert rows[1].payload == b""
    assert found == 2


async def test_binary16_refuses_other_lengths_before_the_database(engine: Any) -> None:
    table = _table(unique_name("types"))
    try:
        async with engine.begin() as connection:
            await connection.run_sync(table.metadata.create_all)
        async with engine.begin() as connection:
            with pytest.raises(sa.exc.StatementError, match="exactly 16 bytes, got 3"):
                await connection.execute(table.insert(), {"id": 1, "raw": b"abc"})
        async with engine.connect() as connection:
            counted = sa.select(sa.func.count()).select_from(table)
            count = (await connection.execute(counted)).scalar()
    finally:
        await drop_tables(engine, [table.name])
    assert count == 0


def test_column_types_per_dialect() -> None:
    from sqlalchemy.dialects import mysql, postgresql, sqlite

    def ddl(dialect: Any) -> str:
        return str(sa.schema.CreateTable(_table("t")).compile(dialect=dialect))

    assert "uid UUID" in ddl(postgresql.dialect())
    assert "raw BYTEA" in ddl(postgresql.dialect())
    assert "uid BINARY(16)" in ddl(mysql.dialect())
    assert "payload LONGBLOB" in ddl(mysql.dialect())
    assert "uid BLOB" in ddl(sqlite.dialect())
    assert "doc JSON" in ddl(sqlite.dialect())


def test_registry_is_per_type_and_default_is_named() -> None:
    from sqlalchemy.dialects import postgresql

    class Jsonb(JSONType):
        cache_ok = True

    Jsonb.register_dialect("postgresql", DialectTypeHandler(lambda _d: postgresql.JSONB()))
    table = sa.Table("t", sa.MetaData(), sa.Column("a", Jsonb()), sa.Column("b", JSONType()))
    text = str(sa.schema.CreateTable(table).compile(dialect=postgresql.dialect()))
    assert "a JSONB" in text
    assert "b JSON," in text or "b JSON\n" in text
    assert JSONType.get_handler("postgresql") is JSONType.default_handler

    class Bare(DialectAwareType):
        cache_ok = True

    no_handler = r"Bare has no handler for dialect 'sqlite'.*register_dialect"
    with pytest.raises(TypeError, match=no_handler):
        Bare.get_handler("sqlite")
    with pytest.raises(TypeError, match="needs a DialectTypeHandler, got dict"):
        Bare.register_dialect("sqlite", {})  # type: ignore[arg-type]
