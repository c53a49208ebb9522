"""The FastAPI SSE helpers of ``cqrs.integrations.fastapi`` in a user's app.

``sse_response`` takes the stream ``mediator.stream(...)`` returns; ``mediator_dependency``
keeps the factory's return type; ``StreamJobs`` takes a streaming mediator or a factory of one,
and a ``ReplayBuffer``.
"""

# pyright: reportUnnecessaryTypeIgnoreComment=error

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Annotated, Any, assert_type

import di
import fastapi

import cqrs
from cqrs.integrations.fastapi import (
    Frame,
    JobState,
    MemoryReplayBuffer,
    SSEResponse,
    SSESettings,
    StreamJobs,
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
