"""The demo web app: a batch of orders streamed to the browser as Server-Sent Events.

Run it with ``./scripts/demo``, ``python -m examples.demo_app`` or
``python examples/demo_app/app.py`` (``--host``/``--port``, or ``DEMO_HOST``/``DEMO_PORT``;
default 127.0.0.1:8000) and open the printed URL. Everything is embedded: a ``di.Container``,
the in-memory message broker and the in-memory replay buffer.

* ``GET /``: the page (``static/index.html``). It starts a ``ProcessOrders`` job, follows it
  with ``EventSource`` and resumes it after a reload.
* ``POST /jobs/process-orders`` starts a job (``{"job_id", "events_url"}``);
  ``GET /jobs/{job_id}/events`` streams it, resuming after ``Last-Event-ID`` or ``?last=N``
  (``cqrs.integrations.fastapi.jobs_router``). A reconnect never runs the command again. The
  warehouse rejects an order id starting with ``REJECT``: the stream ends with an ``error``
  frame whose message names the order and the reason (``OrderRejected`` is one of the
  ``safe_errors``); any other failure would send only a generic message.
* ``POST /process-files``: the endpoint of the "FastAPI Integration" page, as written there.
* ``GET /api/stats``: what was processed, handled, published, and every events connection.

``DEMO_ITEM_DELAY`` sets the seconds of work per item (default 0.4). Ctrl+C or SIGTERM stops
the server gracefully (``SSEShutdown`` in the lifespan): running jobs are stopped and every
open stream ends with an ``error`` frame with the reason ``shutdown`` (the pages show "The
server is shutting down."), so the server does not wait for the jobs to finish.

Test hook: ``GET /jobs/{job_id}/events?drop_after=N`` ends a connection that came without a
``Last-Event-ID`` header after its N-th item, without a terminal frame, as a dropped
connection would end; the browser then reconnects by itself with ``Last-Event-ID: N``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from pathlib import Path
from typing import Any

if not __package__:  # run as a file: make ``examples.demo_app`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import di
import fastapi
import fastapi.responses
import uvicorn
from di.dependent import Dependent
from examples.demo_app.domain import (
    DemoSettings,
    Ledger,
    OrderRejected,
    ProcessFilesCommand,
    ProcessOrders,
    commands_mapper,
    domain_events_mapper,
)

import cqrs
from cqrs.integrations.fastapi import (
    Frame,
    MemoryReplayBuffer,
    SSEResponse,
    SSESettings,
    SSEShutdown,
    StreamJobs,
    jobs_router,
)
from cqrs.requests import bootstrap
from cqrs.testing import InMemoryMessageBroker

STATIC = Path(__file__).resolve().parent / "static"

settings = DemoSettings(item_delay=float(os.environ.get("DEMO_ITEM_DELAY", "0.4")))
ledger = Ledger()

container = di.Container()
container.bind(di.bind_by_type(Dependent(lambda: settings, scope="request"), DemoSettings))
container.bind(di.bind_by_type(Dependent(lambda: ledger, scope="request"), Ledger))

broker = InMemoryMessageBroker()

orders_mediator = bootstrap.bootstrap_streaming(
    di_container=container,
    commands_mapper=commands_mapper,
    domain_events_mapper=domain_events_mapper,
    message_broker=broker,
    max_concurrent_event_handlers=3,
    concurrent_event_handle_enable=True,
)

# A dropped connection comes back after retry_ms: 1 s instead of the default 3 s. A rejected
# order's message is for the client (it names the order and why); other errors stay generic.
jobs = StreamJobs(
    orders_mediator,
    buffer=MemoryReplayBuffer(ttl=600),
    settings=SSESettings(retry_ms=1000, safe_errors=(OrderRejected,)),
)


@contextlib.asynccontextmanager
async def lifespan(_: fastapi.FastAPI) -> AsyncIterator[None]:
    # On SIGTERM/Ctrl+C: stops the running jobs and ends every open stream with a
    # "shutdown" error frame, so that uvicorn's graceful shutdown does not wait for them.
    async with SSEShutdown(jobs):
        yield


app = fastapi.FastAPI(title="cqrs demo: streaming orders", lifespan=lifespan)
app.state.settings = settings
app.state.ledger = ledger
app.state.broker = broker
app.state.jobs = jobs
app.state.connections = []  # one dict per GET of a job's events


# -- the endpoint of the "FastAPI Integration" page, as written there ----------------------


# fmt: off
def streaming_mediator_factory() -> cqrs.StreamingRequestMediator:
    return bootstrap.bootstrap_streaming(
        di_container=container,
        commands_mapper=commands_mapper,
        domain_events_mapper=domain_events_mapper,
        message_broker=broker,
        max_concurrent_event_handlers=3,
        concurrent_event_handle_enable=True,
    )

@app.post("/process-files")
async def process_files_stream(
    command: ProcessFilesCommand,
    mediator: cqrs.StreamingRequestMediator = fastapi.Depends(  # noqa: B008 (FastAPI's idiom)
        streaming_mediator_factory
    ),
) -> fastapi.responses.StreamingResponse:
    async def generate_sse():
        yield f"data: {json.dumps({'type': 'start', 'message': 'Processing...'})}\n\n"

        async for result in mediator.stream(command):
            if result is None:
                continue

            sse_data = {
                "type": "progress",
                "data": result.model_dump(),
            }
            yield f"data: {json.dumps(sse_data)}\n\n"

        yield f"data: {json.dumps({'type': 'complete'})}\n\n"

    return fastapi.responses.StreamingResponse(
        generate_sse(),
        media_type="text/event-stream",
    )
# fmt: on

# The endpoint above answers with an event stream of data-only events (its decorator, as
# written on the page, would document JSON): say so in the OpenAPI schema.
_files_route = next(
    route
    for route in app.routes
    if isinstance(route, fastapi.routing.APIRoute) and route.path == "/process-files"
)
_files_route.response_class = fastapi.responses.StreamingResponse
_files_route.responses = {
    200: {
        "description": "start, one progress event per file, complete (data-only events)",
        "content": {
            "text/event-stream": {
                "itemSchema": {
                    "type": "object",
                    "required": ["data"],
                    "properties": {
                        "event": {"const": "message"},
                        "data": {"type": "string", "contentMediaType": "application/json"},
                    },
                }
            }
        },
    },
    400: {
        "description": "The body could not be read as JSON (e.g. it is not UTF-8).",
        "content": {"application/json": {"schema": {"type": "object", "required": ["detail"]}}},
    },
}


# -- resumable jobs ------------------------------------------------------------------------

router = jobs_router(jobs, {"process-orders": ProcessOrders})
_EVENTS_PATH = "/jobs/{job_id}/events"
_library_events = next(
    route.endpoint
    for route in router.routes
    if isinstance(route, fastapi.routing.APIRoute) and route.path == _EVENTS_PATH
)


@app.get(_EVENTS_PATH, include_in_schema=False)
async def job_events(
    job_id: str,
    last: str | None = None,
    drop_after: int | None = fastapi.Query(default=None, ge=1),
    last_event_id: str | None = fastapi.Header(default=None),
) -> SSEResponse:
    """The router's events route, after recording the connection for ``/api/stats``.

    Registered before the router, so it serves the path; ``drop_after`` is the test hook
    described in the module docstring.
    """
    app.state.connections.append(
        {"job_id": job_id, "last_event_id": last_event_id, "last": last, "drop_after": drop_after}
    )
    response: SSEResponse = await _library_events(
        job_id=job_id, last=last, last_event_id=last_event_id
    )
    if drop_after is not None and not last_event_id:
        frames = response.frames
        if not isinstance(frames, AsyncGenerator):
            raise TypeError(f"expected the router's frames as an async generator, got {frames!r}")
        response.frames = _drop_after(frames, drop_after)
    return response


async def _drop_after(
    frames: AsyncGenerator[Frame | bytes, None], items: int
) -> AsyncIterator[Frame | bytes]:
    """``frames`` until the ``items``-th item frame, then the end of the response."""
    sent = 0
    async with contextlib.aclosing(frames):  # closes the job's follower too
        async for frame in frames:
            yield frame
            # an item frame: encoded bytes, or a Frame with an id that does not end the stream
            if isinstance(frame, bytes) or (frame.id is not None and not frame.terminal):
                sent += 1
                if sent >= items:
                    return


app.include_router(router)


# -- the page and the stats ----------------------------------------------------------------


@app.get("/", include_in_schema=False)
async def page() -> fastapi.responses.FileResponse:
    return fastapi.responses.FileResponse(STATIC / "index.html")


@app.get("/api/stats")
async def stats() -> dict[str, Any]:
    """Counts for tests and the curious: each order and file id maps to how many times it was
    processed (1, always), ``handled`` to the domain events handled for it."""
    notifications: dict[str, int] = {}
    for message in broker.messages:
        payload = message.payload.get("payload", {})
        item_id = payload.get("order_id") or payload.get("file_id")
        notifications[item_id] = notifications.get(item_id, 0) + 1
    return {
        "item_delay": settings.item_delay,
        "processed": dict(ledger.processed),
        "files": dict(ledger.files),
        "handled": ledger.handled,
        "notifications": notifications,
        "jobs_running": jobs.running,
        "connections": app.state.connections,
    }


# -- running it ------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the cqrs streaming demo.")
    parser.add_argument("--host", default=os.environ.get("DEMO_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("DEMO_PORT", "8000")))
    args = parser.parse_args(argv)
    print(f"cqrs demo: open http://{args.host}:{args.port}/  (Ctrl+C stops it)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
