"""MockOutboxedEventRepository: the in-memory outbox of 4.x, with instance ids."""

from __future__ import annotations

from typing import Any

import pytest

import cqrs
from cqrs._internal.outbox.models import MAX_FLUSH_COUNTER_VALUE
from cqrs.outbox.map import OutboxedEventMap
from cqrs.outbox.mock import MockOutboxedEventRepository
from cqrs.outbox.repository import EventStatus, OutboxedEvent, OutboxedEventRepository
from cqrs.serializers import JsonEventSerializer


class Payload(cqrs.Response):
    n: int


class Placed(cqrs.NotificationEvent[Payload]):
    event_name: str = "placed"


class Unregistered(cqrs.NotificationEvent[Payload]):
    event_name: str = "unregistered"


def registry() -> OutboxedEventMap:
    found = OutboxedEventMap()
    found.register("placed", Placed)
    return found


def placed(n: int, topic: str = "orders") -> Placed:
    return Placed(payload=Payload(n=n), topic=topic)


def test_bad_input_is_refused_and_stores_nothing() -> None:
    rows: dict[int, OutboxedEvent] = {}
    repo = MockOutboxedEventRepository(lambda: rows, event_map=registry())
    with pytest.raises(TypeError, match=r"'unregistered'.*Register"):
        repo.add(Unregistered(payload=Payload(n=1)))
    assert rows == {}
    with pytest.raises(TypeError, match="dict"):
        MockOutboxedEventRepository(lambda: [], event_map=registry())  # type: ignore[arg-type, return-value]


async def test_bad_batch_size_and_status_are_value_errors() -> None:
    repo = MockOutboxedEventRepository(dict, event_map=registry())
    with pytest.raises(ValueError, match="batch_size"):
        await repo.get_many(0)
    with pytest.raises(ValueError, match="new_status"):
        await repo.update_status(1, "done")  # type: ignore[arg-type]


async def test_add_stores_encoded_rows_with_ids_of_this_repository() -> None:
    rows: dict[int, OutboxedEvent] = {}
    repo = MockOutboxedEventRepository(lambda: rows, event_map=registry())
    assert isinstance(repo, OutboxedEventRepository)
    events = [placed(n) for n in range(3)]
    for event in events:
        repo.add(event)
    assert sorted(rows) == [1, 2, 3]
    assert [rows[i].event for i in (1, 2, 3)] == events
    assert rows[1].payload_bytes == JsonEventSerializer().serialize(events[0])
    assert rows[1].status is EventStatus.NEW
    assert rows[1].topic == "orders"
    # a second repository counts on its own, skipping the ids already in a shared dict
    other = MockOutboxedEventRepository(lambda: rows, event_map=registry())
    other.add(placed(9))
    assert sorted(rows) == [1, 2, 3, 4]
    fresh = MockOutboxedEventRepository(dict, event_map=registry())
    fresh.add(placed(1))
    assert list(fresh.session) == [1]


async def test_get_many_honours_batch_size_topic_and_the_failure_limit() -> None:
    repo = MockOutboxedEventRepository(dict, event_map=registry())
    for n in range(5):
        repo.add(placed(n, topic="a" if n % 2 else "b"))
    assert [o.id for o in await repo.get_many(2)] == [1, 2]
    assert [o.id for o in await repo.get_many(topic="a")] == [2, 4]
    for _ in range(MAX_FLUSH_COUNTER_VALUE):
        await repo.update_status(1, EventStatus.NOT_PRODUCED)
    await repo.update_status(3, EventStatus.NOT_PRODUCED)
    batch = await repo.get_many()
    assert [(o.id, o.status) for o in batch] == [
        (2, EventStatus.NEW),
        (4, EventStatus.NEW),
        (5, EventStatus.NEW),
        (3, EventStatus.NOT_PRODUCED),
    ]


async def test_produced_deletes_the_row_and_commit_rollback_do_nothing() -> None:
    rows: dict[int, Any] = {}
    repo = MockOutboxedEventRepository(lambda: rows, event_map=registry())
    repo.add(placed(1))
    repo.add(placed(2))
    await repo.rollback()  # as 4.x: nothing to undo
    assert len(rows) == 2
    await repo.update_status(1, EventStatus.PRODUCED)
    await repo.update_status(99, EventStatus.PRODUCED)  # unknown id: ignored
    await repo.commit()
    assert list(rows) == [2]
    assert [o.id for o in await repo.get_many()] == [2]


async def test_class_level_registry_is_the_default() -> None:
    saved = OutboxedEventMap.__dict__.get("_shared_instance")
    OutboxedEventMap._shared_instance = None  # pyright: ignore[reportPrivateUsage]
    try:
        OutboxedEventMap.register("placed", Placed)
        repo = MockOutboxedEventRepository(dict)
        repo.add(placed(1))
        assert [o.event.payload.n for o in await repo.get_many()] == [1]
    finally:
        OutboxedEventMap._shared_instance = saved  # pyright: ignore[reportPrivateUsage]
