"""The outbox relay: publishes outbox rows through a broker; any number may run at once.

``cqrs-outbox-relay --database URL --broker URL`` runs it as a command (``main``). Needs the
``sqlalchemy`` extra when it runs, plus the broker's extra.
"""

from cqrs._internal.outbox.relay import OutboxLag as OutboxLag
from cqrs._internal.outbox.relay import OutboxRelay as OutboxRelay
from cqrs._internal.outbox.relay import RelayCounts as RelayCounts
from cqrs._internal.outbox.relay import RelayStateError as RelayStateError
from cqrs._internal.outbox.relay import default_backoff as default_backoff
from cqrs._internal.outbox.relay_cli import main as main
from cqrs._internal.sql.locking import OutboxTableError as OutboxTableError

__all__ = [
    "OutboxLag",
    "OutboxRelay",
    "OutboxTableError",
    "RelayCounts",
    "RelayStateError",
    "default_backoff",
    "main",
]
