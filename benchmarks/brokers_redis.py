"""Broker rows: Redis Streams publishing and consuming, ours beside raw redis-py in the same run.

* **publish, pipelined**: ``W`` messages in flight at once, each stored by Redis before the
  call returns; ours is ``RedisMessageBroker.send_messages(W messages)`` of the emitter's
  ``Message`` (every ``XADD`` queued before any reply is awaited: one pipeline), raw is a
  redis-py pipeline of the same ``W`` ``XADD ... MAXLEN ~`` commands, each with the id, name
  and body of its message. µs of wall time per message (throughput = 1e6 / value), target
  ratio ≤ 1.25 (ours ≥ 0.8x the raw throughput); the CPU µs per message of both are in the
  details, and their difference is our cost per message on top of the client.
* **publish, gather of send_message**: the same ``W`` in flight as ``asyncio.gather`` of
  ``W`` ``send_message`` calls (a task each, as concurrent emitters do; group commit puts the
  waiting ``XADD`` commands in one pipeline), beside the same raw pipeline (information: the
  cost of a task per message).
* **publish, sequential**: one publish in flight, each awaited (information: the floor of a
  publisher that awaits each ``XADD`` in turn).
* **consume**: ``N`` stored messages consumed at prefetch ``P`` by one consumer of a new
  group; ours is ``EventConsumer`` (decode, ``EventMediator.send``, ack), raw is a loop of
  ``XREADGROUP COUNT P`` doing the same work per message (``Model.from_dict(**json)``,
  ``await handler.handle(event)``) and one ``XACK`` of the batch. Wall µs per message,
  target ratio ≤ 1.25.

Without a Redis on 127.0.0.1:6379 (or without redis-py) every row is an ``ERROR`` row
saying so; the run goes on. Keys are created under a random prefix and deleted afterwards.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from benchmarks.broker_bench import (
    CONSUME_NOTE,
    THROUGHPUT_TARGET,
    EventTypes,
    alternate,
    comparison_row,
    send_windows,
    service_rows,
    sizes,
    time_event_consumer,
    timed,
)
from benchmarks.report import Row
from benchmarks.settings import Settings

URL = "redis://127.0.0.1:6379/0"
PUBLISH_ROW = "Redis publish, XADD, pipelined"
GATHER_ROW = "Redis publish, XADD, gather of send_message"
SEQUENTIAL_ROW = "Redis publish, XADD, sequential"
CONSUME_ROW = "Redis consume into EventMediator"
WINDOW = 100
PREFETCH = 100
MAXLEN = 100_000


async def broker_rows_redis(settings: Settings) -> list[Row]:
    """The Redis rows; ``ERROR`` rows when Redis or redis-py is missing."""
    return await service_rows(
        (
            (PUBLISH_ROW, lambda: _publish_row(settings, WINDOW, PUBLISH_ROW)),
            (GATHER_ROW, lambda: _publish_row(settings, WINDOW, GATHER_ROW)),
            (SEQUENTIAL_ROW, lambda: _publish_row(settings, 1, SEQUENTIAL_ROW)),
            (CONSUME_ROW, lambda: _consume_row(settings)),
        ),
        client="redis",
        missing="redis-py is not installed (the redis extra)",
        service="Redis",
        port=6379,
    )


async def _delete(client: Any, prefix: str) -> None:
    keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
    if keys:
        await client.delete(*keys)


def _broker(prefix: str) -> Any:
    from cqrs.message_brokers.redis import RedisMessageBroker, StreamOptions

    return RedisMessageBroker.from_url(URL, options=StreamOptions(prefix=prefix, maxlen=MAXLEN))


# --- publishing -----------------------------------------------------------------------------


async def _publish_row(settings: Settings, window: int, name: str) -> Row:
    import redis.asyncio

    count, runs = sizes(settings)
    if window == 1:
        count //= 4
    prefix = f"cqrs-bench-{uuid.uuid4().hex[:8]}:"
    topic = "orders"
    messages = EventTypes().messages(count, topic)
    broker = _broker(prefix)
    client: Any = redis.asyncio.Redis.from_url(URL)
    raw_key = f"{prefix}raw"
    try:
        async with broker:

            async def ours() -> None:
                if window == 1:
                    for message in messages:
                        await broker.send_message(message)
                    return
                if name == GATHER_ROW:
                    await send_windows(broker, messages, window)
                    return
                for start in range(0, count, window):
                    await broker.send_messages(messages[start : start + window])

            def fields(message: Any) -> dict[str, Any]:
                return {
                    "id": str(message.message_id),
                    "name": message.message_name,
                    "body": message.payload_bytes,
                }

            async def raw() -> None:
                if window == 1:
                    for message in messages:
                        await client.xadd(raw_key, fields(message), maxlen=MAXLEN, approximate=True)
                    return
                for start in range(0, count, window):
                    pipe = client.pipeline(transaction=False)
                    for message in messages[start : start + window]:
                        pipe.xadd(raw_key, fields(message), maxlen=MAXLEN, approximate=True)
                    await pipe.execute()

            await raw()  # warm up both: connections, scripts, the streams
            await ours()
            ours_samples, raw_samples = await alternate(runs, raw, ours)
    finally:
        await _delete(client, prefix)
        await client.aclose()
    target = THROUGHPUT_TARGET if name == PUBLISH_ROW else None
    how = {PUBLISH_ROW: "send_messages", GATHER_ROW: "a task each"}.get(name, "awaited in turn")
    return comparison_row(
        name, ours_samples, raw_samples, count, target, f"{window} in flight, {how}"
    )


# --- consuming ------------------------------------------------------------------------------


async def _consume_row(settings: Settings) -> Row:
    import pydantic_core
    import redis.asyncio

    types = EventTypes()
    count, runs = sizes(settings)
    prefix = f"cqrs-bench-{uuid.uuid4().hex[:8]}:"
    ours_samples: list[tuple[int, int]] = []
    raw_samples: list[tuple[int, int]] = []
    broker = _broker(prefix)
    client: Any = redis.asyncio.Redis.from_url(URL)
    try:
        async with broker:

            async def fill() -> str:
                topic = f"orders-{uuid.uuid4().hex[:8]}"
                await types.fill(broker, topic, count, WINDOW)
                return topic

            for _ in range(runs):
                topic = await fill()
                key = prefix + topic
                await client.xgroup_create(key, "raw", id="0")
                handler = types.counter()

                async def raw_run(key: str = key, handler: Any = handler) -> None:
                    handled = 0
                    while handled < count:
                        reply = await client.xreadgroup(
                            "raw", "c1", {key: ">"}, count=PREFETCH, block=1000
                        )
                        ids: list[bytes] = []
                        for _, entries in reply:
                            for entry_id, entry in entries:
                                event = types.event.from_dict(
                                    **pydantic_core.from_json(entry[b"body"])
                                )
                                await handler.handle(event)
                                ids.append(entry_id)
                        if ids:
                            await client.xack(key, "raw", *ids)
                        handled += len(ids)

                raw_samples.append(await timed(raw_run))
                assert handler.handled == count

                topic = await fill()
                subscription = await broker.subscribe(topic, prefetch=PREFETCH)
                ours_samples.append(await time_event_consumer(subscription, types, count))
    finally:
        await _delete(client, prefix)
        await client.aclose()
    return comparison_row(
        CONSUME_ROW,
        ours_samples,
        raw_samples,
        count,
        THROUGHPUT_TARGET,
        f"prefetch {PREFETCH}, {CONSUME_NOTE}",
    )


if __name__ == "__main__":
    from benchmarks.report import format_table
    from benchmarks.settings import FULL

    print(format_table(asyncio.run(broker_rows_redis(FULL))))
