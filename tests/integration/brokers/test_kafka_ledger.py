"""PartitionLedger: what may be committed of one partition when handlers finish out of order
(no broker needed)."""

from __future__ import annotations

import random

import pytest

from cqrs._internal.brokers.kafka.ledger import PartitionLedger


def test_nothing_is_committable_until_the_first_offset_is_done() -> None:
    ledger = PartitionLedger()
    for offset in (10, 11, 12):
        assert ledger.fetched(offset)
    assert ledger.commit_offset is None
    assert not ledger.dirty
    ledger.finish(12)
    ledger.finish(11)
    assert ledger.commit_offset is None  # 10 is not done: nothing may pass it
    assert len(ledger) == 3
    ledger.finish(10)
    assert ledger.commit_offset == 13
    assert len(ledger) == 0
    assert ledger.dirty
    ledger.committed(13)
    assert not ledger.dirty


def test_the_commit_offset_stops_at_the_first_unfinished_offset() -> None:
    ledger = PartitionLedger()
    for offset in range(5):
        ledger.fetched(offset)
    ledger.finish(0)
    ledger.finish(1)
    ledger.finish(3)
    assert ledger.commit_offset == 2
    ledger.committed(2)
    ledger.finish(2)
    assert (ledger.commit_offset, ledger.dirty, len(ledger)) == (4, True, 1)


def test_gaps_in_offsets_are_skipped() -> None:
    """Compacted topics and transaction markers leave offsets that are never records."""
    ledger = PartitionLedger()
    for offset in (3, 7, 8):
        ledger.fetched(offset)
    ledger.finish(7)
    ledger.finish(3)
    assert ledger.commit_offset == 8


def test_a_refetched_offset_is_ignored() -> None:
    ledger = PartitionLedger()
    assert ledger.fetched(5)
    assert not ledger.fetched(5)
    assert not ledger.fetched(4)
    assert ledger.fetched(6)
    assert len(ledger) == 2


def test_finishing_what_is_not_pending_raises() -> None:
    ledger = PartitionLedger()
    ledger.fetched(1)
    ledger.fetched(2)
    with pytest.raises(ValueError, match="offset 3 was never fetched"):
        ledger.finish(3)
    ledger.finish(1)
    with pytest.raises(ValueError, match="offset 1 is not pending"):
        ledger.finish(1)
    ledger.finish(2)
    with pytest.raises(ValueError, match="offset 2 is not pending"):
        ledger.finish(2)


def test_a_committed_offset_never_goes_back() -> None:
    ledger = PartitionLedger()
    ledger.fetched(0)
    ledger.finish(0)
    ledger.committed(1)
    ledger.committed(0)  # a late confirmation of an older commit
    assert not ledger.dirty


@pytest.mark.parametrize("seed", range(20))
def test_any_finishing_order_commits_exactly_the_done_prefix(seed: int) -> None:
    rng = random.Random(seed)
    offsets = sorted(rng.sample(range(500), 120))
    ledger = PartitionLedger()
    for offset in offsets:
        ledger.fetched(offset)
    order = offsets.copy()
    rng.shuffle(order)
    done: set[int] = set()
    for offset in order:
        ledger.finish(offset)
        done.add(offset)
        prefix = 0
        while prefix < len(offsets) and offsets[prefix] in done:
            prefix += 1
        expected = None if prefix == 0 else offsets[prefix - 1] + 1
        assert ledger.commit_offset == expected
        assert len(ledger) == len(offsets) - prefix
    assert ledger.commit_offset == offsets[-1] + 1
