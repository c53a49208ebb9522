"""The FastAPI app of the SSE rows, served by uvicorn in a subprocess (see :mod:`benchmarks.sse`).

Throughput (row ``SSE through uvicorn``), all ``POST ...?n=N``:

* ``/ours``: ``sse_response(mediator.stream(SSEItems(count=n)))`` with the default settings
  (a heartbeat every 15 s of silence, which never comes here: its per-item bookkeeping is
  measured); the streaming handler yields the first ``n`` of 10 000 prebuilt pydantic items.
* ``/ours-no-beat``: the same with ``heartbeat=None`` (no heartbeat task, no bookkeeping).
* ``/raw``: a plain ``starlette.responses.StreamingResponse`` over an async generator that
  yields the frames of the ``/ours`` body, one chunk per frame as ours sends them. The frames
  are primed once by ``POST /raw/prime?n=N`` with a body fetched from ``/ours``.
* ``/hand``: a hand-written SSE endpoint (a contrast, not the baseline): the same bytes, but
  each item serialized per request with ``model_dump_json()`` and framed with ``%``.

Disconnect (row ``disconnect → handler finally``), both ``POST ...?token=T``: one item, then
a wait (until ``POST /release``) inside ``try/finally``; the ``finally`` records
``time.monotonic()`` (CLOCK_MONOTONIC, system-wide on Linux) under the token, which
``GET /finally/{token}`` returns (``null`` while it has not run).

* ``/ours-hang``: ``sse_response`` over a streaming handler of that shape.
* ``/raw-hang``: a ``StreamingResponse`` over a plain async generator of that shape;
  ``?spec=2.4`` serves it as under a server that advertises ASGI spec 2.4 (Starlette then
  stops listening for ``http.disconnect`` and only notices a gone client at its next send).

``CQRS_BENCH_SSE_PROFILE=PATH`` enables ``POST /profile/start`` and ``POST /profile/stop``,
which profiles the server's thread with cProfile in between and dumps the stats to PATH
(``python -m benchmarks.profiling sse``).
"""

from __future__ import annotations

import asyncio
import cProfile
import os
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import di
from fastapi import FastAPI, Query, Request, Response
from starlette.responses import StreamingResponse

import cqrs
from benchmarks import model
from cqrs.integrations.fastapi import sse_response
from cqrs.message_brokers import devnull
from cqrs.requests import bootstrap

MAX_ITEMS = 10_000
ITEMS = model.make_items(MAX_ITEMS)
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
"""The headers ``SSEResponse`` adds; the raw responses send them too."""
RAW_HANG_FRAME = b"id: 1\nevent: progress\ndata: " + ITEMS[0].model_dump_json().encode() + b"\n\n"

finally_at: dict[str, float] = {}
"""``time.monotonic()`` of each hanging handler's ``finally``, by token."""
release = asyncio.Event()
"""Set by ``POST /release``: the hanging handlers stop waiting (so the server exits at once)."""
raw_frames: dict[int, list[bytes]] = {}
"""The frames of ``/ours?n=N``, by N, for ``/raw``."""


class SSEItems(cqrs.Request):
    """Stream the first ``count`` prebuilt items."""

    count: int


class SSEHang(cqrs.Request):
    """Stream one item, then wait until released; the ``finally`` records its time."""

    token: str


class SSEItemsHandler(cqrs.StreamingRequestHandler[SSEItems, model.ItemResult]):
    """Yields prebuilt items, emits nothing."""

    def clear_events(self) -> None:
        """Nothing to clear."""

    async def handle(self, request: SSEItems) -> AsyncIterator[model.ItemResult]:
        """Yield the first ``request.count`` prebuilt items."""
        items = ITEMS
        for i in range(request.count):
            yield items[i]


class SSEHangHandler(cqrs.StreamingRequestHandler[SSEHang, model.ItemResult]):
    """One item, then a long wait; records the time its ``finally`` runs."""

    def clear_events(self) -> None:
        """Nothing to clear."""

    async def handle(self, request: SSEHang) -> AsyncIterator[model.ItemResult]:
        """Yield one item and wait for ``release``."""
        try:
            yield ITEMS[0]
            await release.wait()
        finally:
            finally_at[request.token] = time.monotonic()


def _commands(mapper: cqrs.RequestMap) -> None:
    mapper.bind(SSEItems, SSEItemsHandler)
    mapper.bind(SSEHang, SSEHangHandler)


MEDIATOR = bootstrap.bootstrap_streaming(
    di_container=di.Container(),
    commands_mapper=_commands,
    domain_events_mapper=model.stream_events,
    message_broker=devnull.DevnullMessageBroker(),
    max_concurrent_event_handlers=3,
    concurrent_event_handle_enable=True,
)

app = FastAPI()


@app.get("/health")
async def health() -> dict[str, int]:
    """Ready; also the server's pid (a check that the benchmark measures the right process)."""
    return {"pid": os.getpid()}


@app.get("/spec")
async def spec(request: Request) -> dict[str, str]:
    """The ASGI ``spec_version`` this server puts in the scope."""
    return {"spec_version": str(request.scope.get("asgi", {}).get("spec_version", "2.0"))}


Count = Annotated[int, Query(ge=0, le=MAX_ITEMS)]


@app.post("/ours")
async def ours(n: Count) -> Response:
    """The library: a mediator stream as Server-Sent Events, default settings."""
    return sse_response(MEDIATOR.stream(SSEItems(count=n)))


@app.post("/ours-no-beat")
async def ours_no_beat(n: Count) -> Response:
    """The library without heartbeats."""
    return sse_response(MEDIATOR.stream(SSEItems(count=n)), heartbeat=None)


async def _chunks(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


@app.post("/raw")
async def raw(n: Count) -> Response:
    """The baseline: the same bytes, precomputed, as a plain ``StreamingResponse``."""
    return StreamingResponse(
        _chunks(raw_frames[n]), headers=SSE_HEADERS, media_type="text/event-stream"
    )


async def _hand_written(n: int) -> AsyncIterator[bytes]:
    yield b'event: start\nretry: 3000\ndata: {"type":"start","message":"Processing..."}\n\n'
    items = ITEMS
    for i in range(n):
        yield b"id: %d\nevent: progress\ndata: %b\n\n" % (
            i + 1,
            items[i].model_dump_json().encode(),
        )
    yield b'id: %d\nevent: complete\ndata: {"type":"complete","items":%d}\n\n' % (n + 1, n)


@app.post("/hand")
async def hand(n: Count) -> Response:
    """A contrast: a hand-written endpoint that serializes and frames each item itself."""
    return StreamingResponse(_hand_written(n), headers=SSE_HEADERS, media_type="text/event-stream")


@app.post("/raw/prime")
async def prime(n: Count, request: Request) -> dict[str, int]:
    """Keep the frames of an ``/ours?n=N`` body for ``/raw?n=N``."""
    body = await request.body()
    frames = [frame + b"\n\n" for frame in body.split(b"\n\n")[:-1]]
    if b"".join(frames) != body:
        raise ValueError("the body is not a sequence of SSE frames")
    raw_frames[n] = frames
    return {"frames": len(frames)}


@app.post("/ours-hang")
async def ours_hang(token: str) -> Response:
    """The library: a stream whose handler waits after its first item."""
    return sse_response(MEDIATOR.stream(SSEHang(token=token)), heartbeat=None)


async def _raw_hang(token: str) -> AsyncIterator[bytes]:
    try:
        yield RAW_HANG_FRAME
        await release.wait()
    finally:
        finally_at[token] = time.monotonic()


class _Spec24StreamingResponse(StreamingResponse):
    """A ``StreamingResponse`` that sees ``spec_version`` 2.4 in the scope."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        scope = {**scope, "asgi": {**scope.get("asgi", {}), "spec_version": "2.4"}}
        await super().__call__(scope, receive, send)


@app.post("/raw-hang")
async def raw_hang(token: str, spec: str = "") -> Response:
    """The baseline: a plain async generator of the same shape in a ``StreamingResponse``."""
    cls = _Spec24StreamingResponse if spec == "2.4" else StreamingResponse
    return cls(_raw_hang(token), headers=SSE_HEADERS, media_type="text/event-stream")


@app.get("/finally/{token}")
async def finally_time(token: str) -> dict[str, float | None]:
    """When the ``finally`` of the hanging stream ``token`` ran (``time.monotonic()``)."""
    return {"t": finally_at.get(token)}


@app.post("/release")
async def release_all() -> dict[str, bool]:
    """Let every hanging handler finish."""
    release.set()
    return {"released": True}


_PROFILE_PATH = os.environ.get("CQRS_BENCH_SSE_PROFILE")
_profiler: list[cProfile.Profile] = []

if _PROFILE_PATH:

    @app.post("/profile/start")
    async def profile_start() -> dict[str, bool]:
        """Profile this thread (the event loop's) from now on."""
        profiler = cProfile.Profile()
        _profiler[:] = [profiler]
        profiler.enable()
        return {"profiling": True}

    @app.post("/profile/stop")
    async def profile_stop() -> dict[str, str]:
        """Stop profiling and dump the stats to ``CQRS_BENCH_SSE_PROFILE``."""
        profiler = _profiler.pop()
        profiler.disable()
        profiler.dump_stats(str(_PROFILE_PATH))
        return {"stats": str(_PROFILE_PATH)}
