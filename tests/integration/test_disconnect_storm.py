"""A disconnect storm: many clients of ``sse_response`` leave at random points (before the
first item, mid-stream, while the handler waits, after the end). Every handler that started
entered its ``finally`` exactly once; every handler cut by the disconnect ran its ``finally``
(which awaits) to the end; no task is left behind and nothing is logged as a warning or an
error: in process with 1 000 clients, and through a real uvicorn with 50.

One case is asyncio's own: a client that leaves while a handler that already ended by itself
awaits in its ``finally`` cancels that await (the response cancels the frames once, wherever
they are); such a cleanup is entered but may not finish, which the tests allow only there.

The random choices come from a seeded generator, so a failure can be replayed.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
from pathlib import Path
from typing import Any

import fastapi
import httpx
import pytest

from cqrs.integrations.fastapi import sse_response
from tests.integration.sse_support import (
    CLEANING,
    ENDED,
    FINISHED,
    STARTED,
    Call,
    Linger,
    make_mediator,
)
from tests.integration.test_sse_shutdown import uvicorn, wait_ready
from tests.support import LONG_TEST_TIMEOUT, PATIENCE, wait_until_async

pytestmark = pytest.mark.timeout(LONG_TEST_TIMEOUT)

SEED = 20240607


@pytest.fixture(autouse=True)
def _clear() -> None:
    for records in (STARTED, FINISHED, CLEANING, ENDED):
        records.clear()


def assert_cleanups(
    started: list[str], finished: list[str], cleaning: list[str], ended: list[str]
) -> None:
    """Every handler entered its finally once; every one cut mid-body finished it."""
    assert sorted(cleaning) == sorted(started)
    assert len(set(cleaning)) == len(cleaning)
    assert set(started) - set(finished) <= set(ended)
    assert len(set(ended)) == len(ended)


def plan(rng: random.Random, tag: str) -> dict[str, Any]:
    """One client's request: a stream of 0-20 items, a few ms apart; half of the handlers
    then wait until they are closed, the others end with ``complete``."""
    return {
        "tag": tag,
        "items": rng.randint(0, 20),
        "every": rng.choice([0.0, 0.001, 0.003]),
        "linger": rng.random() < 0.5,
    }


async def test_a_thousand_clients_leaving_at_random_points(
    cqrs_logs: pytest.LogCaptureFixture,
) -> None:
    rng = random.Random(SEED)
    tasks_before = len(asyncio.all_tasks())
    mediator = make_mediator()
    app = fastapi.FastAPI()

    @app.post("/linger")
    async def linger(command: Linger) -> Any:
        return sse_response(mediator.stream(command), heartbeat=0.01)

    async def client(n: int) -> Call:
        call = Call(app, "POST", "/linger", plan(rng, f"c{n}"))
        point = rng.random()
        if point < 0.2:
            call.leave()  # before the first item
        await asyncio.sleep(0 if point < 0.4 else rng.uniform(0, 0.08))
        call.leave()
        await asyncio.wait_for(call.task, PATIENCE)
        return call

    calls = await asyncio.gather(*(client(n) for n in range(1000)))

    assert all(call.task.exception() is None for call in calls)
    assert_cleanups(STARTED, FINISHED, CLEANING, ENDED)
    assert len(set(STARTED) - set(FINISHED)) >= 400  # cut mid-body: half of them linger
    completed = [c for c in calls if c.has("event: complete")]
    cut = [c for c in calls if not c.has("event: complete")]
    assert len(completed) + len(cut) == 1000
    assert len(STARTED) == 1000  # in process, a handler starts before a disconnect is read
    # the random points cover the cases: before the first item, mid-stream, after the end
    assert sum(not c.has("event: progress") for c in cut) >= 50
    assert sum(c.has("event: progress") for c in cut) >= 50
    assert len(completed) >= 50, len(completed)
    assert all(not c.has("event: error") for c in calls)
    await wait_until_async(
        lambda: len(asyncio.all_tasks()) == tasks_before, "the tasks to be back to the start"
    )
    assert not [r for r in cqrs_logs.records if r.levelno >= logging.WARNING]


async def raw_client(port: int, body: bytes, frames: int) -> bytes:
    """POST ``body`` on a raw socket, read the response's head and then until ``frames`` item
    frames arrived (or the end), then close the socket without a word."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            b"POST /linger HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%b" % (len(body), body)
        )
        await writer.drain()
        seen = b""
        while b"\r\n\r\n" not in seen or (
            seen.count(b"event: progress") < frames and b"event: complete" not in seen
        ):
            chunk = await asyncio.wait_for(reader.read(65536), PATIENCE)
            if not chunk:
                break
            seen += chunk
        return seen
    finally:
        writer.close()


async def test_fifty_clients_leaving_a_real_uvicorn(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    target = ["--factory", "tests.integration.sse_support:shutdown_app"]
    with uvicorn(target, tmp_path / "uvicorn.log", {"CQRS_TEST_PRINT_ENDS": "1"}) as served:
        await asyncio.to_thread(wait_ready, served, "/health")
        async with httpx.AsyncClient(base_url=served.url, timeout=PATIENCE) as http:
            tasks_before = (await http.get("/health")).json()["tasks"]
            port = int(served.url.rsplit(":", 1)[1])
            requests = [plan(rng, f"u{n}") for n in range(50)]
            bodies = await asyncio.gather(
                *(
                    raw_client(
                        port,
                        httpx.Request("POST", "/", json=r).content,
                        rng.randint(0, r["items"]),
                    )
                    for r in requests
                )
            )

            # Each client saw its response start, so each request has its task on the server:
            # when the count is back, every request (and its handler's finally) is done.
            async def tasks_back() -> bool:
                return (await http.get("/health")).json()["tasks"] == tasks_before

            await wait_until_async(
                tasks_back, "the server's tasks to be back to the start", details=served.log_text
            )
        log = served.log_text()
    notes: dict[str, list[str]] = collections.defaultdict(list)
    for line in log.splitlines():
        if line.startswith("handler "):
            what, _, tag = line.removeprefix("handler ").partition(": ")
            notes[what].append(tag)
    assert_cleanups(notes["started"], notes["finished"], notes["cleaning"], notes["finally"])
    assert len(set(notes["started"])) == len(notes["started"]) >= 25
    assert sum(b"HTTP/1.1 200" in body for body in bodies) == 50
    assert "Traceback" not in log
    assert "ERROR" not in log
