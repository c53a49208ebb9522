"""Small building blocks for tests: messages, handlers that record what they saw."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar, cast

import di

import cqrs
from cqrs.requests import bootstrap


class Ping(cqrs.Request):
    n: int = 0


class Pong(cqrs.Response):
    n: int


class Tick(cqrs.DomainEvent, frozen=True):
    n: int


class Batch(cqrs.Request):
    count: int
    events_per_item: int = 0
    fail_at: int | None = None
    events_after_last: int = 0


class HoldsEvents:
    """Test mixin: the seeds' handler shape, a private ``_events`` list behind ``events`` (a
    copy) and ``clear_events``; put it before the cqrs base class."""

    def __init__(self) -> None:
        self._events: list[cqrs.Event] = []

    @property
    def events(self) -> list[cqrs.Event]:
        return self._events.copy()

    def clear_events(self) -> None:
        self._events.clear()


Bindings = dict[type[Any], Any]

T = TypeVar("T")


def _mappers(commands: Bindings, events: dict[type[Any], list[type[Any]]] | None) -> dict[str, Any]:
    def commands_mapper(mapper: cqrs.RequestMap) -> None:
        for request_type, handler in commands.items():
            mapper.bind(request_type, handler)

    def events_mapper(mapper: cqrs.EventMap) -> None:
        for event_type, handlers in (events or {}).items():
            for handler in handlers:
                mapper.bind(event_type, handler)

    return {"commands_mapper": commands_mapper, "domain_events_mapper": events_mapper}


def make_streaming(
    commands: Bindings, events: dict[type[Any], list[type[Any]]] | None = None, **kwargs: Any
) -> cqrs.StreamingRequestMediator:
    """A streaming mediator over a fresh di.Container."""
    return bootstrap.bootstrap_streaming(
        di_container=di.Container(), **_mappers(commands, events), **kwargs
    )


def make_mediator(
    commands: Bindings, events: dict[type[Any], list[type[Any]]] | None = None, **kwargs: Any
) -> cqrs.RequestMediator:
    """A request mediator over a fresh di.Container."""
    return bootstrap.bootstrap(di_container=di.Container(), **_mappers(commands, events), **kwargs)


async def collect(stream: AsyncIterator[Any]) -> list[Any]:
    """Every item of ``stream``."""
    return [item async for item in stream]


async def settle() -> None:
    """Let callbacks and freshly woken tasks run."""
    for _ in range(5):
        await asyncio.sleep(0)


# --- waiting for something to happen --------------------------------------------------------
#
# Every test that waits for a server, a process, a frame or a task waits here, never with a
# bare sleep: the helper polls until the thing has happened, so a slow (loaded) machine makes
# the test slower, not red. Order is asserted on what was recorded, never on clock readings.

PATIENCE = 90.0
"""Seconds a test waits for something that must happen before it fails (generous: a loaded
2-core machine starts a uvicorn process in tens of seconds, not in one)."""

POLL_EVERY = 0.05
"""Seconds between two checks of a condition."""

LONG_TEST_TIMEOUT = 300
"""The pytest-timeout of a test that waits on processes, servers or a browser, overriding
the 60 s default of pyproject.toml so that a wait of up to ``PATIENCE`` fails with the
helper's message rather than with a bare timeout."""


class _Wait:
    """One wait: its deadline and the message that ends it (shared by both faces below)."""

    def __init__(self, what: str, within: float) -> None:
        self.what = what
        self.within = within
        self.deadline = time.monotonic() + within
        self.last: object = None

    def over(self) -> bool:
        return time.monotonic() >= self.deadline

    def failure(self, details: Callable[[], str] | None) -> AssertionError:
        message = f"gave up after {self.within:.0f} s waiting for {self.what}"
        if self.last is not None:
            message += f"; last check gave {self.last!r}"
        if details is not None:
            message += f"\n{details()}"
        return AssertionError(message)


def wait_until(
    check: Callable[[], T],
    what: str,
    *,
    within: float = PATIENCE,
    every: float = POLL_EVERY,
    retry_on: tuple[type[BaseException], ...] = (),
    details: Callable[[], str] | None = None,
) -> T:
    """Call ``check()`` every ``every`` seconds until it returns a truthy value; return it.

    For synchronous tests (a subprocess, a server over HTTP). An exception of a ``retry_on``
    type counts as "not yet"; any other exception (an ``AssertionError`` saying a process
    died, say) ends the wait at once. After ``within`` seconds raises ``AssertionError``
    naming ``what`` (write it as "uvicorn at http://... to answer GET /health"), the last
    falsy result or exception, and ``details()`` (a server log, say).
    """
    wait = _Wait(what, within)
    while True:
        try:
            result = check()
        except retry_on as exc:
            wait.last = exc
        else:
            if result:
                return result
            wait.last = result
        if wait.over():
            raise wait.failure(details)
        time.sleep(every)


async def wait_until_async(
    check: Callable[[], T | Awaitable[T]],
    what: str,
    *,
    within: float = PATIENCE,
    every: float = POLL_EVERY,
    retry_on: tuple[type[BaseException], ...] = (),
    details: Callable[[], str] | None = None,
) -> T:
    """:func:`wait_until` for async tests: ``check`` may be sync or async, and the event loop
    runs between checks (``asyncio.sleep(every)``), so the awaited work can progress."""
    wait = _Wait(what, within)
    while True:
        try:
            outcome = check()
            result = cast(T, await outcome if inspect.isawaitable(outcome) else outcome)
        except retry_on as exc:
            wait.last = exc
        else:
            if result:
                return result
            wait.last = result
        if wait.over():
            raise wait.failure(details)
        await asyncio.sleep(every)


# --- private server processes (redis-server and others on a free port) ----------------------


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port of ``host`` that nothing listens on now."""
    import socket

    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def listening(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on ``host``:``port`` within 0.5 s."""
    import socket

    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class RedisServer:
    """A ``redis-server`` of one test alone on a free port of 127.0.0.1, logging and storing
    in ``workdir``; :meth:`kill` and :meth:`start` again reuse the port.

    ``persistent=False``: ``--save "" --appendonly no``, as the shared one: a restart loses
    every key. ``persistent=True``: ``--appendonly yes --appendfsync always``: every write
    Redis acknowledged is on disk before the reply, so a SIGKILL loses nothing it confirmed.
    """

    def __init__(self, binary: str, workdir: Any, *, persistent: bool = False) -> None:
        self.binary = binary
        self.workdir = workdir
        self.persistent = persistent
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: Any = None
        self.starts = 0

    def start(self) -> None:
        """Start the server and wait until it answers PING (its data loaded); raises
        ``AssertionError`` with its log if it exits or does not answer within PATIENCE."""
        import subprocess

        import redis
        import redis.exceptions

        assert self.process is None
        persistence = (
            ["--appendonly", "yes", "--appendfsync", "always", "--save", ""]
            if self.persistent
            else ["--save", "", "--appendonly", "no"]
        )
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
             *persistence, "--daemonize", "no",
             "--dir", str(self.workdir), "--logfile", str(self.workdir / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.starts += 1
        client = redis.Redis.from_url(self.url, socket_timeout=5)
        try:
            wait_until(
                lambda: self._answers(client),
                f"redis-server on port {self.port} to answer PING",
                retry_on=(redis.exceptions.ConnectionError, redis.exceptions.TimeoutError),
                details=self.log,
            )
        finally:
            client.close()

    def _answers(self, client: Any) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"redis-server exited:\n{self.log()}")
        return bool(client.ping())

    def kill(self) -> None:
        """SIGKILL the server (no shutdown, no save) and reap it; nothing if not running."""
        import signal

        if self.process is None:
            return
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(PATIENCE)
        self.process = None

    def log(self) -> str:
        """The server's log so far."""
        path = self.workdir / "redis.log"
        return path.read_text(errors="replace") if path.exists() else "(no log)"


def private_redis_server(workdir: Any, *, persistent: bool = False) -> Iterator[RedisServer]:
    """For a fixture (``yield from``): a started :class:`RedisServer` in ``workdir``, killed
    at the end whatever happened; skips the test when ``redis-server`` is not installed."""
    import shutil

    import pytest

    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("the redis-server binary is not installed (apt-get install redis-server)")
    server = RedisServer(binary, workdir, persistent=persistent)
    server.start()
    try:
        yield server
    finally:
        server.kill()
