"""A FastAPI app serving resumable jobs through a shared Redis replay buffer.

Started as two uvicorn processes by ``test_redis_replay.py``, and against a Redis that is
restarted under it by ``test_redis_faults.py``. Environment variables:

* ``CQRS_REDIS_JOBS_PREFIX``: the key prefix (of the buffer and of the lists below);
* ``CQRS_REDIS_JOBS_URL``: the replay buffer's Redis (default the shared one on 6379);
* ``CQRS_REDIS_JOBS_CONTROL_URL``: the Redis of the lists below (default the same shared
  one), kept apart so that a test may restart the buffer's Redis without losing them;
* ``CQRS_REDIS_JOBS_DEADLINE`` / ``CQRS_REDIS_JOBS_LEASE``: the buffer's ``outage_deadline``
  and ``lease`` in seconds (defaults: 30 and 15, the buffer's).

Every item the handler processes is pushed as ``"{pid}:{i}"`` to the list
``{prefix}processed``, so the test can tell which process ran it and how often; the
handler's ``finally`` pushes ``"{pid}"`` to ``{prefix}finally``.

The test orders things by events, not by time: a ``CountCommand`` with ``hold_at=i`` stops
before item ``i`` until the test pushes to the list ``{prefix}release``, and the replay
buffer's Redis connections are named ``{CQRS_REDIS_JOBS_CLIENT_NAME}{pid}``, so the test can
see (``CLIENT LIST``) when a process's follower waits in ``XREAD`` for the next frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncGenerator, AsyncIterator

import di
import fastapi
import redis.asyncio

import cqrs
from cqrs.integrations.fastapi import StreamJobs, jobs_router
from cqrs.integrations.redis_replay import RedisReplayBuffer
from cqrs.requests import bootstrap

PREFIX = os.environ.get("CQRS_REDIS_JOBS_PREFIX", "cqrs:test:jobs:")
SHARED_URL = "redis://127.0.0.1:6379/0"
BUFFER_URL = os.environ.get("CQRS_REDIS_JOBS_URL", SHARED_URL)
CONTROL_URL = os.environ.get("CQRS_REDIS_JOBS_CONTROL_URL", SHARED_URL)
PROCESSED_KEY = f"{PREFIX}processed"
FINALLY_KEY = f"{PREFIX}finally"
RELEASE_KEY = f"{PREFIX}release"
CLIENT_NAMES = os.environ.get("CQRS_REDIS_JOBS_CLIENT_NAME", "cqrs-test-jobs-")
OUTAGE_DEADLINE = float(os.environ.get("CQRS_REDIS_JOBS_DEADLINE", "30"))
LEASE = float(os.environ.get("CQRS_REDIS_JOBS_LEASE", "15"))


class CountCommand(cqrs.Request):
    n: int
    delay: float = 0.0
    hold_at: int | None = None


class Counted(cqrs.Response):
    i: int


class CountHandler(cqrs.StreamingRequestHandler[CountCommand, Counted]):
    def clear_events(self) -> None:
        pass

    async def handle(self, request: CountCommand) -> AsyncIterator[Counted]:
        client = redis.asyncio.Redis.from_url(CONTROL_URL)
        try:
            for i in range(request.n):
                if request.hold_at == i:
                    released = None
                    while released is None:  # BLPOP answers None after its timeout
                        released = await client.blpop([RELEASE_KEY], timeout=1)
                await asyncio.sleep(request.delay)
                await client.rpush(PROCESSED_KEY, f"{os.getpid()}:{i}")
                yield Counted(i=i)
        finally:
            await client.rpush(FINALLY_KEY, str(os.getpid()))
            await client.aclose()


def _commands(mapper: cqrs.RequestMap) -> None:
    mapper.bind(CountCommand, CountHandler)


mediator = bootstrap.bootstrap_streaming(di_container=di.Container(), commands_mapper=_commands)
buffer_url = f"{BUFFER_URL}?client_name={CLIENT_NAMES}{os.getpid()}"
jobs = StreamJobs(
    mediator,
    buffer=RedisReplayBuffer(
        url=buffer_url, prefix=PREFIX, outage_deadline=OUTAGE_DEADLINE, lease=LEASE
    ),
)


@contextlib.asynccontextmanager
async def lifespan(_: fastapi.FastAPI) -> AsyncGenerator[None]:
    async with jobs:
        yield


app = fastapi.FastAPI(lifespan=lifespan)
app.include_router(jobs_router(jobs, {"count": CountCommand}))


@app.get("/health")
async def health() -> dict[str, int]:
    return {"pid": os.getpid()}
