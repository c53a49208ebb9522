"""Broker rows: RabbitMQ publishing and consuming, ours beside raw aio-pika in the same run.

* **publish, pipelined**: ``W`` publishes in flight at once (``asyncio.gather``), each
  waiting for its publisher confirm; ours is ``AMQPMessageBroker.send_message(message)`` of
  the emitter's ``Message``, raw is ``exchange.publish(aio_pika.Message(body,
  message_id=..., delivery_mode=PERSISTENT), routing_key, mandatory=True)`` on one confirm
  channel. Same durable quorum queue, same bodies. µs of wall time per message (the
  broker's round trips dominate; throughput = 1e6 / value), target ratio ≤ 1.25 (ours ≥
  0.8x the raw throughput); the CPU µs per message of both are in the details, and their
  difference is our cost per message on top of the client.
* **publish, sequential**: the same with one publish in flight (information: the floor of
  a publisher that awaits each confirm in turn).
* **consume**: ``N`` queued messages consumed at prefetch ``P``; ours is ``EventConsumer``
  (decode, ``EventMediator.send``, ack), raw is an aio-pika consumer callback doing the same
  work (``Model.from_dict(**json)``, ``await handler.handle(event)``, ``ack``). Wall µs per
  message, target ratio ≤ 1.25.

Without a RabbitMQ on 127.0.0.1:5672 (or without aio-pika) every row is an ``ERROR`` row
saying so; the run goes on.
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

URL = "amqp://guest:guest@127.0.0.1:5672/"
PUBLISH_ROW = "RabbitMQ publish, confirms, pipelined"
SEQUENTIAL_ROW = "RabbitMQ publish, confirms, sequential"
CONSUME_ROW = "RabbitMQ consume into EventMediator"
WINDOW = 100
PREFETCH = 100


async def broker_rows(settings: Settings) -> list[Row]:
    """The RabbitMQ rows; ``ERROR`` rows when RabbitMQ or aio-pika is missing."""
    return await service_rows(
        (
            (PUBLISH_ROW, lambda: _publish_row(settings, WINDOW, PUBLISH_ROW)),
            (SEQUENTIAL_ROW, lambda: _publish_row(settings, 1, SEQUENTIAL_ROW)),
            (CONSUME_ROW, lambda: _consume_row(settings)),
        ),
        client="aio_pika",
        missing="aio-pika is not installed (the rabbit extra)",
        service="RabbitMQ",
        port=5672,
    )


async def delete_queues(queues: list[str]) -> None:
    """Delete each queue and its dead-letter queue."""
    import aio_pika

    connection = await aio_pika.connect(URL)
    async with connection:
        channel = await connection.channel()
        for queue in queues:
            for name in (queue, queue + ".dead-letter"):
                await channel.queue_delete(name)


# --- publishing -----------------------------------------------------------------------------


async def _publish_row(settings: Settings, window: int, name: str) -> Row:
    import aio_pika

    from cqrs.message_brokers.amqp import AMQPMessageBroker

    count, runs = sizes(settings)
    if window == 1:
        count //= 4
    topic = f"cqrs-bench-{uuid.uuid4().hex[:8]}"
    messages = EventTypes().messages(count, topic)
    broker = AMQPMessageBroker.from_url(URL, "cqrs-bench")
    connection = await aio_pika.connect(URL)
    try:
        async with broker:
            await broker.send_message(messages[0])  # declares the queue for both
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            exchange = await channel.get_exchange("cqrs-bench", ensure=False)

            async def ours() -> None:
                await send_windows(broker, messages, window)

            async def raw() -> None:
                for start in range(0, count, window):
                    chunk = messages[start : start + window]
                    await asyncio.gather(
                        *(
                            exchange.publish(
                                aio_pika.Message(
                                    m.payload_bytes,
                                    message_id=str(m.message_id),
                                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                                ),
                                routing_key=topic,
                                mandatory=True,
                            )
                            for m in chunk
                        )
                    )

            ours_samples, raw_samples = await alternate(runs, raw, ours)
    finally:
        await connection.close()
        await delete_queues([topic])
    target = THROUGHPUT_TARGET if window > 1 else None
    return comparison_row(name, ours_samples, raw_samples, count, target, f"{window} in flight")


# --- consuming ------------------------------------------------------------------------------


async def _consume_row(settings: Settings) -> Row:
    import aio_pika
    import pydantic_core

    from cqrs.message_brokers.amqp import AMQPMessageBroker

    types = EventTypes()
    count, runs = sizes(settings)
    ours_samples: list[tuple[int, int]] = []
    raw_samples: list[tuple[int, int]] = []
    topics: list[str] = []
    broker = AMQPMessageBroker.from_url(URL, "cqrs-bench")
    connection = await aio_pika.connect(URL)
    try:
        async with broker:

            async def fill() -> str:
                topic = f"cqrs-bench-{uuid.uuid4().hex[:8]}"
                topics.append(topic)
                await types.fill(broker, topic, count, WINDOW)
                return topic

            for _ in range(runs):
                topic = await fill()
                handler = types.counter()
                done = asyncio.Event()

                async def raw_run(
                    topic: str = topic, handler: Any = handler, done: asyncio.Event = done
                ) -> None:
                    channel = await connection.channel()
                    await channel.set_qos(prefetch_count=PREFETCH)
                    queue = await channel.get_queue(topic, ensure=False)
                    handled = 0

                    async def on_message(message: Any) -> None:
                        nonlocal handled
                        event = types.event.from_dict(**pydantic_core.from_json(message.body))
                        await handler.handle(event)
                        await message.ack()
                        handled += 1
                        if handled == count:
                            done.set()

                    tag = await queue.consume(on_message)
                    await done.wait()
                    await queue.cancel(tag)
                    await channel.close()

                raw_samples.append(await timed(raw_run))
                assert handler.handled == count

                topic = await fill()
                subscription = await broker.subscribe(topic, prefetch=PREFETCH)
                ours_samples.append(await time_event_consumer(subscription, types, count))
    finally:
        await connection.close()
        await delete_queues(topics)
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

    print(format_table(asyncio.run(broker_rows(FULL))))
