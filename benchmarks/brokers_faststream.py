"""FastStream rows: consuming RabbitMQ with FastStream beside cqrs's own consumer, same run.

Each variant consumes its own freshly filled durable quorum queue of ``N`` messages (the
emitter's wire format, published by ``AMQPMessageBroker``) at prefetch ``P`` and does the
same work per message: decode the JSON into the event model, ``await`` one handler that
counts, ack. Timed from starting the consumer (its channel, ``basic.qos``, ``basic.consume``)
until it has stopped with every message acked; the connection is opened before.

* **raw aio-pika**: ``queue.consume(callback)`` doing ``Model.from_dict(**json)``,
  ``handler.handle(event)``, ``message.ack()`` (the floor).
* **plain FastStream**: ``@broker.subscriber(queue, channel=Channel(prefetch_count=P))``
  with the event model as the handler's typed parameter (FastStream decodes and validates
  it) calling ``handler.handle(event)``; its default ack policy (ack after success).
* **FastStream + cqrs adapter**: ``subscribe_events(broker, queue, mediator, Model)``
  (decode as ``EventConsumer``, ``EventMediator.send``, ack after success, bounded retries,
  dead letters).
* **EventConsumer**: ``EventConsumer(await AMQPMessageBroker.subscribe(queue), mediator,
  Model)``, cqrs's consumer on aio-pika.

FastStream brokers run with ``logger=None`` (no per-message log lines), so their rows show
the framework, not the logging. Rows, wall µs per message (throughput = 1e6 / value):

* ``EventConsumer`` / plain FastStream: target ratio ≤ 1.0 (building consumers on the
  client must not be slower than FastStream, or the recommendation of issue #8 §4 flips);
* FastStream + adapter / plain FastStream: the adapter's cost for a FastStream user,
  target ratio ≤ 1.25;
* plain FastStream / raw aio-pika: information (the issue measured 753 vs 1,601 msg/s).

Without a RabbitMQ on 127.0.0.1:5672, or without FastStream (the faststream extra), every
row is an ``ERROR`` row saying so; the run goes on.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from benchmarks.broker_bench import (
    CONSUME_NOTE,
    EventTypes,
    Samples,
    comparison_row,
    error_rows,
    reachable,
    sizes,
    timed,
)
from benchmarks.brokers import delete_queues
from benchmarks.report import Row, Target, failed_row
from benchmarks.settings import Settings

URL = "amqp://guest:guest@127.0.0.1:5672/"
OURS_VS_FASTSTREAM_ROW = "RabbitMQ consume: EventConsumer vs plain FastStream"
ADAPTER_ROW = "RabbitMQ consume: FastStream + cqrs adapter vs plain FastStream"
FASTSTREAM_VS_RAW_ROW = "RabbitMQ consume: plain FastStream vs raw aio-pika"
PREFETCH = 100
WINDOW = 100
NOT_SLOWER = Target("ratio", 1.0)
ADAPTER_TARGET = Target("ratio", 1.25)


async def broker_rows_faststream(settings: Settings) -> list[Row]:
    """The FastStream rows; ``ERROR`` rows when RabbitMQ or FastStream is missing."""
    names = (OURS_VS_FASTSTREAM_ROW, ADAPTER_ROW, FASTSTREAM_VS_RAW_ROW)
    try:
        import aio_pika  # noqa: F401
        import faststream  # noqa: F401
    except ImportError:
        return error_rows(names, "FastStream is not installed (the faststream extra)")
    if not reachable(5672):
        return error_rows(names, "no RabbitMQ server on 127.0.0.1:5672")
    try:
        samples, count = await _measure(settings)
    except Exception as exc:  # reported as ERROR rows
        return [failed_row(n, exc) for n in names]
    note = f"prefetch {PREFETCH}, {CONSUME_NOTE}"
    return [
        comparison_row(
            OURS_VS_FASTSTREAM_ROW,
            samples["ours"],
            samples["faststream"],
            count,
            NOT_SLOWER,
            f"{note}; baseline FastStream",
        ),
        comparison_row(
            ADAPTER_ROW,
            samples["adapter"],
            samples["faststream"],
            count,
            ADAPTER_TARGET,
            f"{note} (+ EventMediator, retry policy); baseline FastStream",
        ),
        comparison_row(
            FASTSTREAM_VS_RAW_ROW,
            samples["faststream"],
            samples["raw"],
            count,
            None,
            f"{note}; baseline aio-pika callback",
        ),
    ]


async def _measure(settings: Settings) -> tuple[dict[str, Samples], int]:
    """(wall ns, CPU ns) per run of each variant, alternating variants within a run."""
    import aio_pika

    from cqrs.message_brokers.amqp import AMQPMessageBroker

    types = EventTypes()
    count, runs = sizes(settings)
    topics: list[str] = []
    samples: dict[str, Samples] = {"raw": [], "faststream": [], "adapter": [], "ours": []}
    broker = AMQPMessageBroker.from_url(URL, "cqrs-bench")
    connection = await aio_pika.connect(URL)
    try:
        async with broker:

            async def fill() -> str:
                topic = f"cqrs-bench-fs-{uuid.uuid4().hex[:8]}"
                topics.append(topic)
                await types.fill(broker, topic, count, WINDOW)
                return topic

            variants: dict[str, Callable[[str], Awaitable[Samples]]] = {
                "raw": lambda topic: _raw_run(connection, types, topic, count),
                "faststream": lambda topic: _faststream_run(types, topic, count),
                "adapter": lambda topic: _adapter_run(types, topic, count),
                "ours": lambda topic: _ours_run(broker, types, topic, count),
            }
            for _ in range(runs):
                for name, run in variants.items():
                    topic = await fill()
                    samples[name] += await run(topic)
                    await _check_empty(connection, topic)
    finally:
        await connection.close()
        await delete_queues(topics)
    return samples, count


async def _check_empty(connection: Any, topic: str) -> None:
    channel = await connection.channel()
    try:
        queue = await channel.declare_queue(topic, passive=True)
        left = queue.declaration_result.message_count
    finally:
        await channel.close()
    if left:
        raise AssertionError(f"{left} messages of {topic} were not acked")


async def _raw_run(connection: Any, types: EventTypes, topic: str, count: int) -> Samples:
    import pydantic_core

    handler = types.counter()
    acked = asyncio.Event()

    async def run() -> None:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=PREFETCH)
        queue = await channel.get_queue(topic, ensure=False)

        async def on_message(message: Any) -> None:
            event = types.event.from_dict(**pydantic_core.from_json(message.body))
            await handler.handle(event)
            await message.ack()
            if handler.handled == count:
                acked.set()

        tag = await queue.consume(on_message)
        await acked.wait()
        await queue.cancel(tag)
        await channel.close()

    sample = await timed(run)
    assert handler.handled == count
    return [sample]


async def _faststream_run(types: EventTypes, topic: str, count: int) -> Samples:
    from faststream.rabbit import Channel, RabbitBroker

    from cqrs.integrations.faststream import rabbit_queue

    handler = types.counter(count)
    fast = RabbitBroker(URL, logger=None)

    async def handle(event: Any) -> None:
        await handler.handle(event)

    handle.__annotations__["event"] = types.event  # FastStream validates into the model

    subscriber = fast.subscriber(
        rabbit_queue(topic), channel=Channel(prefetch_count=PREFETCH), no_reply=True
    )
    subscriber(handle)
    return await _run_faststream(fast, subscriber, handler)


async def _adapter_run(types: EventTypes, topic: str, count: int) -> Samples:
    from faststream.rabbit import RabbitBroker

    from cqrs.integrations.faststream import subscribe_events

    handler = types.counter(count)
    fast = RabbitBroker(URL, logger=None)
    route = subscribe_events(fast, topic, types.mediator(handler), types.event, prefetch=PREFETCH)
    samples = await _run_faststream(fast, route.subscriber, handler)
    assert route.stats.acked == count, route.stats
    return samples


async def _run_faststream(fast: Any, subscriber: Any, handler: Any) -> Samples:
    await fast.connect()

    async def run() -> None:
        await fast.start()
        await handler.done.wait()
        await subscriber.stop()  # waits for the running handlers: their acks are sent

    try:
        sample = await timed(run)
    finally:
        await fast.stop()
    assert handler.handled == handler.expected
    return [sample]


async def _ours_run(broker: Any, types: EventTypes, topic: str, count: int) -> Samples:
    from cqrs.consumers import EventConsumer

    handler = types.counter(count)
    mediator = types.mediator(handler)
    consumer: list[EventConsumer] = []

    async def run() -> None:
        runner = EventConsumer(
            await broker.subscribe(topic, prefetch=PREFETCH), mediator, types.event
        )
        consumer.append(runner)
        running = asyncio.create_task(runner.run())
        await handler.done.wait()
        await runner.stop()
        await running

    sample = await timed(run)
    assert handler.handled == count
    assert consumer[0].stats.acked == count
    return [sample]


if __name__ == "__main__":
    from benchmarks.report import format_table
    from benchmarks.settings import FULL

    print(format_table(asyncio.run(broker_rows_faststream(FULL))))
