"""Broker rows: NATS JetStream publishing and consuming, ours beside raw nats-py in the same run.

* **publish, pipelined**: ``W`` publishes in flight at once, each waiting for its
  ``PubAck``; ours is ``NatsJetStreamBroker.send_message(message)`` of the emitter's
  ``Message`` (``asyncio.gather`` of ``W`` calls), raw is nats-py's own pipelined publish:
  ``js.publish_async(subject, body, headers={"Nats-Msg-Id": id})`` for the ``W`` messages,
  then one ``gather`` of their acknowledgement futures (no task per message: the floor).
  Same file-backed work-queue stream, same bodies and ids. µs of wall time per message
  (throughput = 1e6 / value), target ratio ≤ 1.25 (ours ≥ 0.8x the raw throughput); the
  CPU µs per message of both are in the details, and their difference is our cost per
  message on top of the client.
* **publish, sequential**: one publish in flight, each awaited (``js.publish`` for raw;
  information: the floor of a publisher that awaits each acknowledgement in turn).
* **consume**: ``N`` stored messages consumed at prefetch ``P``; ours is ``EventConsumer``
  (decode, ``EventMediator.send``, ack) on a ``NatsJetStreamBroker.subscribe``, raw is a
  nats-py pull subscription fetching batches of ``P`` and doing the same work per message
  (``Model.from_dict(**json)``, ``await handler.handle(event)``, ``msg.ack()``). Wall µs
  per message, target ratio ≤ 1.25.

Without a NATS server on 127.0.0.1:4222 (or without nats-py) every row is an ``ERROR`` row
saying so; the run goes on. The stream is created under a random name and deleted
afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
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

URL = "nats://127.0.0.1:4222"
PUBLISH_ROW = "NATS publish, PubAck, pipelined"
SEQUENTIAL_ROW = "NATS publish, PubAck, sequential"
CONSUME_ROW = "NATS consume into EventMediator"
WINDOW = 100
PREFETCH = 100


def _reachable() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 4222), timeout=0.5):
            return True
    except OSError:
        return False


async def broker_rows_nats(settings: Settings) -> list[Row]:
    """The NATS rows; ``ERROR`` rows when NATS or nats-py is missing."""
    names = (PUBLISH_ROW, SEQUENTIAL_ROW, CONSUME_ROW)
    try:
        import nats  # noqa: F401
    except ImportError:
        return [Row(n, "-", error="nats-py is not installed (the nats extra)") for n in names]
    if not _reachable():
        return [Row(n, "-", error="no NATS server on 127.0.0.1:4222") for n in names]
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


def _stream() -> Any:
    from cqrs.message_brokers.nats import NatsStreamOptions

    tag = uuid.uuid4().hex[:8]
    return NatsStreamOptions(name=f"CQRS_BENCH_{tag}", subject_prefix=f"cqrs-bench-{tag}")


async def _delete(client: Any, name: str) -> None:
    from nats.js.errors import NotFoundError

    with contextlib.suppress(NotFoundError):
        await client.jetstream().delete_stream(name)


# --- publishing -----------------------------------------------------------------------------


async def _publish_row(settings: Settings, window: int, name: str) -> Row:
    import nats

    from cqrs.message_brokers.nats import NatsJetStreamBroker

    count, runs = _sizes(settings)
    if window == 1:
        count //= 4
    options = _stream()
    topic = "orders"
    subject = options.subject(topic)
    messages = _Types().messages(count, topic)
    broker = NatsJetStreamBroker(URL, stream=options)
    client = await nats.connect(URL)
    js = client.jetstream()
    try:
        async with broker:
            await broker.send_message(messages[0])  # creates the stream for both

            async def ours() -> None:
                for start in range(0, count, window):
                    chunk = messages[start : start + window]
                    await asyncio.gather(*(broker.send_message(m) for m in chunk))

            async def raw() -> None:
                # Fresh ids each run: JetStream would drop a repeated id as a duplicate.
                run = uuid.uuid4().hex[:8]
                if window == 1:
                    for m in messages:
                        await js.publish(
                            subject,
                            m.payload_bytes,
                            headers={"Nats-Msg-Id": f"{run}{m.message_id}"},
                        )
                    return
                for start in range(0, count, window):
                    futures = [
                        await js.publish_async(
                            subject,
                            m.payload_bytes,
                            headers={"Nats-Msg-Id": f"{run}{m.message_id}"},
                        )
                        for m in messages[start : start + window]
                    ]
                    await asyncio.gather(*futures)

            ours_samples: list[tuple[int, int]] = []
            raw_samples: list[tuple[int, int]] = []
            for _ in range(runs):
                raw_samples.append(await _timed(raw))
                for m in messages:  # fresh event ids, as fresh events would have
                    m.message_id = uuid.uuid4()
                ours_samples.append(await _timed(ours))
    finally:
        await _delete(client, options.name)
        await client.close()
    target = THROUGHPUT_TARGET if window > 1 else None
    return _row(name, ours_samples, raw_samples, count, target, f"{window} in flight")


# --- consuming ------------------------------------------------------------------------------


async def _consume_row(settings: Settings) -> Row:
    import nats
    import pydantic_core

    from cqrs.consumers import EventConsumer
    from cqrs.message_brokers.nats import NatsJetStreamBroker

    types = _Types()
    count, runs = _sizes(settings)
    ours_samples: list[tuple[int, int]] = []
    raw_samples: list[tuple[int, int]] = []
    options = _stream()
    broker = NatsJetStreamBroker(URL, stream=options)
    client = await nats.connect(URL)
    js = client.jetstream()
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
                handler = types.counter()

                async def raw_run(topic: str = topic, handler: Any = handler) -> None:
                    subscription = await js.pull_subscribe(
                        options.subject(topic), durable=f"raw-{topic}", stream=options.name
                    )
                    handled = 0
                    while handled < count:
                        for message in await subscription.fetch(PREFETCH, timeout=5):
                            event = types.event.from_dict(**pydantic_core.from_json(message.data))
                            await handler.handle(event)
                            await message.ack()
                            handled += 1
                    await subscription.unsubscribe()

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
        await _delete(client, options.name)
        await client.close()
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

    print(format_table(asyncio.run(broker_rows_nats(FULL))))
