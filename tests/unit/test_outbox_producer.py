"""EventProducer: the 4.x relay loop over any OutboxedEventRepository (here the in-memory one)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

import cqrs
from cqrs._internal.outbox import producer as producer_module
from cqrs.message_brokers import Message
from cqrs.outbox.map import OutboxedEventMap
from cqrs.outbox.mock import MockOutboxedEventRepository
from cqrs.outbox.repository import EventStatus, OutboxedEvent, OutboxedEventRepository
from cqrs.producer import EventProducer, SessionFactory
from cqrs.serializers import JsonEventSerializer
from cqrs.testing import CallbackMessageBroker, InMemoryMessageBroker
from tests.support import PATIENCE


class Payload(cqrs.Response):
    n: int


class Placed(cqrs.NotificationEvent[Payload]):
    event_name: str = "placed"


class Tagged(JsonEventSerializer):
    def content_type_for(self, event: Any) -> str | None:
        return "application/x-tagged"


def outbox(*, codec: Any = None) -> MockOutboxedEventRepository:
    registry = OutboxedEventMap()
    registry.register("placed", Placed, codec)
    return MockOutboxedEventRepository(dict, event_map=registry)


def fill(repo: MockOutboxedEventRepository, count: int) -> list[Placed]:
    events = [Placed(payload=Payload(n=n), topic="orders") for n in range(count)]
    for event in events:
        repo.add(event)
    return events


async def test_broker_error_is_logged_with_the_event_id_marked_and_not_raised(
    cqrs_logs: pytest.LogCaptureFixture,
) -> None:
    repo = outbox()
    [event] = fill(repo, 1)
    broker = InMemoryMessageBroker()
    broker.fail_with = ConnectionError("broker is down")
    producer = EventProducer(broker, repo)
    [outboxed] = await repo.get_many()
    await producer.send_message(outboxed)  # does not raise (4.x loops rely on it)
    [row] = repo.session.values()
    assert row.status is EventStatus.NOT_PRODUCED
    assert broker.messages == []
    [record] = [r for r in cqrs_logs.records if r.name == "cqrs.outbox"]
    assert record.levelno == logging.ERROR
    assert str(event.event_id) in record.getMessage()
    assert "broker is down" in record.getMessage()
    assert record.exc_info is not None
    broker.fail_with = None  # the broker is back: the next pass publishes it
    [again] = await repo.get_many()
    await producer.send_message(again)
    assert repo.session == {}
    assert [m.message_id for m in broker.messages] == [event.event_id]


async def test_cancelled_send_leaves_the_row_unmarked() -> None:
    repo = outbox()
    fill(repo, 1)
    entered = asyncio.Event()

    async def hang(message: Message) -> None:
        entered.set()
        await asyncio.Event().wait()

    producer = EventProducer(CallbackMessageBroker(hang), repo)
    [outboxed] = await repo.get_many()
    task = asyncio.create_task(producer.send_message(outboxed))
    async with asyncio.timeout(PATIENCE):
        await entered.wait()
    [row] = repo.session.values()
    assert row.status is EventStatus.NEW  # not PRODUCED while the broker has not returned
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    [row] = repo.session.values()
    assert row.status is EventStatus.NEW  # tried again by the next pass


async def test_message_is_built_as_4x_does() -> None:
    repo = outbox()
    [event] = fill(repo, 1)
    broker = InMemoryMessageBroker()
    [outboxed] = await repo.get_many()
    await EventProducer(broker, repo).send_message(outboxed)
    [message] = broker.messages
    assert message.message_name == "placed"  # event_name, not the class name
    assert message.message_id == event.event_id
    assert message.topic == "orders"
    assert message.payload_bytes == outboxed.payload_bytes
    assert message.payload == event.to_dict()
    assert message.content_type is None
    assert message.headers is None


async def test_non_json_codec_sets_content_type_and_headers() -> None:
    repo = outbox(codec=Tagged())
    [event] = fill(repo, 1)
    broker = InMemoryMessageBroker()
    [outboxed] = await repo.get_many()
    await EventProducer(broker, repo).send_message(outboxed)
    [message] = broker.messages
    assert message.content_type == "application/x-tagged"
    assert message.headers == {"event_name": "placed", "message_id": str(event.event_id)}


class CountingRepository(MockOutboxedEventRepository):
    """Counts the queries; after ``empty_after`` queries it has nothing more."""

    def __init__(self) -> None:
        registry = OutboxedEventMap()
        registry.register("placed", Placed)
        super().__init__(dict, event_map=registry)
        self.queries = 0

    async def get_many(
        self, batch_size: int = 100, topic: str | None = None
    ) -> list[OutboxedEvent]:
        self.queries += 1
        return await super().get_many(batch_size, topic)


async def test_empty_batches_wait_the_poll_interval_instead_of_spinning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slept: list[tuple[int, float]] = []
    repo = CountingRepository()

    async def fake_sleep(delay: float) -> None:
        slept.append((repo.queries, delay))

    monkeypatch.setattr("cqrs._internal.outbox.producer.asyncio.sleep", fake_sleep)
    fill(repo, 3)
    producer = EventProducer(InMemoryMessageBroker(), repo, poll_interval=0.25)
    batches: list[int] = []
    async for batch in producer.event_batch_generator(batch_size=2):
        batches.append(len(batch))
        for outboxed in batch:
            await producer.send_message(outboxed)
        if len(batches) == 5:
            break
    # full batches are followed at once by the next query; each empty one by one wait
    assert batches == [2, 1, 0, 0, 0]
    assert repo.queries == 5
    assert slept == [(3, 0.25), (4, 0.25)]


async def test_empty_batch_really_waits() -> None:
    repo = CountingRepository()
    producer = EventProducer(InMemoryMessageBroker(), repo, poll_interval=0.05)
    loop = asyncio.get_running_loop()
    started = loop.time()
    count = 0
    async for batch in producer.event_batch_generator():
        assert batch == []
        count += 1
        if count == 4:
            break
    assert repo.queries == 4
    assert loop.time() - started >= 3 * 0.05  # three waits between four queries


async def test_the_4x_loop_publishes_every_event_once() -> None:
    repo = outbox()
    events = fill(repo, 250)
    broker = InMemoryMessageBroker()
    producer = EventProducer(broker, repo)
    async for batch in producer.event_batch_generator(100):
        if not batch:
            break
        for outboxed in batch:
            await producer.send_message(outboxed)
        await producer.repository.commit()
    assert sorted(m.message_id for m in broker.messages) == sorted(e.event_id for e in events)
    assert len(broker.messages) == 250
    assert repo.session == {}


def test_bad_poll_interval_and_aliases() -> None:
    with pytest.raises(ValueError, match="poll_interval"):
        EventProducer(InMemoryMessageBroker(), outbox(), poll_interval=-1)
    producer = EventProducer(InMemoryMessageBroker(), outbox())
    assert isinstance(producer.repository, OutboxedEventRepository)
    assert isinstance(producer.message_broker, InMemoryMessageBroker)
    assert SessionFactory is producer_module.SessionFactory
    assert cqrs.EventProducer is EventProducer
