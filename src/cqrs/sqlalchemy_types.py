"""Portable SQLAlchemy column types (4.x path; needs the ``sqlalchemy`` extra)."""

from cqrs._internal.sql.types import Binary16 as Binary16
from cqrs._internal.sql.types import DialectAwareType as DialectAwareType
from cqrs._internal.sql.types import DialectTypeHandler as DialectTypeHandler
from cqrs._internal.sql.types import JSONType as JSONType
from cqrs._internal.sql.types import PayloadBinary as PayloadBinary
from cqrs._internal.sql.types import UUIDBinary as UUIDBinary

__all__ = [
    "Binary16",
    "DialectAwareType",
    "DialectTypeHandler",
    "JSONType",
    "PayloadBinary",
    "UUIDBinary",
]
