"""The demo web app: a batch of orders streamed to the browser as Server-Sent Events.

Run it with ``./scripts/demo``, ``python -m examples.demo_app`` or
``python examples/demo_app/app.py`` (``--host``/``--port``, or ``DEMO_HOST``/``DEMO_PORT``;
default 127.0.0.1:8000) and open the printed URL. Everything is embedded: a ``di.Container``,
SQLite, the in-memory message broker and the in-memory replay buffer.

Each order's notification takes the whole outbox path: the handler commits it to the SQLite
outbox with the order's shipment (one transaction per order), the outbox relay publishes it
to the broker, and the notification service's consumer handles it behind its inbox, once.
The lifespan runs the relay and the consumer (``pipeline.NotificationPipeline``); the page
shows, per order, when its notification was published and when it was consumed.

* ``GET /``: the page (``static/index.html``). It starts a ``ProcessOrders`` job, follows it
  with ``EventSource`` and resumes it after a reload.
* ``POST /jobs/process-orders`` starts a job (``{"job_id", "events_url"}``);
  ``GET /jobs/{job_id}/events`` streams it, resuming after ``Last-Event-ID`` or ``?last=N``
  (``cqrs.integrations.fastapi.jobs_router``). A reconnect never runs the command again. The
  warehouse rejects an order id starting with ``REJECT``: the stream ends with an ``error``
  frame whose message names the order and the reason (``OrderRejected`` is one of the
  ``safe_errors``); any other failure would send only a generic message.
* ``POST /process-files``: the endpoint of the "FastAPI Integration" page, as written there.
* ``GET /api/stats``: what was processed and handled; per order (and file) how many
  notifications were written to the outbox, published and consumed; the outbox's lag; the
  relay's, the consumers' and the inbox's counts; every events connection.

Settings (environment):

* ``DEMO_ITEM_DELAY``: seconds of work per item (default 0.4).
* ``DEMO_BROKER``: the broker between the relay and the consumer. Unset: the in-memory one.
  ``amqp://guest:guest@127.0.0.1/`` (RabbitMQ), ``nats://127.0.0.1:4222`` (NATS JetStream),
  ``redis://127.0.0.1:6379/0`` (Redis Streams) or ``kafka://127.0.0.1:9092`` (Kafka), each
  with its extra installed (``pip install 'cqrs-kit[rabbit]'``: ``rabbit``, ``nats``,
  ``redis``, ``kafka``).
* ``DEMO_DB``: a directory for the SQLite files (``orders.sqlite3`` with the outbox,
  ``notifications.sqlite3`` with the inbox), kept between runs: what was not published
  before a stop is published after the next start. Unset: a temporary directory, removed
  when the server stops.
* ``DEMO_TOPIC_PREFIX``: prefixed to the topics (default ``demo-``: ``demo-orders``,
  ``demo-files``), so that several demos can share one broker.

Ctrl+C or SIGTERM stops the server gracefully (``SSEShutdown`` in the lifespan): running
jobs are stopped and every open stream ends with an ``error`` frame with the reason
``shutdown`` (the pages show "The server is shutting down."), so the server does not wait
for the jobs to finish; then the relay finishes its batch and the consumer the
notifications it is handling.

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
    NOTIFICATION_TYPES,
    NOTIFICATIONS,
    DemoSettings,
    Ledger,
    OrderRejected,
    ProcessFilesCommand,
    ProcessOrders,
    commands_mapper,
    domain_events_mapper,
    notifications_mapper,
    notified_item,
)
from examples.demo_app.pipeline import NotificationPipeline
from examples.demo_app.store import Storage, UnitOfWork

import cqrs
from cqrs.events import bootstrap as events_bootstrap
from cqrs.integrations.fastapi import (
    Frame,
    MemoryReplayBuffer,
    SSEResponse,
    SSESettings,
    SSEShutdown,
    StreamJobs,
    jobs_router,
)
from cqrs.message_brokers.protocol import Message
from cqrs.requests import bootstrap
from cqrs.testing import InMemoryMessageBroker

STATIC = Path(__file__).resolve().parent / "static"

settings = DemoSettings(
    item_delay=float(os.environ.get("DEMO_ITEM_DELAY", "0.4")),
    topic_prefix=os.environ.get("DEMO_TOPIC_PREFIX", "demo-"),
)
ledger = Ledger()
storage = Storage(os.environ.get("DEMO_DB") or None)
work = UnitOfWork(storage.orders, NOTIFICATIONS)

container = di.Container()
container.bind(di.bind_by_type(Dependent(lambda: settings, scope="request"), DemoSettings))
container.bind(di.bind_by_type(Dependent(lambda: ledger, scope="request"), Ledger))
container.bind(di.bind_by_type(Dependent(lambda: work, scope="request"), UnitOfWork))

broker = InMemoryMessageBroker()


def _published(message: Message) -> None:
    item_id = notified_item(message.payload)
    if item_id is not None:
        ledger.published[item_id] += 1


# The notification service: its own mediator, fed by the consumer through the inbox.
notifications = NotificationPipeline(
    orders=storage.orders,
    notifications=storage.notifications,
    mediator=events_bootstrap.bootstrap(di_container=container, events_mapper=notifications_mapper),
    events=NOTIFICATION_TYPES,
    topics=lambda: [settings.topic("orders"), settings.topic("files")],
    memory_broker=broker,
    broker_url=os.environ.get("DEMO_BROKER"),
    on_published=_published,
)
work.on_commit = notifications.wake

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
    # On SIGTERM/Ctrl+C, SSEShutdown stops the running jobs and ends every open stream with a
    # "shutdown" error frame, so that uvicorn's graceful shutdown does not wait for them.
    # Leaving: the jobs stop first (no more outbox writes), then the relay and the consumer.
    try:
        async with notifications, SSEShutdown(jobs):
            yield
    finally:
        await storage.close()


app = fastapi.FastAPI(title="cqrs demo: streaming orders", lifespan=lifespan)
app.state.settings = settings
app.state.ledger = ledger
app.state.broker = broker
app.state.notifications = notifications
app.state.storage = storage
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
    """Counts for the page, tests and the curious: each order and file id maps to how many
    times it was processed (1, always), ``handled`` to the domain events handled for it, and
    ``notifications`` to ``{"written", "published", "consumed"}``: its notifications committed
    to the outbox, published by the relay (the broker confirmed them) and handled by the
    consumer (1 each, always). ``outbox`` is the outbox's lag (``pending`` rows, of which
    ``retrying``; ``given_up``; ``oldest_pending_age`` in seconds); ``relay``, ``consumers``
    and ``inbox`` count what they did since the server started; ``broker`` names the broker
    between the relay and the consumer, ``database`` the directory of the SQLite files, and
    ``relay_running`` says whether the relay and the consumer run."""
    return {
        "item_delay": settings.item_delay,
        "processed": dict(ledger.processed),
        "files": dict(ledger.files),
        "handled": ledger.handled,
        "notifications": ledger.notifications(),
        "outbox": await notifications.lag(),
        "broker": notifications.broker,
        "database": str(storage.directory),
        "relay_running": notifications.running,
        **notifications.stats(),
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
    print(
        f"notifications: SQLite outbox -> relay -> {notifications.broker} broker -> consumer "
        f"(inbox); databases in {os.environ.get('DEMO_DB') or 'a temporary directory'}",
        flush=True,
    )
    uvicorn.run(app, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
