"""The harness the broker rows share (RabbitMQ, Redis, NATS, Kafka, FastStream).

Each broker module keeps what is its own (the raw client's publish and consume loops, its
row names and notes); this module holds what they all do the same way: the sizes of a run,
the reachability check and the ``ERROR`` rows of an absent service, the timed run (wall and
CPU ns), the event type with its counting handler and mediator, windowed publishing, timing
``EventConsumer`` until every message is acked, and the row comparing ours with the raw
client (µs of wall time per message, CPU µs in the note and the details).
"""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import socket
import statistics
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from benchmarks.report import Row, Target, failed_row
from benchmarks.settings import Settings
from benchmarks.timing import cpu_ns, now_ns

Sample = tuple[int, int]
"""(wall ns, CPU ns) of one run."""
Samples = list[Sample]
Case = tuple[str, Callable[[], Awaitable[Row]]]
THROUGHPUT_TARGET = Target("ratio", 1.25)
CONSUME_NOTE = "decode + 1 handler + ack"


def sizes(
    settings: Settings, full: tuple[int, int] = (2_000, 3), quick: tuple[int, int] = (400, 3)
) -> tuple[int, int]:
    """(messages per run, runs per variant): ``quick`` for ``--quick``, else ``full``."""
    return full if settings.send_ops >= 10_000 else quick


def reachable(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:``port`` within 0.5 s."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def error_rows(names: Iterable[str], error: str) -> list[Row]:
    """One ``ERROR`` row per name, all saying ``error`` (a missing client or service)."""
    return [Row(name, "-", error=error) for name in names]


async def run_cases(cases: Sequence[Case]) -> list[Row]:
    """The row of each case in turn; a case that raises gives an ``ERROR`` row, the rest run."""
    rows: list[Row] = []
    for name, case in cases:
        try:
            rows.append(await case())
        except Exception as exc:  # reported as an ERROR row
            rows.append(failed_row(name, exc))
    return rows


async def service_rows(
    cases: Sequence[Case], *, client: str, missing: str, service: str, port: int
) -> list[Row]:
    """The rows of ``cases`` (see :func:`run_cases`); one ``ERROR`` row per case instead,
    saying ``missing`` when the ``client`` package is not installed, or that there is no
    ``service`` server when nothing listens on 127.0.0.1:``port``."""
    names = [name for name, _ in cases]
    if importlib.util.find_spec(client.partition(".")[0]) is None:
        return error_rows(names, missing)
    if not reachable(port):
        return error_rows(names, f"no {service} server on 127.0.0.1:{port}")
    return await run_cases(cases)


async def timed(run: Callable[[], Awaitable[None]]) -> Sample:
    """(wall ns, CPU ns) of one run, after a garbage collection."""
    gc.collect()
    wall, cpu = now_ns(), cpu_ns()
    await run()
    return now_ns() - wall, cpu_ns() - cpu


async def alternate(
    runs: int,
    raw: Callable[[], Awaitable[None]],
    ours: Callable[[], Awaitable[None]],
    between: Callable[[], None] | None = None,
) -> tuple[Samples, Samples]:
    """(ours, raw) samples of ``runs`` rounds, each timing ``raw`` then ``ours``; ``between``,
    if given, runs untimed before each ``ours``."""
    ours_samples: Samples = []
    raw_samples: Samples = []
    for _ in range(runs):
        raw_samples.append(await timed(raw))
        if between is not None:
            between()
        ours_samples.append(await timed(ours))
    return ours_samples, raw_samples


async def send_windows(broker: Any, messages: Sequence[Any], window: int) -> None:
    """``broker.send_message`` of every message, ``window`` in flight at once (a gather each)."""
    for start in range(0, len(messages), window):
        chunk = messages[start : start + window]
        await asyncio.gather(*(broker.send_message(m) for m in chunk))


class EventTypes:
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
        """A handler counting the events; its ``done`` is set at the ``expected``-th."""
        return self.counter_type(expected)

    def mediator(self, counter: Any) -> Any:
        """An ``EventMediator`` sending the event to ``counter``."""
        return self._bootstrap(
            di_container=self._container({self.counter_type: counter}),
            events_mapper=lambda mapper: mapper.bind(self.event, self.counter_type),
        )

    def messages(self, count: int, topic: str) -> list[Any]:
        """``count`` emitter ``Message``s of distinct events on ``topic``."""
        from cqrs._internal.brokers.message import message_for

        return [
            message_for(
                self.event(event_name="OrderPlaced", topic=topic, payload=self.payload(order_id=n))
            )
            for n in range(count)
        ]

    async def fill(self, broker: Any, topic: str, count: int, window: int) -> None:
        """Publish ``count`` messages on ``topic`` through ``broker``, ``window`` in flight."""
        await send_windows(broker, self.messages(count, topic), window)


async def time_event_consumer(subscription: Any, types: EventTypes, count: int) -> Sample:
    """The sample of ``EventConsumer`` on ``subscription`` from its start until the ``count``
    stored messages are handled and acked (for a subscription with ``commit()``, Redis and
    Kafka, until the acks reached the broker); raises ``AssertionError`` if any is not.

    Stopping the consumer (closing the subscription: leaving the consumer group, returning
    what it holds) is not timed, as the raw loops' ``stop`` is not."""
    from cqrs.consumers import EventConsumer

    counter = types.counter(count)
    consumer = EventConsumer(subscription, types.mediator(counter), types.event)
    running: asyncio.Task[None] | None = None

    async def run() -> None:
        nonlocal running
        running = asyncio.create_task(consumer.run())
        await counter.done.wait()
        stats = consumer.stats
        # The last ack follows its handler within a loop turn or two; the stats have no event.
        while stats.acked + stats.settle_failures < count:  # noqa: ASYNC110
            await asyncio.sleep(0)
        commit = getattr(subscription, "commit", None)
        if commit is not None:
            await commit()

    try:
        sample = await timed(run)
    finally:
        await consumer.stop()
        if running is not None:
            await running
    assert counter.handled == count
    assert consumer.stats.acked == count
    return sample


def comparison_row(
    name: str,
    ours: Samples,
    raw: Samples,
    count: int,
    target: Target | None,
    note: str,
) -> Row:
    """Ours beside raw in µs of wall time per message (medians of the samples of ``count``
    messages each), throughput and CPU µs per message in the note and the details."""

    def per_message(samples: Samples, index: int) -> float:
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
