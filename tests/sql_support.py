"""Databases for the outbox and inbox tests: SQLite (always), PostgreSQL and MariaDB.

``DATABASES`` parametrizes a test over the three; ``engine_for`` opens an async engine for
one and skips the test, naming the reason, when that server does not answer on 127.0.0.1.
Every test uses its own table names (``unique_name``) and drops them with ``drop_tables``,
so tests and parallel runs never see each other's rows.
"""

from __future__ import annotations

import socket
import uuid
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
MARIADB_URL = "mysql+asyncmy://root@127.0.0.1:3306/test"
_PORTS = {"postgres": 5432, "mariadb": 3306}

DATABASES = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    pytest.param("mariadb", id="mariadb", marks=pytest.mark.mariadb),
]


def reachable(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts a TCP connection on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def url_for(kind: str, tmp_path: Path) -> str:
    """The SQLAlchemy URL of database ``kind``; skips when its server is down or its driver is
    missing. SQLite is a file under ``tmp_path`` (several connections see the same rows)."""
    pytest.importorskip("sqlalchemy", reason="the sqlalchemy extra is not installed")
    if kind == "sqlite":
        pytest.importorskip("aiosqlite", reason="the sqlalchemy extra (aiosqlite) is not installed")
        return f"sqlite+aiosqlite:///{tmp_path / 'cqrs-test.sqlite3'}"
    driver = {"postgres": "asyncpg", "mariadb": "asyncmy"}[kind]
    pytest.importorskip(driver, reason=f"the {kind} driver {driver} is not installed")
    if not reachable(_PORTS[kind]):
        pytest.skip(f"no {kind} server reachable on 127.0.0.1:{_PORTS[kind]}")
    return POSTGRES_URL if kind == "postgres" else MARIADB_URL


def engine_for(kind: str, tmp_path: Path, **options: Any) -> Any:
    """An ``AsyncEngine`` on database ``kind`` (see :func:`url_for`); dispose it after use."""
    from sqlalchemy.ext.asyncio import create_async_engine

    return create_async_engine(url_for(kind, tmp_path), **options)


def unique_name(prefix: str) -> str:
    """A table name no other test uses: ``prefix`` plus 10 hex digits."""
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


async def drop_tables(engine: Any, names: Iterable[str]) -> None:
    """Drop these tables if they exist (MariaDB's "unknown table" note is not a failure).

    A PostgreSQL enum type the tables share (``eventstatus``) is left in place: other tables
    may use it.
    """
    from sqlalchemy import text

    async with engine.begin() as connection:
        for name in names:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                await connection.execute(text(f"DROP TABLE IF EXISTS {name}"))
