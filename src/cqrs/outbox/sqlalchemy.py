"""The outbox table and repository on SQLAlchemy (4.x path; needs the ``sqlalchemy`` extra)."""

from cqrs._internal.outbox.sqlalchemy import DEFAULT_OUTBOX_TABLE_NAME as DEFAULT_OUTBOX_TABLE_NAME
from cqrs._internal.outbox.sqlalchemy import MAX_FLUSH_COUNTER_VALUE as MAX_FLUSH_COUNTER_VALUE
from cqrs._internal.outbox.sqlalchemy import Base as Base
from cqrs._internal.outbox.sqlalchemy import BinaryUUID as BinaryUUID
from cqrs._internal.outbox.sqlalchemy import OutboxMixin as OutboxMixin
from cqrs._internal.outbox.sqlalchemy import OutboxModel as OutboxModel
from cqrs._internal.outbox.sqlalchemy import (
    SqlAlchemyOutboxedEventRepository as SqlAlchemyOutboxedEventRepository,
)
from cqrs._internal.outbox.sqlalchemy import rebind_outbox_model as rebind_outbox_model

__all__ = [
    "Base",
    "BinaryUUID",
    "DEFAULT_OUTBOX_TABLE_NAME",
    "MAX_FLUSH_COUNTER_VALUE",
    "OutboxMixin",
    "OutboxModel",
    "SqlAlchemyOutboxedEventRepository",
    "rebind_outbox_model",
]
