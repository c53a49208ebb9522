"""Broker rows: Redis Streams publishing and consuming, ours beside raw redis-py in the same run.

* **publish, pipelined**: ``W`` publishes in flight at once (``asyncio.gather``), each
  returning once Redis stored it; ours is ``RedisMessageBroker.send_message(message)`` of the
  emitter's ``Message`` (group commit: the waiting ``XADD`` commands go out as one
  pipeline), raw is a redis-py pipeline of the same ``W`` ``XADD ... MAXLEN ~`` commands,
  each with the id, name and body of its message (no task per message: the floor). µs of
  wall time per message (throughput = 1e6 / value), target ratio ≤ 1.25 (ours ≥ 0.8x the
  raw throughput); the CPU µs per message of both are in the details, and their difference
  is our cost per message on top of the client.
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
import socket
import uuid
from typing import Any

from benchmarks.brokers import (
    THROUGHPUT_TARGET,
    _row,  # pyright: ignore[reportPrivateUsage]
    _sizes,  # pyright: ignore[reportPrivateUsage]
    _timed,  # pyright: ignore[reportPrivateUsage]
    _Types,  # pyright: ignore[reportPrivateUsage]
)
from benchmarks.report import Row, failed_row
from benchmarks.settings import Settings

URL = "redis://127.0.0.1:6379/0"
PUBLISH_ROW = "Redis publish, XADD, pipelined"
SEQUENTIAL_ROW = "Redis publish, XADD, sequential"
CONSUME_ROW = "Redis consume into EventMediator"
WINDOW = 100
PREFETCH = 100
MAXLEN = 100_000


def _reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5):
            return True
    except OSError:
        return False


async def broker_rows_redis(settings: Settings) -> list[Row]:
    """The Redis rows; ``ERROR`` rows when Redis or redis-py is missing."""
    names = (PUBLISH_ROW, SEQUENTIAL_ROW, CONSUME_ROW)
    try:
        import redis.asyncio  # noqa: F401
    except ImportError:
        return [Row(n, "-", error="redis-py is not installed (the redis extra)") for n in names]
    if not _reachable():
        return [Row(n, "-", error="no Redis server on 127.0.0.1:6379") for n in names]
    rows: list[Row] = []
    for name, case in (
        (PUBLISH_ROW, lambda: _publish_row(settings, WINDOW, PUBLISH_ROW)),
        (SEQUENTIAL_ROW, lambda: _publish_row(settings, 1, SEQUENTIAL_ROW)),
        (CONSUME_ROW, lambda: _consume_row(settings)),
    ):
        try:
            rows.append(await case())
        except Exception as exc:  # reported as an ERROR row
            rows.append(failed_row(name, exc))
    return rows


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

    count, runs = _sizes(settings)
    if window == 1:
        count //= 4
    prefix = f"cqrs-bench-{uuid.uuid4().hex[:8]}:"
    topic = "orders"
    messages = _Types().messages(count, topic)
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
                for start in range(0, count, window):
                    chunk = messages[start : start + window]
                    await asyncio.gather(*(broker.send_message(m) for m in chunk))

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
            ours_samples: list[tuple[int, int]] = []
            raw_samples: list[tuple[int, int]] = []
            for _ in range(runs):
                raw_samples.append(await _timed(raw))
                ours_samples.append(await _timed(ours))
    finally:
        await _delete(client, prefix)
        await client.aclose()
    target = THROUGHPUT_TARGET if window > 1 else None
    return _row(name, ours_samples, raw_samples, count, target, f"{window} in flight")


# --- consuming ------------------------------------------------------------------------------


async def _consume_row(settings: Settings) -> Row:
    import pydantic_core
    import redis.asyncio

    from cqrs.consumers import EventConsumer

    types = _Types()
    count, runs = _sizes(settings)
    prefix = f"cqrs-bench-{uuid.uuid4().hex[:8]}:"
    ours_samples: list[tuple[int, int]] = []
    raw_samples: list[tuple[int, int]] = []
    broker = _broker(prefix)
    client: Any = redis.asyncio.Redis.from_url(URL)
    try:
        async with broker:

            async def fill() -> str:
                topic = f"orders-{uuid.uuid4().hex[:8]}"
                messages = types.messages(count, topic)
                for start in range(0, count, WINDOW):
                    chunk = messages[start : start + WINDOW]
                    await asyncio.gather(*(broker.send_message(m) for m in chunk))
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

                raw_samples.append(await _timed(raw_run))
                assert handler.handled == count

                topic = await fill()
                counter = types.counter(count)
                consumer = EventConsumer(
                    await broker.subscribe(topic, prefetch=PREFETCH),
                    types.mediator(counter),
                    types.event,
                )

                async def ours_run(
                    consumer: EventConsumer = consumer, counter: Any = counter
                ) -> None:
                    running = asyncio.create_task(consumer.run())
                    await counter.done.wait()
                    await consumer.stop()  # lets the handled ones be acked
                    await running
                    assert consumer.stats.acked == count

                ours_samples.append(await _timed(ours_run))
                assert counter.handled == count
    finally:
        await _delete(client, prefix)
        await client.aclose()
    return _row(
        CONSUME_ROW,
        ours_samples,
        raw_samples,
        count,
        THROUGHPUT_TARGET,
        f"prefetch {PREFETCH}, decode + 1 handler + ack",
    )


if __name__ == "__main__":
    from benchmarks.report import format_table
    from benchmarks.settings import FULL

    print(format_table(asyncio.run(broker_rows_redis(FULL))))
