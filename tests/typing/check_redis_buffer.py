"""``RedisReplayBuffer`` is a ``ReplayBuffer``: it can be handed to ``StreamJobs`` and used
wherever the protocol is expected, with the types of its own options and results."""

# pyright: reportUnnecessaryTypeIgnoreComment=error

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import assert_type

import redis.asyncio

import cqrs
from cqrs.integrations.fastapi import Frame, JobState, ReplayBuffer, StreamJobs
from cqrs.integrations.redis_replay import RedisReplayBuffer


def from_url() -> ReplayBuffer:
    buffer: ReplayBuffer = RedisReplayBuffer(url="redis://127.0.0.1:6379/0")
    return buffer


def from_client(client: redis.asyncio.Redis) -> ReplayBuffer:
    return RedisReplayBuffer(
        client,
        prefix="app:jobs:",
        ttl=600.0,
        max_frames=10_000,
        block_ms=5_000,
        outage_deadline=30.0,
        lease=15.0,
    )


def jobs(mediator: cqrs.StreamingRequestMediator) -> StreamJobs:
    return StreamJobs(mediator, buffer=RedisReplayBuffer(url="redis://127.0.0.1:6379/0"))


async def use(buffer: RedisReplayBuffer) -> None:
    assert_type(await buffer.state("job"), JobState)
    assert_type(buffer.follow("job", 0), AsyncGenerator[Frame, None])
    assert_type(buffer.outage_deadline, float)
    assert_type(buffer.lease, float)
    assert_type(buffer.url, str)


class NotABuffer:
    """Has ``open`` and ``append`` but no ``state``, ``follow`` or ``aclose``."""

    async def open(self, job_id: str) -> None: ...

    async def append(self, job_id: str, frame: Frame) -> None: ...


def rejected() -> ReplayBuffer:
    return NotABuffer()  # pyright: ignore[reportReturnType]
