"""The FastAPI SSE helpers of ``cqrs.integrations.fastapi`` in a user's app.

``sse_response`` takes the stream ``mediator.stream(...)`` returns; ``mediator_dependency``
keeps the factory's return type; ``StreamJobs`` takes a streaming mediator or a factory of one,
and a ``ReplayBuffer``; ``SSEShutdown`` takes only ``StreamJobs`` and is an async context
manager; ``event_stream_openapi`` builds a route's ``responses`` entry.
"""

# pyright: reportUnnecessaryTypeIgnoreComment=error

from __future__ import annotations

import contextlib
import signal
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Annotated, Any, assert_type

import di
import fastapi

import cqrs
from cqrs.integrations.fastapi import (
    MAX_EVENT_ID,
    Frame,
    JobStarted,
    JobState,
    MemoryReplayBuffer,
    SSEResponse,
    SSESettings,
    SSEShutdown,
    StreamJobs,
    event_stream_openapi,
    frames_of,
    jobs_router,
    mediator_dependency,
    server_sent_events,
    sse_response,
)
from cqrs.integrations.redis_replay import RedisReplayBuffer
from cqrs.requests import bootstrap
from tests.typing._app import ImportOrders
from tests.typing.check_maps import commands_mapper


def make_mediator() -> cqrs.StreamingRequestMediator:
    return bootstrap.bootstrap_streaming(di.Container(), commands_mapper=commands_mapper)


get_mediator = mediator_dependency(make_mediator)
assert_type(get_mediator, Callable[[], Awaitable[cqrs.StreamingRequestMediator]])

app = fastapi.FastAPI()


@app.post("/import-orders")
async def import_orders(
    command: ImportOrders,
    mediator: Annotated[cqrs.StreamingRequestMediator, fastapi.Depends(get_mediator)],
) -> SSEResponse:
    stream = mediator.stream(command)
    assert_type(sse_response(stream), SSEResponse)
    assert_type(sse_response(stream, SSESettings(heartbeat=None), retry_ms=None), SSEResponse)
    assert_type(frames_of(stream, SSESettings()), AsyncGenerator[Frame, None])
    assert_type(frames_of(stream, SSESettings(), encoded=True), AsyncGenerator[Frame | bytes, None])
    # GAP: ``server_sent_events`` yields ``Any`` (fastapi.sse.ServerSentEvent at run time).
    assert_type(server_sent_events(stream), AsyncGenerator[Any, None])
    # GAP: the overrides are ``**Any``: a misspelt or mistyped setting fails at run time only.
    sse_response(stream, hearbeat=5, retry_ms="soon")
    # Not a stream: refused.
    sse_response([1, 2, 3])  # pyright: ignore[reportArgumentType]
    sse_response(await mediator.stream(command))  # pyright: ignore[reportGeneralTypeIssues]
    return sse_response(stream)


async def resumable_jobs(mediator: cqrs.StreamingRequestMediator) -> fastapi.APIRouter:
    async with StreamJobs(make_mediator) as jobs:
        assert_type(jobs, StreamJobs)
        assert_type(await jobs.start(ImportOrders(order_ids=["1"])), str)
        assert_type(await jobs.state("job"), JobState)
        assert_type(await jobs.cancel("job"), bool)
        assert_type(jobs.running, int)
        assert_type(await jobs.frames("job"), AsyncGenerator[Frame, None])
    StreamJobs(mediator, buffer=MemoryReplayBuffer(ttl=60), settings=SSESettings())
    # The README's multi-process pattern type-checks.
    StreamJobs(mediator, buffer=RedisReplayBuffer(url="redis://localhost"))
    # A unary mediator cannot run jobs: refused.
    StreamJobs(bootstrap.bootstrap(di.Container()))  # pyright: ignore[reportArgumentType]
    return jobs_router(StreamJobs(mediator), {"import-orders": ImportOrders})


def documented_route(app: fastapi.FastAPI, mediator: cqrs.StreamingRequestMediator) -> None:
    settings = SSESettings(safe_errors=(ValueError,))
    doc = event_stream_openapi(settings, "progress of an import")
    assert_type(doc, dict[str, Any])

    @app.post("/documented", response_class=SSEResponse, responses={200: doc})
    async def documented(command: ImportOrders) -> SSEResponse:
        return sse_response(mediator.stream(command), settings)

    assert_type(JobStarted(job_id="j", events_url="/jobs/j/events").events_url, str)
    last_id: int = MAX_EVENT_ID
    assert last_id > 0
    # safe_errors holds exception classes only: refused.
    SSESettings(safe_errors=("ValueError",))  # pyright: ignore[reportArgumentType]


def lifespan_with_shutdown(jobs: StreamJobs) -> None:
    @contextlib.asynccontextmanager
    async def lifespan(_: fastapi.FastAPI) -> AsyncIterator[None]:
        async with SSEShutdown(jobs, signals=[signal.SIGTERM], jobs_grace=2.0) as shutdown:
            assert_type(shutdown, SSEShutdown)
            assert_type(shutdown.open_streams, int)
            assert_type(shutdown.shutting_down, bool)
            shutdown.trigger()
            yield
            await shutdown.shutdown()

    fastapi.FastAPI(lifespan=lifespan)
    # Not jobs: refused.
    SSEShutdown(make_mediator())  # pyright: ignore[reportArgumentType]
