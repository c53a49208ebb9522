"""Portable column types (4.x ``cqrs.sqlalchemy_types``).

Each type is a SQLAlchemy ``TypeDecorator`` whose real column type and value conversions are
chosen per dialect from a registry. Every subclass of :class:`DialectAwareType` owns its own
registry, so registering a handler for one type never changes another. A dialect without a
handler gets the type's default (``default_handler``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from cqrs._internal._optional import require

with require("sqlalchemy", extra="sqlalchemy", feature="cqrs.sqlalchemy_types"):
    from sqlalchemy import JSON, LargeBinary, Uuid
    from sqlalchemy.dialects import mysql, postgresql
    from sqlalchemy.engine import Dialect
    from sqlalchemy.types import TypeDecorator, TypeEngine

__all__ = [
    "Binary16",
    "DialectAwareType",
    "DialectTypeHandler",
    "JSONType",
    "PayloadBinary",
    "UUIDBinary",
]

Converter = Callable[[Any], Any]


@dataclass(frozen=True)
class DialectTypeHandler:
    """How one dialect renders and converts a :class:`DialectAwareType` column.

    ``type_factory(dialect)`` returns the column's real type (an instance or a class);
    ``bind`` converts a Python value on its way to the database and ``result`` a database
    value on its way back. ``None`` converters pass values through unchanged; neither is called
    for ``NULL``.
    """

    type_factory: Callable[[Dialect], Any]
    bind: Converter | None = None
    result: Converter | None = None


class DialectAwareType(TypeDecorator[Any]):
    """Base of the portable column types: the dialect picks the real type and conversions.

    Subclasses set ``default_handler``; ``register_dialect(name, handler)`` overrides it for
    one dialect name (``"postgresql"``, ``"mysql"``, ``"mariadb"``, ``"sqlite"``, ...). The
    registry is per subclass. A subclass without ``default_handler`` raises ``TypeError``
    naming itself when a column of it is first compiled.
    """

    impl = LargeBinary
    cache_ok = True
    default_handler: ClassVar[DialectTypeHandler | None] = None
    _handlers: ClassVar[dict[str, DialectTypeHandler]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._handlers = dict(cls._handlers)

    @classmethod
    def register_dialect(cls, name: str, handler: DialectTypeHandler) -> None:
        """Use ``handler`` for columns of this type on the dialect called ``name``."""
        if not isinstance(handler, DialectTypeHandler):  # pyright: ignore[reportUnnecessaryIsInstance]
            raise TypeError(
                f"{cls.__name__}.register_dialect({name!r}, ...) needs a DialectTypeHandler, "
                f"got {type(handler).__name__}"
            )
        cls._handlers[name] = handler

    @classmethod
    def get_handler(cls, name: str) -> DialectTypeHandler:
        """The handler for dialect ``name``: the registered one, else the type's default."""
        handler = cls._handlers.get(name)
        if handler is not None:
            return handler
        if cls.default_handler is None:
            raise TypeError(
                f"{cls.__name__} has no handler for dialect {name!r} and no default_handler; "
                f"call {cls.__name__}.register_dialect({name!r}, DialectTypeHandler(...))"
            )
        return cls.default_handler

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        """The real column type for ``dialect``."""
        real = self.get_handler(dialect.name).type_factory(dialect)
        return dialect.type_descriptor(real() if isinstance(real, type) else real)

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        """Convert ``value`` for ``dialect`` with the handler's ``bind`` (None passes)."""
        convert = self.get_handler(dialect.name).bind
        return value if value is None or convert is None else convert(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        """Convert a database ``value`` with the handler's ``result`` (None passes)."""
        convert = self.get_handler(dialect.name).result
        return value if value is None or convert is None else convert(value)


def _uuid_of(value: Any) -> uuid.UUID:
    """A ``UUID`` from a UUID, its 16 bytes, or its text; ``ValueError`` otherwise."""
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, bytes | bytearray):
        return uuid.UUID(bytes=bytes(value))
    if isinstance(value, memoryview):
        return uuid.UUID(bytes=value.tobytes())
    if isinstance(value, str):
        return uuid.UUID(value)
    raise ValueError(f"expected a UUID, 16 bytes or UUID text, got {type(value).__name__}")


def _uuid_bytes(value: Any) -> bytes:
    return _uuid_of(value).bytes


def _sixteen_bytes(value: Any) -> bytes:
    data = bytes(value)
    if len(data) != 16:
        raise ValueError(f"Binary16 holds exactly 16 bytes, got {len(data)}")
    return data


_MYSQL_BINARY16 = DialectTypeHandler(lambda _d: mysql.BINARY(16), _uuid_bytes, _uuid_of)


class UUIDBinary(DialectAwareType):
    """A ``uuid.UUID`` column: native UUID on PostgreSQL, ``BINARY(16)`` on MySQL/MariaDB,
    16-byte ``LargeBinary`` elsewhere. Binds a UUID, its bytes or its text; reads a UUID."""

    cache_ok = True
    default_handler = DialectTypeHandler(lambda _d: LargeBinary(16), _uuid_bytes, _uuid_of)


UUIDBinary.register_dialect(
    "postgresql", DialectTypeHandler(lambda _d: Uuid(as_uuid=True), _uuid_of)
)
UUIDBinary.register_dialect("mysql", _MYSQL_BINARY16)
UUIDBinary.register_dialect("mariadb", _MYSQL_BINARY16)


class Binary16(DialectAwareType):
    """Exactly 16 raw bytes: ``BYTEA`` on PostgreSQL, ``BINARY(16)`` on MySQL/MariaDB,
    ``LargeBinary(16)`` elsewhere. Binding anything but 16 bytes raises ``ValueError``."""

    cache_ok = True
    default_handler = DialectTypeHandler(lambda _d: LargeBinary(16), _sixteen_bytes, bytes)


Binary16.register_dialect(
    "postgresql", DialectTypeHandler(lambda _d: postgresql.BYTEA(), _sixteen_bytes, bytes)
)
for _name in ("mysql", "mariadb"):
    Binary16.register_dialect(
        _name, DialectTypeHandler(lambda _d: mysql.BINARY(16), _sixteen_bytes, bytes)
    )


class JSONType(DialectAwareType):
    """Plain ``JSON`` on every dialect; register ``postgresql`` with ``JSONB`` to use it."""

    cache_ok = True
    default_handler = DialectTypeHandler(lambda _d: JSON())


class PayloadBinary(DialectAwareType):
    """Bytes of any length: ``LargeBinary`` (``BYTEA``, ``BLOB``); ``LONGBLOB`` on
    MySQL/MariaDB so payloads over 64 KiB fit. Register a dialect for e.g. ``VARBINARY(max)``."""

    cache_ok = True
    default_handler = DialectTypeHandler(lambda _d: LargeBinary(), bytes, bytes)


for _name in ("mysql", "mariadb"):
    PayloadBinary.register_dialect(
        _name, DialectTypeHandler(lambda _d: mysql.LONGBLOB(), bytes, bytes)
    )
