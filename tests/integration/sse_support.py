"""Shared pieces of the SSE tests: a streaming command, an app, and an SSE frame parser.

Tests order things by events, never by time: a ``Count`` with ``hold_at=i`` stops before item
``i`` until the test releases it (:data:`HOLD`), and :func:`watched` records what an app
sends, so a test waits for "the handler is held" or "the headers are out" instead of sleeping.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import di
import httpx

import cqrs
from cqrs.requests import bootstrap

PROCESSED: list[int] = []
FINALLY: list[str] = []


class Hold:
    """Where a ``Count`` handler waits: ``reached`` is set when it gets to ``hold_at``, and it
    goes on when the test sets ``release`` (or is cancelled while it waits)."""

    def __init__(self) -> None:
        self.reached = asyncio.Event()
        self.release = asyncio.Event()

    def reset(self) -> None:
        """Fresh events for the next test (an event belongs to the loop that first used it)."""
        self.reached = asyncio.Event()
        self.release = asyncio.Event()


HOLD = Hold()


class Count(cqrs.Request):
    n: int
    delay: float = 0.0
    fail_at: int | None = None
    none_every: int | None = None
    hold_at: int | None = None


class Counted(cqrs.Response):
    i: int


class CountHandler(cqrs.StreamingRequestHandler[Count, Counted]):
    def clear_events(self) -> None:
        pass

    # Yields None on purpose (``none_every``): the SSE layer must skip it.
    async def handle(self, request: Count) -> AsyncIterator[Counted | None]:  # pyright: ignore[reportIncompatibleMethodOverride]
        try:
            for i in range(request.n):
                if request.hold_at == i:
                    HOLD.reached.set()
                    await HOLD.release.wait()
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


Message = dict[str, Any]
ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]


def watched(app: ASGIApp, on_send: Callable[[Message], None]) -> ASGIApp:
    """``app`` with ``on_send(message)`` called for every ASGI message it sends, before the
    message goes out (a test sees the headers, each frame and each heartbeat as they leave)."""

    async def spy(scope: Any, receive: Any, send: Any) -> None:
        async def sending(message: Message) -> None:
            on_send(message)
            await send(message)

        await app(scope, receive, sending)

    return spy
