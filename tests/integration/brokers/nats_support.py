"""Shared by the NATS tests: the skip when NATS (or nats-py) is absent, a stream of its own
for every test (deleted afterwards), and a private ``nats-server`` on a free port for the
tests that stop and start the server, so the shared one on 4222 is never disturbed."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import PATIENCE, free_port, listening, wait_until

NATS_HOST, NATS_PORT = "127.0.0.1", 4222
NATS_URL = f"nats://{NATS_HOST}:{NATS_PORT}"
NEEDS_NATS = f"no NATS server with JetStream reachable on {NATS_HOST}:{NATS_PORT}"
NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"


def reachable(port: int = NATS_PORT) -> bool:
    return listening(port, NATS_HOST)


def require_nats() -> None:
    """Skip the test when nats-py is missing or nothing listens on 127.0.0.1:4222."""
    pytest.importorskip("nats", reason="the nats extra (nats-py) is not installed")
    if not reachable():
        pytest.skip(NEEDS_NATS)


def unique(prefix: str = "t") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def stream_options(**overrides: Any) -> Any:
    """Options for a stream of this test's own (``CQRS_TEST_<random>``, prefix
    ``cqrs-test-<random>``)."""
    from cqrs.message_brokers.nats import NatsStreamOptions

    name = unique()
    settings: dict[str, Any] = {"name": f"CQRS_TEST_{name}", "subject_prefix": f"cqrs-test-{name}"}
    settings.update(overrides)
    return NatsStreamOptions(**settings)


async def delete_stream(name: str, url: str = NATS_URL) -> None:
    """Delete stream ``name`` (a missing one is fine)."""
    import nats
    from nats.js.errors import NotFoundError

    client = await nats.connect(url, allow_reconnect=False)
    try:
        with contextlib.suppress(NotFoundError):
            await client.jetstream().delete_stream(name)
    finally:
        await client.close()


class StreamJanitor:
    """Collects stream names; the fixture deletes them after the test."""

    def __init__(self) -> None:
        self.names: set[str] = set()

    def options(self, **overrides: Any) -> Any:
        options = stream_options(**overrides)
        self.names.add(options.name)
        return options


@contextlib.asynccontextmanager
async def stream_janitor() -> AsyncIterator[StreamJanitor]:
    janitor = StreamJanitor()
    try:
        yield janitor
    finally:
        for name in sorted(janitor.names):
            await delete_stream(name)


class PrivateNatsServer:
    """A ``nats-server -js`` of this test on a free port, storing in ``store``; stopped
    (SIGTERM: it flushes its store) and started again on the same port and store."""

    def __init__(self, store: Path) -> None:
        self.store = store
        store.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log = store / "nats.log"
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"nats://{NATS_HOST}:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                NATS_SERVER,
                "-a",
                NATS_HOST,
                "-p",
                str(self.port),
                "-js",
                "-sd",
                str(self.store),
                "-l",
                str(self.log),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self.answers, f"nats-server on port {self.port} to answer", details=self.tail)

    def answers(self) -> bool:
        process = self.process
        if process is None or process.poll() is not None:
            raise AssertionError(f"nats-server exited: {self.tail()}")
        return reachable(self.port) and "Server is ready" in self.log_text()

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self) -> str:
        return "\n".join(self.log_text().splitlines()[-20:])

    def stop(self, *, kill: bool = False) -> None:
        """Stop the server: SIGTERM (it shuts down cleanly) or, with ``kill``, SIGKILL (a
        crash: what it had not written to its store is lost)."""
        process = self.process
        if process is None:
            return
        self.process = None
        if process.poll() is None:
            if kill:
                process.kill()
            else:
                process.terminate()
            try:
                process.wait(timeout=PATIENCE)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=PATIENCE)

    async def restart(self, *, kill: bool = False) -> None:
        """Stop the server (see :meth:`stop`), then start it again in any case, and wait
        until it answers."""
        try:
            await asyncio.to_thread(lambda: self.stop(kill=kill))
        finally:
            self.log.unlink(missing_ok=True)
            await asyncio.to_thread(self.start)
            self.restarts += 1


@contextlib.contextmanager
def private_nats_server(store: Path) -> Iterator[PrivateNatsServer]:
    """A started :class:`PrivateNatsServer`, stopped at the end."""
    if not Path(NATS_SERVER).exists():
        pytest.skip(f"nats-server is not installed (looked for {NATS_SERVER})")
    server = PrivateNatsServer(store)
    server.start()
    try:
        yield server
    finally:
        server.stop()
