"""The inbox: consumers that run each event's handlers once, however often it is delivered.

Wrap the consumer's mediator: ``IdempotentEventMediator(mediator, inbox)``. The SQL inbox
(``SqlAlchemyInbox``, ``InboxModel``, ``current_inbox_session``, ...) lives in
``cqrs.inbox.sqlalchemy`` (the ``sqlalchemy`` extra); ``InMemoryInbox`` needs nothing.
"""

from cqrs._internal.inbox.memory import InMemoryInbox as InMemoryInbox
from cqrs._internal.inbox.middleware import IdempotentEventMediator as IdempotentEventMediator
from cqrs._internal.inbox.middleware import InboxStats as InboxStats
from cqrs._internal.inbox.repository import Inbox as Inbox
from cqrs._internal.inbox.repository import InboxRecord as InboxRecord
from cqrs._internal.inbox.repository import NoInboxTransaction as NoInboxTransaction

__all__ = [
    "IdempotentEventMediator",
    "InMemoryInbox",
    "Inbox",
    "InboxRecord",
    "InboxStats",
    "NoInboxTransaction",
]
