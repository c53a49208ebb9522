"""The transactional outbox (4.x package): ``.repository``, ``.map``, ``.sqlalchemy``, ``.mock``,
and ours: ``.relay``. The relay's names are here too; importing them loads no SQLAlchemy."""

from cqrs._internal.outbox.relay import OutboxLag as OutboxLag
from cqrs._internal.outbox.relay import OutboxRelay as OutboxRelay
from cqrs._internal.outbox.relay import RelayCounts as RelayCounts
from cqrs._internal.outbox.relay import RelayStateError as RelayStateError
from cqrs._internal.outbox.relay import default_backoff as default_backoff

__all__ = ["OutboxLag", "OutboxRelay", "RelayCounts", "RelayStateError", "default_backoff"]
