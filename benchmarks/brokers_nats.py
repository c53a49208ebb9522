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

URL = "nats://127.0.0.1:4222"
PUBLISH_ROW = "NATS publish, PubAck, pipelined"
SEQUENTIAL_ROW = "NATS publish, PubAck, sequential"
CONSUME_ROW = "NATS consume into EventMediator"
WINDOW = 100
PREFETCH = 100


async def broker_rows_nats(settings: Settings) -> list[Row]:
    """The NATS rows; ``ERROR`` rows when NATS or nats-py is missing."""
    return await service_rows(
        (
            (PUBLISH_ROW, lambda: _publish_row(settings, WINDOW, PUBLISH_ROW)),
            (SEQUENTIAL_ROW, lambda: _publish_row(settings, 1, SEQUENTIAL_ROW)),
            (CONSUME_ROW, lambda: _consume_row(settings)),
        ),
        client="nats",
        missing="nats-py is not installed (the nats extra)",
        service="NATS",
        port=4222,
    )


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

    count, runs = sizes(settings)
    if window == 1:
        count //= 4
    options = _stream()
    topic = "orders"
    subject = options.subject(topic)
    messages = EventTypes().messages(count, topic)
    broker = NatsJetStreamBroker(URL, stream=options)
    client = await nats.connect(URL)
    js = client.jetstream()
    try:
        async with broker:
            await broker.send_message(messages[0])  # creates the stream for both

            async def ours() -> None:
                await send_windows(broker, messages, window)

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

            def fresh_ids() -> None:  # as fresh events would have
                for m in messages:
                    m.message_id = uuid.uuid4()

            ours_samples, raw_samples = await alternate(runs, raw, ours, between=fresh_ids)
    finally:
        await _delete(client, options.name)
        await client.close()
    target = THROUGHPUT_TARGET if window > 1 else None
    return comparison_row(name, ours_samples, raw_samples, count, target, f"{window} in flight")


# --- consuming ------------------------------------------------------------------------------


async def _consume_row(settings: Settings) -> Row:
    import nats
    import pydantic_core

    from cqrs.message_brokers.nats import NatsJetStreamBroker

    types = EventTypes()
    count, runs = sizes(settings)
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
                await types.fill(broker, topic, count, WINDOW)
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

                raw_samples.append(await timed(raw_run))
                assert handler.handled == count

                topic = await fill()
                subscription = await broker.subscribe(topic, prefetch=PREFETCH)
                ours_samples.append(await time_event_consumer(subscription, types, count))
    finally:
        await _delete(client, options.name)
        await client.close()
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

    print(format_table(asyncio.run(broker_rows_nats(FULL))))
