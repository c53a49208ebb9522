"""Shared pieces of the SSE tests: a streaming command, an app, and an SSE frame parser."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import di
import httpx

import cqrs
from cqrs.requests import bootstrap

PROCESSED: list[int] = []
FINALLY: list[str] = []


class Count(cqrs.Request):
    n: int
    delay: float = 0.0
    fail_at: int | None = None
    none_every: int | None = None


class Counted(cqrs.Response):
    i: int


class CountHandler(cqrs.StreamingRequestHandler[Count, Counted]):
    def clear_events(self) -> None:
        pass

    async def handle(self, request: Count) -> AsyncIterator[Counted | None]:
        try:
            for i in range(request.n):
                if request.delay:
                    await asyncio.sleep(request.delay)
                if request.fail_at == i:
                    raise RuntimeError("secret database password in this message")
                PROCESSED.append(i)
                if request.none_every and i % request.none_every == 0:
                    yield None
                yield Counted(i=i)
        finally:
            FINALLY.append("finally")


def commands_mapper(mapper: cqrs.RequestMap) -> None:
    mapper.bind(Count, CountHandler)


def make_mediator() -> cqrs.StreamingRequestMediator:
    return bootstrap.bootstrap_streaming(
        di_container=di.Container(), commands_mapper=commands_mapper
    )


def parse_frames(body: str) -> list[dict[str, Any]]:
    """Parse ``text/event-stream`` into frames; comments become ``{"comment": text}``."""
    frames: list[dict[str, Any]] = []
    for block in body.split("\n\n"):
        if not block.strip():
            continue
        frame: dict[str, Any] = {}
        data: list[str] = []
        for line in block.split("\n"):
            if line.startswith(":"):
                frame["comment"] = line[1:].strip()
                continue
            key, _, value = line.partition(": ")
            if key == "data":
                data.append(value)
            else:
                frame[key] = value
        if data:
            frame["data"] = json.loads("\n".join(data))
        frames.append(frame)
    return frames


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
