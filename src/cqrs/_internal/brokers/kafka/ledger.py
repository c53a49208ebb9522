"""What may be committed of one partition: offsets finish in any order, commits go in order.

Kafka keeps one position per partition and consumer group: committing offset ``n`` says
"every record below ``n`` is done". Handlers finish out of order, so a
:class:`PartitionLedger` remembers the offsets fetched and not yet committable, and
:attr:`~PartitionLedger.commit_offset` only moves past a run of finished ones: a record
finished before an earlier one waits for it, and is never committed past it.
"""

from __future__ import annotations

import collections

__all__ = ["PartitionLedger"]


class PartitionLedger:
    """Offsets of one assigned partition, from the first unfinished one to the last fetched.

    :meth:`fetched` records each record handed to this consumer, in offset order;
    :meth:`finish` marks one done (acked, retried through a copy, or dead-lettered);
    :attr:`commit_offset` is what to commit next (``None`` until something finished);
    :meth:`committed` records a successful commit. A ledger lives as long as one assignment
    of its partition: :attr:`active` turns ``False`` when the partition is revoked, and
    :attr:`accepting` already when its revocation starts.
    """

    __slots__ = ("_committed", "_done", "_last", "_next", "_pending", "accepting", "active")

    def __init__(self) -> None:
        self._pending: collections.deque[int] = collections.deque()
        self._done: set[int] = set()
        self._last: int | None = None
        self._next: int | None = None
        self._committed: int | None = None
        self.active = True
        self.accepting = True

    def __len__(self) -> int:
        """Offsets fetched and not committable yet (unfinished, or after an unfinished one)."""
        return len(self._pending)

    def fetched(self, offset: int) -> bool:
        """Record a fetched offset; ``False`` (ignore the record) when it is not after the last
        one: a record fetched twice (a refetch after a seek) is handed out once."""
        if self._last is not None and offset <= self._last:
            return False
        self._last = offset
        self._pending.append(offset)
        return True

    def finish(self, offset: int) -> None:
        """Mark ``offset`` done; the commit offset moves past every leading finished offset.
        Raises ``ValueError`` for an offset that is not pending."""
        if offset in self._done or not self._pending or offset < self._pending[0]:
            raise ValueError(f"offset {offset} is not pending in this partition")
        if offset > self._pending[-1]:
            raise ValueError(f"offset {offset} was never fetched in this partition")
        self._done.add(offset)
        pending, done = self._pending, self._done
        while pending and pending[0] in done:
            first = pending.popleft()
            done.discard(first)
            self._next = first + 1

    @property
    def commit_offset(self) -> int | None:
        """The offset to commit: one past the last of the leading finished offsets (every
        record below it is done); ``None`` while nothing finished."""
        return self._next

    @property
    def dirty(self) -> bool:
        """True when :attr:`commit_offset` moved since the last :meth:`committed`."""
        return self._next is not None and self._next != self._committed

    def committed(self, offset: int) -> None:
        """Record that Kafka stored ``offset`` as the group's position."""
        if self._committed is None or offset > self._committed:
            self._committed = offset
