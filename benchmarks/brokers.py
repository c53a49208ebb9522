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
import gc
import socket
import statistics
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from benchmarks.report import Row, Target, failed_row
from benchmarks.settings import Settings
from benchmarks.timing import cpu_ns, now_ns

URL = "amqp://guest:guest@127.0.0.1:5672/"
PUBLISH_ROW = "RabbitMQ publish, confirms, pipelined"
SEQUENTIAL_ROW = "RabbitMQ publish, confirms, sequential"
CONSUME_ROW = "RabbitMQ consume into EventMediator"
WINDOW = 100
PREFETCH = 100
THROUGHPUT_TARGET = Target("ratio", 1.25)


def _sizes(settings: Settings) -> tuple[int, int]:
    """(messages per run, runs per variant): smaller for ``--quick``."""
    return (2_000, 3) if settings.send_ops >= 10_000 else (400, 1)


def _reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=0.5):
            return True
    except OSError:
        return False


async def broker_rows(settings: Settings) -> list[Row]:
    """The RabbitMQ rows; ``ERROR`` rows when RabbitMQ or aio-pika is missing."""
    names = (PUBLISH_ROW, SEQUENTIAL_ROW, CONSUME_ROW)
    try:
        import aio_pika  # noqa: F401
    except ImportError:
        return [Row(n, "-", error="aio-pika is not installed (the rabbit extra)") for n in names]
    if not _reachable():
        return [Row(n, "-", error="no RabbitMQ server on 127.0.0.1:5672") for n in names]
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


# --- shared -------------------------------------------------------------------------------


async def _timed(run: Callable[[], Awaitable[None]]) -> tuple[int, int]:
    """(wall ns, CPU ns) of one run."""
    gc.collect()
    wall, cpu = now_ns(), cpu_ns()
    await run()
    return now_ns() - wall, cpu_ns() - cpu


async def _delete(queues: list[str]) -> None:
    import aio_pika

    connection = await aio_pika.connect(URL)
    async with connection:
        channel = await connection.channel()
        for queue in queues:
            for name in (queue, queue + ".dead-letter"):
                await channel.queue_delete(name)


class _Types:
    """The event type, its handler and a mediator, built on first use (cqrs imported late)."""

    def __init__(self) -> None:
        import pydantic

        import cqrs
        from cqrs.events import bootstrap
        from cqrs.testing import StaticContainer

        class OrderPayload(pydantic.BaseModel):
            order_id: int

        self.payload = OrderPayload
        self.event = cqrs.NotificationEvent[OrderPayload]
        event_type = self.event

        class Counter(cqrs.EventHandler[event_type]):  # type: ignore[valid-type]
            def __init__(self, expected: int = 0) -> None:
                self.handled = 0
                self.expected = expected
                self.done = asyncio.Event()

            async def handle(self, event: Any) -> None:
                self.handled += 1
                if self.handled == self.expected:
                    self.done.set()

        self.counter_type = Counter
        self._bootstrap = bootstrap.bootstrap
        self._container = StaticContainer

    def counter(self, expected: int = 0) -> Any:
        return self.counter_type(expected)

    def mediator(self, counter: Any) -> Any:
        return self._bootstrap(
            di_container=self._container({self.counter_type: counter}),
            events_mapper=lambda mapper: mapper.bind(self.event, self.counter_type),
        )

    def messages(self, count: int, topic: str) -> list[Any]:
        from cqrs._internal.brokers.message import message_for

        return [
            message_for(
                self.event(event_name="OrderPlaced", topic=topic, payload=self.payload(order_id=n))
            )
            for n in range(count)
        ]


def _row(
    name: str,
    ours: list[tuple[int, int]],
    raw: list[tuple[int, int]],
    count: int,
    target: Target | None,
    note: str,
) -> Row:
    def per_message(samples: list[tuple[int, int]], index: int) -> float:
        return statistics.median(s[index] for s in samples) / count / 1000

    ours_wall, raw_wall = per_message(ours, 0), per_message(raw, 0)
    ours_cpu, raw_cpu = per_message(ours, 1), per_message(raw, 1)
    return Row(
        name=name,
        unit="µs/msg",
        ours=ours_wall,
        baseline=raw_wall,
        target=target,
        note=(
            f"{note}; {1e6 / ours_wall:,.0f} vs {1e6 / raw_wall:,.0f} msg/s; CPU "
            f"{ours_cpu:.1f} vs {raw_cpu:.1f} µs/msg (+{ours_cpu - raw_cpu:.1f} µs ours)"
        ),
        details={
            "messages": count,
            "ours_msgs_per_s": 1e6 / ours_wall,
            "raw_msgs_per_s": 1e6 / raw_wall,
            "ours_cpu_us": ours_cpu,
            "raw_cpu_us": raw_cpu,
            "ours_samples_ns": ours,
            "raw_samples_ns": raw,
        },
    )


# --- publishing -----------------------------------------------------------------------------


async def _publish_row(settings: Settings, window: int, name: str) -> Row:
    import aio_pika

    from cqrs.message_brokers.amqp import AMQPMessageBroker

    count, runs = _sizes(settings)
    if window == 1:
        count //= 4
    topic = f"cqrs-bench-{uuid.uuid4().hex[:8]}"
    messages = _Types().messages(count, topic)
    broker = AMQPMessageBroker.from_url(URL, "cqrs-bench")
    connection = await aio_pika.connect(URL)
    try:
        async with broker:
            await broker.send_message(messages[0])  # declares the queue for both
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            exchange = await channel.get_exchange("cqrs-bench", ensure=False)

            async def ours() -> None:
                for start in range(0, count, window):
                    chunk = messages[start : start + window]
                    await asyncio.gather(*(broker.send_message(m) for m in chunk))

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

            ours_samples: list[tuple[int, int]] = []
            raw_samples: list[tuple[int, int]] = []
            for _ in range(runs):
                raw_samples.append(await _timed(raw))
                ours_samples.append(await _timed(ours))
    finally:
        await connection.close()
        await _delete([topic])
    target = THROUGHPUT_TARGET if window > 1 else None
    return _row(name, ours_samples, raw_samples, count, target, f"{window} in flight")


# --- consuming ------------------------------------------------------------------------------


async def _consume_row(settings: Settings) -> Row:
    import aio_pika
    import pydantic_core

    from cqrs.consumers import EventConsumer
    from cqrs.message_brokers.amqp import AMQPMessageBroker

    types = _Types()
    count, runs = _sizes(settings)
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
                messages = types.messages(count, topic)
                for start in range(0, count, WINDOW):
                    chunk = messages[start : start + WINDOW]
                    await asyncio.gather(*(broker.send_message(m) for m in chunk))
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
        await connection.close()
        await _delete(topics)
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

    print(format_table(asyncio.run(broker_rows(FULL))))
