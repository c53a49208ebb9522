"""Graceful shutdown: ``SSEShutdown`` ends open SSE streams and running jobs with a terminal
``shutdown`` frame, in process and in a real uvicorn process stopped by a signal.

uvicorn waits for open responses before it runs the lifespan shutdown; an SSE stream of a
long job never ends by itself, so without the hook a stopped server hangs until its clients
leave. The hook chains onto the server's SIGTERM/SIGINT handlers.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import fastapi
import httpx
import pytest

from cqrs.integrations.fastapi import SSEShutdown, StreamJobs, jobs_router, sse_response
from tests.integration.sse_support import (
    ENDED,
    Call,
    Linger,
    make_mediator,
    parse_frames,
)
from tests.support import LONG_TEST_TIMEOUT, PATIENCE, wait_until, wait_until_async

ROOT = Path(__file__).resolve().parents[2]
SHUTDOWN_FRAME = {
    "event": "error",
    "data": {"type": "error", "reason": "shutdown", "message": "The server is shutting down."},
}


@pytest.fixture(autouse=True)
def _clear() -> None:
    ENDED.clear()


def make_app() -> tuple[fastapi.FastAPI, StreamJobs]:
    mediator = make_mediator()
    jobs = StreamJobs(mediator)
    app = fastapi.FastAPI()

    @app.post("/linger")
    async def linger(command: Linger) -> Any:
        return sse_response(mediator.stream(command))

    app.include_router(jobs_router(jobs, {"linger": Linger}))
    return app, jobs


def terminal(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [f for f in frames if f.get("event") in ("complete", "error")]


async def finished(*calls: Call) -> None:
    await asyncio.wait_for(asyncio.gather(*(call.task for call in calls)), PATIENCE)


# -- in process -------------------------------------------------------------------------------


async def test_a_shutdown_ends_open_streams_and_jobs_with_a_shutdown_frame(
    cqrs_logs: pytest.LogCaptureFixture,
) -> None:
    tasks_before = len(asyncio.all_tasks())
    app, jobs = make_app()
    async with SSEShutdown(jobs, signals=()) as shutdown:
        plain = Call(app, "POST", "/linger", {"tag": "plain"})
        start = Call(app, "POST", "/jobs/linger", {"tag": "job", "items": 2})
        await finished(start)
        url = json.loads(start.text)["events_url"]
        followers = [Call(app, "GET", url), Call(app, "GET", url)]
        for call in [plain, *followers]:
            await wait_until_async(lambda c=call: c.has("event: progress"), "a first item")
        assert shutdown.open_streams == 3

        shutdown.trigger()  # what the chained signal handler does; the clients stay
        await finished(plain, *followers)

        assert plain.frames()[-1] == SHUTDOWN_FRAME  # no id: the stream did not number it
        for follower in followers:
            frames = follower.frames()
            assert [f.get("event") for f in frames] == ["start", "progress", "progress", "error"]
            assert frames[-1]["data"]["reason"] == "shutdown"  # the job's own end
            assert frames[-1]["id"] == "3"
        for call in [plain, *followers]:
            assert len(terminal(call.frames())) == 1
            assert call.ended
        assert sorted(ENDED) == ["job", "plain"]  # each handler's finally ran, once
        assert jobs.running == 0
        assert shutdown.open_streams == 0

        # afterwards: a new job is refused, a new stream ends at once, its handler never runs
        refused = Call(app, "POST", "/jobs/linger", {"tag": "late job"})
        late = Call(app, "POST", "/linger", {"tag": "late stream"})
        await finished(refused, late)
        assert refused.status == 429
        assert late.frames() == [{**SHUTDOWN_FRAME, "retry": "3000"}]  # its first frame
        assert sorted(ENDED) == ["job", "plain"]
    assert len(asyncio.all_tasks()) == tasks_before
    assert not [r for r in cqrs_logs.records if r.levelno >= logging.ERROR]


async def test_leaving_the_context_also_runs_the_shutdown() -> None:
    app, jobs = make_app()
    async with SSEShutdown(jobs, signals=()) as shutdown:
        plain = Call(app, "POST", "/linger", {"tag": "plain"})
        await wait_until_async(lambda: plain.has("event: progress"), "the first item")
    await finished(plain)
    assert shutdown.shutting_down
    assert plain.frames()[-1] == SHUTDOWN_FRAME
    assert ENDED == ["plain"]


async def test_the_signal_reaches_the_hook_and_then_the_servers_own_handler() -> None:
    received: list[int] = []

    def server_handler(signum: int, frame: FrameType | None) -> None:
        received.append(signum)

    previous = signal.signal(signal.SIGUSR1, server_handler)
    try:
        app, jobs = make_app()
        async with SSEShutdown(jobs, signals=[signal.SIGUSR1]):
            assert signal.getsignal(signal.SIGUSR1) is not server_handler
            plain = Call(app, "POST", "/linger", {"tag": "plain"})
            await wait_until_async(lambda: plain.has("event: progress"), "the first item")
            signal.raise_signal(signal.SIGUSR1)
            await finished(plain)
            assert received == [signal.SIGUSR1]
            assert plain.frames()[-1] == SHUTDOWN_FRAME
        assert signal.getsignal(signal.SIGUSR1) is server_handler  # put back
    finally:
        signal.signal(signal.SIGUSR1, previous)


async def test_a_signal_without_a_python_handler_is_left_alone() -> None:
    previous = signal.signal(signal.SIGUSR2, signal.SIG_DFL)
    try:
        async with SSEShutdown(signals=[signal.SIGUSR2]):
            assert signal.getsignal(signal.SIGUSR2) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGUSR2, previous)


async def test_misuse_is_refused_with_a_clear_error() -> None:
    with pytest.raises(TypeError, match="StreamJobs"):
        SSEShutdown(object())  # type: ignore[arg-type]
    async with SSEShutdown(signals=()):
        with pytest.raises(RuntimeError, match="already active on this event loop"):
            await SSEShutdown(signals=()).__aenter__()
    with pytest.raises(RuntimeError, match="Enter the SSEShutdown"):
        SSEShutdown(signals=()).trigger()


# -- a real uvicorn process stopped by a signal ---------------------------------------------


@dataclasses.dataclass
class Served:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def uvicorn(target: list[str], log: Path, env: dict[str, str]) -> Iterator[Served]:
    """``python -m uvicorn <target>`` on a socket bound here; killed at the end if still up."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    command = [sys.executable, "-m", "uvicorn", *target, "--fd", str(sock.fileno())]
    with sock, log.open("wb") as output:
        process = subprocess.Popen(
            [*command, "--log-level", "info", "--no-access-log"],
            cwd=ROOT,
            env={**os.environ, **env},
            pass_fds=[sock.fileno()],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        served = Served(process, f"http://127.0.0.1:{sock.getsockname()[1]}", log)
    try:
        yield served
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=PATIENCE)


def wait_ready(served: Served, path: str) -> None:
    def answers() -> bool:
        if served.process.poll() is not None:
            raise AssertionError(f"uvicorn exited:\n{served.log_text()}")
        return httpx.get(f"{served.url}{path}", timeout=10).status_code == 200

    wait_until(
        answers,
        f"uvicorn at {served.url} to answer GET {path}",
        retry_on=(httpx.HTTPError,),
        details=lambda: served.log_text(),
    )


class Stream:
    """An open streaming response read in the background until its end."""

    def __init__(self, http: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> None:
        self.text = ""
        self.status: int | None = None
        self.task = asyncio.get_running_loop().create_task(self._read(http, method, url, kwargs))

    async def _read(self, http: httpx.AsyncClient, method: str, url: str, kwargs: Any) -> None:
        async with http.stream(method, url, **kwargs) as response:
            self.status = response.status_code
            async for chunk in response.aiter_text():
                self.text += chunk

    def frames(self) -> list[dict[str, Any]]:
        return parse_frames(self.text)


# uvicorn >= 0.29 re-raises a handled SIGTERM after its graceful shutdown (with the default
# disposition), so a clean SIGTERM exit is "killed by SIGTERM"; SIGINT ends in a
# KeyboardInterrupt that uvicorn's command line turns into status 0.
EXIT_STATUS = {signal.SIGTERM: -signal.SIGTERM, signal.SIGINT: 0}


@pytest.mark.timeout(LONG_TEST_TIMEOUT)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_signal_ends_a_plain_stream_and_two_job_followers_and_uvicorn_exits(
    tmp_path: Path, signum: signal.Signals
) -> None:
    target = ["--factory", "tests.integration.sse_support:shutdown_app"]
    env = {"CQRS_TEST_PRINT_ENDS": "1"}
    with uvicorn(target, tmp_path / "uvicorn.log", env) as served:
        await asyncio.to_thread(wait_ready, served, "/health")
        async with httpx.AsyncClient(base_url=served.url, timeout=PATIENCE) as http:
            plain = Stream(http, "POST", "/linger", json={"tag": "plain"})
            started = await http.post("/jobs/linger", json={"tag": "job", "items": 2})
            url = started.json()["events_url"]
            followers = [Stream(http, "GET", url), Stream(http, "GET", url)]
            streams = [plain, *followers]
            for stream in streams:
                await wait_until_async(
                    lambda s=stream: "event: progress" in s.text,
                    "a first item on each stream",
                    details=served.log_text,
                )

            served.process.send_signal(signum)
            await asyncio.wait_for(asyncio.gather(*(s.task for s in streams)), PATIENCE)

        status = await asyncio.to_thread(served.process.wait, PATIENCE)
        log = served.log_text()
    assert plain.frames()[-1] == SHUTDOWN_FRAME, log
    for follower in followers:
        frames = follower.frames()
        assert [f.get("event") for f in frames] == ["start", "progress", "progress", "error"]
        assert frames[-1]["data"]["reason"] == "shutdown"
    for stream in streams:
        assert stream.status == 200
        assert len(terminal(stream.frames())) == 1
    assert status == EXIT_STATUS[signum], log
    assert log.count("handler finally: plain") == 1, log
    assert log.count("handler finally: job") == 1, log
    assert "Application shutdown complete" in log
    assert "Finished server process" in log
    assert "Traceback" not in log
    assert "timeout graceful shutdown exceeded" not in log


@pytest.mark.timeout(LONG_TEST_TIMEOUT)
async def test_the_demo_app_ends_a_followed_job_on_sigterm(tmp_path: Path) -> None:
    target = ["examples.demo_app.app:app"]
    env = {"DEMO_ITEM_DELAY": "600"}  # the job would run for hours
    with uvicorn(target, tmp_path / "uvicorn.log", env) as served:
        await asyncio.to_thread(wait_ready, served, "/api/stats")
        async with httpx.AsyncClient(base_url=served.url, timeout=PATIENCE) as http:
            started = await http.post("/jobs/process-orders", json={"order_ids": ["A-1", "A-2"]})
            page = Stream(http, "GET", started.json()["events_url"])
            await wait_until_async(lambda: "event: start" in page.text, "the start frame")
            served.process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(page.task, PATIENCE)
        status = await asyncio.to_thread(served.process.wait, PATIENCE)
        log = served.log_text()
    assert [f.get("event") for f in page.frames()] == ["start", "error"]
    assert page.frames()[-1]["data"]["reason"] == "shutdown"
    assert status == -signal.SIGTERM, log
    assert "Finished server process" in log
    assert "Traceback" not in log
