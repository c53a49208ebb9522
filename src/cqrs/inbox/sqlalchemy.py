"""The SQL inbox (SQLite, PostgreSQL, MariaDB/MySQL) and its table, for the ``sqlalchemy``
extra."""

from cqrs._internal.inbox.sqlalchemy import DEFAULT_INBOX_TABLE_NAME as DEFAULT_INBOX_TABLE_NAME
from cqrs._internal.inbox.sqlalchemy import InboxBase as InboxBase
from cqrs._internal.inbox.sqlalchemy import InboxMixin as InboxMixin
from cqrs._internal.inbox.sqlalchemy import InboxModel as InboxModel
from cqrs._internal.inbox.sqlalchemy import SqlAlchemyInbox as SqlAlchemyInbox
from cqrs._internal.inbox.sqlalchemy import current_inbox_session as current_inbox_session
from cqrs._internal.inbox.sqlalchemy import rebind_inbox_model as rebind_inbox_model

__all__ = [
    "DEFAULT_INBOX_TABLE_NAME",
    "InboxBase",
    "InboxMixin",
    "InboxModel",
    "SqlAlchemyInbox",
    "current_inbox_session",
    "rebind_inbox_model",
]
