"""The Redis Streams broker against the real server on 127.0.0.1:6379: the conformance suite,
the wire format, pipelining, retries that do not duplicate, lease renewal, the delivery
limit, trimming, and a group that vanished.

Every test uses its own key prefix and deletes its keys afterwards. Faults that need a
restart of Redis are in ``test_redis_broker_faults.py`` (on a private server).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pydantic_core
import pytest
import redis.asyncio
import redis.exceptions

import cqrs
from cqrs._internal.brokers.delivery import (
    DEAD_LETTER_REASON_HEADER,
    ORIGINAL_TOPIC_HEADER,
    dead_letter_topic,
)
from cqrs.consumers import Backoff, EventConsumer
from cqrs.errors import DeliveryLostError
from cqrs.message_brokers.redis import (
    RedisMessageBroker,
    RedisPublishError,
    RedisSubscription,
    StreamOptions,
)
from cqrs.testing import ConformanceError, check_message_broker
from tests.integration.brokers.redis_broker_support import (
    NEEDS_REDIS,
    REDIS_PORT,
    REDIS_URL,
    own_prefix,
    redis_reachable,
)
from tests.integration.brokers.support import (
    OrderPlaced,
    Recorder,
    mediator_for,
    order_event,
    order_messages,
)
from tests.support import LONG_TEST_TIMEOUT, PATIENCE, wait_until_async
from tests.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.redis, pytest.mark.timeout(LONG_TEST_TIMEOUT)]

TOPIC = "orders"


@pytest.fixture
def redis_up() -> None:
    """Skip the test when no Redis server listens on 127.0.0.1:6379."""
    if not redis_reachable():
        pytest.skip(NEEDS_REDIS)


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    """A key prefix of this test alone; its keys are deleted afterwards."""
    async with own_prefix() as unique:
        yield unique


@pytest.fixture
async def client(redis_up: None) -> AsyncIterator[Any]:
    """A plain client of the test Redis, to look at what the broker stored."""
    connection: Any = redis.asyncio.Redis.from_url(REDIS_URL)
    yield connection
    await connection.aclose()


def broker(prefix: str, url: str = REDIS_URL, **options: Any) -> RedisMessageBroker:
    return RedisMessageBroker.from_url(
        url, options=StreamOptions(prefix=prefix, **options), confirm_timeout=PATIENCE
    )


class PipelineCounter:
    """Counts the pipelines ``redis_broker``'s client makes from now on (in :attr:`made`)."""

    def __init__(self, redis_broker: RedisMessageBroker) -> None:
        self.made = 0
        make = redis_broker.client.pipeline

        def counting(*args: Any, **kwargs: Any) -> Any:
            self.made += 1
            return make(*args, **kwargs)

        redis_broker.client.pipeline = counting


async def next_delivery(subscription: RedisSubscription) -> Any:
    async with asyncio.timeout(PATIENCE):
        return await anext(subscription)


async def pending(client: Any, key: str, group: str = "cqrs") -> int:
    return int((await client.xpending(key, group))["pending"])


async def run_until(consumer: EventConsumer, condition: Any, what: str) -> None:
    running = asyncio.create_task(consumer.run())
    try:
        await wait_until_async(condition, what)
    finally:
        await consumer.stop()
        await running


# --- the contract ---------------------------------------------------------------------------


async def test_redis_passes_the_conformance_suite(prefix: str) -> None:
    tasks_before = len(asyncio.all_tasks())
    try:
        report = await check_message_broker(lambda: broker(prefix), patience=PATIENCE)
    except ConformanceError as exc:
        raise AssertionError(f"{exc} (passed before: {exc.report})") from exc
    assert report.passed == [
        "round trip",
        "requeue",
        "dead letter",
        "redelivery after close",
        "prefetch",
        "lifecycle",
    ]
    assert len(asyncio.all_tasks()) == tasks_before


async def test_an_entry_carries_the_event_id_name_and_the_4x_body(prefix: str, client: Any) -> None:
    messages = order_messages(3, TOPIC)
    async with broker(prefix) as redis_broker:
        for message in messages:
            await redis_broker.send_message(message)
        entries = await client.xrange(prefix + TOPIC)
        subscription = await redis_broker.subscribe(TOPIC)
        delivery = await next_delivery(subscription)
        await delivery.ack()
    assert [fields for _, fields in entries] == [
        {
            b"id": str(m.message_id).encode(),  # the event id
            b"name": m.message_name.encode(),
            b"body": m.payload_bytes,
        }
        for m in messages
    ]
    body = pydantic_core.from_json(entries[0][1][b"body"])
    assert body["event_id"] == str(messages[0].message_id)
    assert body["payload"] == {"order_id": 0}
    assert delivery.message.message_id == messages[0].message_id
    assert delivery.attempt == 1
    assert delivery.entry_id == entries[0][0].decode()


async def test_a_handler_s_events_are_published_by_the_mediator(prefix: str, client: Any) -> None:
    """The README path: a command handler emits a notification event; ``mediator.send``
    returns once Redis stored it."""
    import di

    from cqrs.requests import bootstrap

    class PlaceOrder(cqrs.Request):
        order_id: int

    class PlaceOrderHandler(cqrs.RequestHandler[PlaceOrder, None]):
        def __init__(self) -> None:
            self._events: list[cqrs.Event] = []

        @property
        def events(self) -> list[cqrs.Event]:
            return self._events

        async def handle(self, request: PlaceOrder) -> None:
            self._events.append(order_event(request.order_id, TOPIC))

    async with broker(prefix) as redis_broker:
        mediator = bootstrap.bootstrap(
            di_container=di.Container(),
            commands_mapper=lambda mapper: mapper.bind(PlaceOrder, PlaceOrderHandler),
            message_broker=redis_broker,
        )
        for n in range(5):
            await mediator.send(PlaceOrder(order_id=n))
            assert await client.xlen(prefix + TOPIC) == n + 1  # stored before send returned
    bodies = [pydantic_core.from_json(f[b"body"]) for _, f in await client.xrange(prefix + TOPIC)]
    assert [b["payload"]["order_id"] for b in bodies] == [0, 1, 2, 3, 4]


async def test_maxlen_bounds_each_stream_approximately(prefix: str, client: Any) -> None:
    async with broker(prefix, maxlen=100) as redis_broker:
        messages = order_messages(1000, TOPIC)
        for start in range(0, 1000, 100):
            await asyncio.gather(*(redis_broker.send_message(m) for m in messages[start:][:100]))
    length = await client.xlen(prefix + TOPIC)
    # MAXLEN ~ drops whole nodes of 100 entries (stream-node-max-entries), never below 100.
    assert 100 <= length <= 200
    [(_, newest)] = await client.xrevrange(prefix + TOPIC, count=1)
    assert newest[b"id"] == str(messages[-1].message_id).encode()


async def test_concurrent_publishes_share_round_trips_in_order(prefix: str, client: Any) -> None:
    messages = order_messages(500, TOPIC)
    async with broker(prefix) as redis_broker:
        pipelines = PipelineCounter(redis_broker)
        await asyncio.gather(*(redis_broker.send_message(m) for m in messages))
        gathered = pipelines.made
        for message in messages[:10]:  # one at a time: a plain XADD each, no pipeline
            await redis_broker.send_message(message)
    assert gathered == 1  # 500 XADD in one round trip (a batch holds up to 1000)
    assert pipelines.made == 1
    ids = [f[b"id"] for _, f in await client.xrange(prefix + TOPIC)]
    assert ids == [str(m.message_id).encode() for m in [*messages, *messages[:10]]]


async def test_send_messages_stores_each_once_in_order_in_one_pipeline(
    prefix: str, client: Any
) -> None:
    messages = order_messages(300, TOPIC)
    async with broker(prefix) as redis_broker:
        pipelines = PipelineCounter(redis_broker)
        tasks_before = len(asyncio.all_tasks())
        await redis_broker.send_messages(messages)
        assert len(asyncio.all_tasks()) == tasks_before
    assert pipelines.made == 1
    ids = [f[b"id"] for _, f in await client.xrange(prefix + TOPIC)]
    assert ids == [str(m.message_id).encode() for m in messages]


async def test_send_messages_says_how_many_were_not_stored(prefix: str, client: Any) -> None:
    """Messages for a key that is not a stream are refused; the others are stored."""
    await client.set(prefix + "taken", "not a stream")
    good = order_messages(5, TOPIC)
    bad = order_messages(2, "taken")
    async with broker(prefix) as redis_broker:
        with pytest.raises(RedisPublishError, match=r"^2 of 7 messages were not stored") as info:
            await redis_broker.send_messages([good[0], bad[0], *good[1:4], bad[1], good[4]])
    assert "WRONGTYPE" in str(info.value)
    ids = [f[b"id"] for _, f in await client.xrange(prefix + TOPIC)]
    assert ids == [str(m.message_id).encode() for m in good]


# --- failures of publishing -----------------------------------------------------------------


async def test_a_publish_that_cannot_be_confirmed_raises() -> None:
    unreachable = RedisMessageBroker.from_url("redis://127.0.0.1:1/0", confirm_timeout=0.5)
    async with unreachable:
        [message] = order_messages(1, TOPIC)
        with pytest.raises(
            RedisPublishError, match=f"did not confirm message {message.message_id}"
        ):
            await unreachable.send_message(message)
        assert unreachable.publisher.retried == 1


async def test_a_publish_redis_refuses_raises_at_once(prefix: str, client: Any) -> None:
    await client.set(prefix + TOPIC, "not a stream")
    async with broker(prefix) as redis_broker:
        [message] = order_messages(1, TOPIC)
        with pytest.raises(RedisPublishError, match=r"refused message .*WRONGTYPE"):
            await redis_broker.send_message(message)
        assert redis_broker.publisher.retried == 0  # refused, not retried


async def test_a_lost_reply_is_retried_without_storing_the_message_twice(
    prefix: str, client: Any
) -> None:
    messages = order_messages(21, TOPIC)
    async with TcpProxy(REDIS_PORT) as proxy, broker(prefix, url=proxy.url()) as redis_broker:
        # The very first publish: no entry id known yet, the retry scans the newest ones.
        proxy.lose_next_reply(b"XADD")
        await redis_broker.send_message(messages[0])
        # A pipelined batch of 20 whose reply is lost after Redis stored all of them.
        proxy.lose_next_reply(b"XADD")
        await asyncio.gather(*(redis_broker.send_message(m) for m in messages[1:]))
        retried, found = redis_broker.publisher.retried, redis_broker.publisher.found_stored
    assert proxy.replies_lost == 2
    assert (retried, found) == (21, 21)  # every retried message had been stored: none again
    ids = [f[b"id"] for _, f in await client.xrange(prefix + TOPIC)]
    assert ids == [str(m.message_id).encode() for m in messages]


async def test_a_lost_ack_reply_is_retried_and_the_message_not_delivered_again(
    prefix: str, client: Any
) -> None:
    async with TcpProxy(REDIS_PORT) as proxy, broker(prefix, url=proxy.url()) as redis_broker:
        [first, sentinel] = order_messages(2, TOPIC)
        await redis_broker.send_message(first)
        subscription = await redis_broker.subscribe(TOPIC, prefetch=1)
        delivery = await next_delivery(subscription)
        proxy.lose_next_reply(b"XACK")
        await delivery.ack()
        await subscription.close()
        assert proxy.replies_lost == 1
        assert await pending(client, prefix + TOPIC) == 0
        await redis_broker.send_message(sentinel)
        again = await redis_broker.subscribe(TOPIC, prefetch=1)
        delivery = await next_delivery(again)
        assert delivery.message.message_id == sentinel.message_id
        await delivery.ack()


async def test_acks_go_out_in_the_background_and_a_lost_one_comes_again(
    prefix: str, client: Any
) -> None:
    """``ack()`` returns before the XACK reached Redis; while Redis is out for longer than
    ``settle_timeout`` the XACK fails: counted, reported by ``commit()``, and the message is
    delivered again once it is idle (to any subscription of the group)."""
    claim_idle = 1.0
    messages = order_messages(3, TOPIC)
    async with TcpProxy(REDIS_PORT) as proxy:
        settle = 3.0  # generous: the ack after the outage must get through within it
        options = StreamOptions(prefix=prefix, claim_idle=claim_idle)
        proxied = RedisMessageBroker.from_url(proxy.url(), options=options, confirm_timeout=settle)
        async with proxied, broker(prefix, claim_idle=claim_idle) as direct:
            await direct.send_messages(messages)
            subscription = await proxied.subscribe(TOPIC, prefetch=3)
            first, second, third = [await next_delivery(subscription) for _ in range(3)]
            await first.ack()
            await subscription.commit()  # reached Redis
            assert await pending(client, prefix + TOPIC) == 2
            proxy.refuse()
            await second.ack()  # returns at once, Redis or not
            with pytest.raises(DeliveryLostError, match="delivered again after claim_idle"):
                await subscription.commit()
            assert subscription.ack_failures == 1
            await subscription.commit()  # the failure was reported once
            proxy.accept()
            await third.ack()
            await subscription.commit()
            assert subscription.ack_failures == 1
            assert await pending(client, prefix + TOPIC) == 1  # the lost ack's message
            await subscription.close()  # returns it, if it took it back already
            again = await direct.subscribe(TOPIC, prefetch=3)
            redelivered = await next_delivery(again)
            assert redelivered.message.message_id == messages[1].message_id
            assert redelivered.attempt >= 2
            await redelivered.ack()
            await again.close()
    assert await pending(client, prefix + TOPIC) == 0


# --- consuming ------------------------------------------------------------------------------


async def test_the_runner_consumes_retries_and_dead_letters_on_redis(
    prefix: str, client: Any
) -> None:
    def flaky(event: Any, call: int) -> None:
        if event.payload.order_id == 3 and call <= 2:
            raise ConnectionError(f"database away (call {call})")

    recorder = Recorder(flaky)
    key = prefix + TOPIC
    async with broker(prefix) as redis_broker:
        await asyncio.gather(*(redis_broker.send_message(m) for m in order_messages(200, TOPIC)))
        for fields in (
            {"body": b"{not json"},
            {"body": b'{"event_name": "Nope", "payload": {}}'},
            {"body": b"[1, 2]"},
            {"written_by": "other code"},  # no body at all
        ):
            await client.xadd(key, fields)
        consumer = EventConsumer(
            await redis_broker.subscribe(TOPIC, prefetch=20),
            mediator_for(recorder),
            {"OrderPlaced": OrderPlaced},
            backoff=Backoff(initial=0.01),
        )
        await run_until(consumer, lambda: consumer.stats.received == 206, "206 deliveries")
    assert recorder.handled == dict.fromkeys(range(200), 1)
    assert recorder.calls[3] == 3  # two failures, then success, counted by Redis
    assert (consumer.stats.acked, consumer.stats.retried, consumer.stats.dead_lettered) == (
        200,
        2,
        4,
    )
    assert await pending(client, key) == 0
    letters = [fields for _, fields in await client.xrange(prefix + dead_letter_topic(TOPIC))]
    reason_field = b"header:" + DEAD_LETTER_REASON_HEADER.encode()
    reasons = {f.get(b"body", b"(none)"): f[reason_field].decode() for f in letters}
    assert len(reasons) == len(letters) == 4
    assert reasons[b"{not json"].startswith("undecodable: the body is not JSON")
    assert reasons[b'{"event_name": "Nope", "payload": {}}'] == (
        "unknown event name 'Nope': this consumer decodes ['OrderPlaced']"
    )
    assert reasons[b"[1, 2]"] == "wrong schema: the body is a JSON list, not an object"
    assert reasons[b"(none)"].startswith("undecodable: the body is not JSON")
    [foreign] = [f for f in letters if b"body" not in f]
    assert foreign[b"written_by"] == b"other code"  # the copy keeps every original field
    assert {f[b"header:" + ORIGINAL_TOPIC_HEADER.encode()] for f in letters} == {TOPIC.encode()}


async def test_cancelling_a_wait_for_a_delivery_loses_nothing(prefix: str) -> None:
    tasks_before = len(asyncio.all_tasks())
    async with broker(prefix) as redis_broker:
        subscription = await redis_broker.subscribe(TOPIC, prefetch=5)
        for _ in range(3):
            waiting = asyncio.ensure_future(anext(subscription))
            await asyncio.sleep(0.05)
            waiting.cancel()
            await asyncio.gather(waiting, return_exceptions=True)
        [message] = order_messages(1, TOPIC)
        await redis_broker.send_message(message)
        delivery = await next_delivery(subscription)
        assert delivery.message.message_id == message.message_id
        assert delivery.attempt == 1
        await delivery.ack()
    assert len(asyncio.all_tasks()) == tasks_before


async def test_a_slow_handler_keeps_its_message(prefix: str, client: Any) -> None:
    """The holder renews its message every claim_idle / 3, so a second subscription of the
    group never takes it over, however long past claim_idle it is held."""
    claim_idle = 3.0
    async with broker(prefix, claim_idle=claim_idle) as redis_broker:
        [slow, other] = order_messages(2, TOPIC)
        await redis_broker.send_message(slow)
        holder = await redis_broker.subscribe(TOPIC, prefetch=1)
        held = await next_delivery(holder)
        rival = await redis_broker.subscribe(TOPIC, prefetch=5)
        stolen = asyncio.ensure_future(anext(rival))
        done, _ = await asyncio.wait({stolen}, timeout=claim_idle * 2.5)
        assert not done, "the rival took over a message its holder was renewing"
        await redis_broker.send_message(other)
        got = await stolen
        assert got.message.message_id == other.message_id
        await got.ack()
        await held.ack()
        assert holder.leases_lost == 0
    assert await pending(client, prefix + TOPIC) == 0


async def test_a_message_delivered_delivery_limit_times_is_dead_lettered(
    prefix: str, client: Any
) -> None:
    """Subscriptions that take a message and end without settling it (as a process that a
    handler kills) raise its count; past delivery_limit it goes to the dead letters."""
    async with broker(prefix, delivery_limit=2) as redis_broker:
        [message] = order_messages(1, TOPIC)
        await redis_broker.send_message(message)
        for attempt in (1, 2):
            subscription = await redis_broker.subscribe(TOPIC, prefetch=1)
            delivery = await next_delivery(subscription)
            assert delivery.attempt == attempt
            await subscription.close()  # not settled
        third = await redis_broker.subscribe(TOPIC, prefetch=1)
        await wait_until_async(lambda: third.dead_lettered_at_limit == 1, "the dead letter")
        await third.close()
    [(_, letter)] = await client.xrange(prefix + dead_letter_topic(TOPIC))
    assert letter[b"id"] == str(message.message_id).encode()
    assert letter[b"header:" + DEAD_LETTER_REASON_HEADER.encode()].startswith(
        b"delivered 2 times without being settled"
    )
    assert await pending(client, prefix + TOPIC) == 0


async def test_messages_trimmed_away_before_being_settled_are_counted_as_lost(
    prefix: str, client: Any
) -> None:
    """A stream is a log: MAXLEN trims entries whatever the groups still hold."""
    async with broker(prefix, maxlen=10) as redis_broker:
        first = order_messages(5, TOPIC)
        for message in first:
            await redis_broker.send_message(message)
        holder = await redis_broker.subscribe(TOPIC, prefetch=5)
        held = [await next_delivery(holder) for _ in first]
        assert [d.message.message_id for d in held] == [m.message_id for m in first]
        more = order_messages(400, TOPIC)
        await asyncio.gather(*(redis_broker.send_message(m) for m in more))
        assert await client.xlen(prefix + TOPIC) < 200  # the first entries are gone
        await holder.close()  # the 5 it would return are gone
        assert holder.trimmed == 5
        kept = await client.xlen(prefix + TOPIC)
        taker = await redis_broker.subscribe(TOPIC, prefetch=500)
        got = [await next_delivery(taker) for _ in range(kept)]
        assert [d.message.message_id for d in got] == [m.message_id for m in more[-kept:]]
        assert all(d.attempt == 1 for d in got)
        for delivery in got:
            await delivery.ack()
        assert taker.trimmed == 0
    assert await pending(client, prefix + TOPIC) == 0


async def test_a_subscription_recreates_its_group_when_the_stream_is_deleted(
    prefix: str, client: Any
) -> None:
    """What a restart of Redis without persistence does to a running subscription (the
    key and its group vanish): it creates the group again and goes on with new messages."""
    async with broker(prefix) as redis_broker:
        subscription = await redis_broker.subscribe(TOPIC, prefetch=5)
        waiting = asyncio.ensure_future(anext(subscription))
        await asyncio.sleep(0.2)  # the reader waits in XREADGROUP BLOCK
        await client.delete(prefix + TOPIC)
        await wait_until_async(lambda: subscription.groups_recreated == 1, "the group again")
        [message] = order_messages(1, TOPIC)
        await redis_broker.send_message(message)
        async with asyncio.timeout(PATIENCE):
            delivery = await waiting
        assert delivery.message.message_id == message.message_id
        await delivery.ack()
    assert await pending(client, prefix + TOPIC) == 0


async def test_subscribing_to_a_key_that_is_not_a_stream_fails_loudly(
    prefix: str, client: Any
) -> None:
    await client.set(prefix + TOPIC, "not a stream")
    async with broker(prefix) as redis_broker:
        with pytest.raises(redis.exceptions.ResponseError, match="WRONGTYPE"):
            await redis_broker.subscribe(TOPIC)


async def test_several_groups_each_get_every_message(prefix: str) -> None:
    messages = order_messages(10, TOPIC)
    async with broker(prefix) as redis_broker:
        billing = await redis_broker.subscribe(TOPIC, group="billing", prefetch=10)
        shipping = await redis_broker.subscribe(TOPIC, group="shipping", prefetch=10)
        await asyncio.gather(*(redis_broker.send_message(m) for m in messages))
        for subscription in (billing, shipping):
            got = [await next_delivery(subscription) for _ in messages]
            assert [d.message.message_id for d in got] == [m.message_id for m in messages]
            for delivery in got:
                await delivery.ack()


# --- bad input ------------------------------------------------------------------------------


def test_bad_settings_are_refused_with_what_to_do(redis_up: None) -> None:
    with pytest.raises(TypeError, match="decode_responses=True"):
        RedisMessageBroker(redis.asyncio.Redis.from_url(REDIS_URL, decode_responses=True))
    with pytest.raises(TypeError, match=r"must be a redis\.asyncio\.Redis"):
        RedisMessageBroker(object())
    with pytest.raises(ValueError, match="confirm_timeout must be > 0"):
        RedisMessageBroker.from_url(REDIS_URL, confirm_timeout=0)
    bad: dict[str, Any]
    for bad, message in (
        ({"maxlen": 0}, "maxlen must be at least 1 or None"),
        ({"group": ""}, "group must be a non-empty"),
        ({"claim_idle": 0}, "claim_idle must be a positive number"),
        ({"delivery_limit": 0}, "delivery_limit must be at least 1 or None"),
    ):
        with pytest.raises(ValueError, match=message):
            StreamOptions(**bad)


async def test_prefetch_below_one_is_refused(prefix: str) -> None:
    async with broker(prefix) as redis_broker:
        with pytest.raises(ValueError, match="prefetch must be at least 1, got 0"):
            await redis_broker.subscribe(TOPIC, prefetch=0)


async def test_the_event_id_is_the_message_id_for_deduplication(prefix: str) -> None:
    """Publishing the same event twice stores two entries with the same id field."""
    event = order_event(7, TOPIC)
    from cqrs._internal.brokers.message import message_for

    async with broker(prefix) as redis_broker:
        await redis_broker.send_message(message_for(event))
        await redis_broker.send_message(message_for(event))
        subscription = await redis_broker.subscribe(TOPIC, prefetch=2)
        got = [await next_delivery(subscription) for _ in range(2)]
        for delivery in got:
            await delivery.ack()
    assert {d.message.message_id for d in got} == {uuid.UUID(str(event.event_id))}


# --- group commit (no Redis needed) ---------------------------------------------------------


async def test_group_commit_batches_concurrent_items_and_settles_each() -> None:
    from cqrs._internal.brokers.redis.batching import GroupCommit

    batches: list[list[int]] = []
    release = asyncio.Event()

    async def run(batch: list[int]) -> list[int | BaseException]:
        batches.append(batch)
        await release.wait()
        return [ValueError(f"odd {n}") if n % 2 else n * 10 for n in batch]

    commit: GroupCommit[int, int] = GroupCommit(run, max_batch=3, name="test")
    futures = [commit.submit(n) for n in range(4)]  # 0, 1, 2 go together; 3 waits
    await asyncio.sleep(0)
    assert batches == [[0, 1, 2]]
    more = [commit.submit(n) for n in range(4, 6)]  # queued while a batch is in flight
    more[1].cancel()  # dropped before its batch is sent
    release.set()
    results = await asyncio.gather(*futures, more[0], return_exceptions=True)
    assert batches == [[0, 1, 2], [3, 4]]
    assert [r if isinstance(r, int) else str(r) for r in results] == [
        0,
        "odd 1",
        20,
        "odd 3",
        40,
    ]
    assert not commit.busy


async def test_group_commit_fails_the_batch_when_its_run_raises() -> None:
    from cqrs._internal.brokers.redis.batching import GroupCommit

    async def run(batch: list[int]) -> list[int | BaseException]:
        raise ConnectionError("gone")

    commit: GroupCommit[int, int] = GroupCommit(run, max_batch=10, name="test")
    results = await asyncio.gather(*(commit.submit(n) for n in range(3)), return_exceptions=True)
    assert [type(r) for r in results] == [ConnectionError] * 3
    with pytest.raises(ValueError, match="max_batch must be at least 1"):
        GroupCommit(run, max_batch=0, name="test")
