"""Shared pieces of the SSE tests: streaming commands, apps, and an SSE frame parser.

Tests order things by events, never by time: a ``Count`` with ``hold_at=i`` stops before item
``i`` until the test releases it (:data:`HOLD`), and :func:`watched` records what an app
sends, so a test waits for "the handler is held" or "the headers are out" instead of sleeping.

A ``Linger`` handler yields its items and then (with ``linger``) waits until it is closed;
it records its tag in :data:`STARTED` (and in :data:`FINISHED` if its body ends by itself); its
``finally`` records it in :data:`CLEANING`, awaits, then records it in :data:`ENDED`. In the
uvicorn process of :func:`shutdown_app` each record is also printed (``handler <what>:
<tag>``), where the test reads the server's output.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import di
import fastapi
import httpx

import cqrs
from cqrs.integrations.fastapi import SSEShutdown, StreamJobs, jobs_router, sse_response
from cqrs.requests import bootstrap

PROCESSED: list[int] = []
FINALLY: list[str] = []
STARTED: list[str] = []
"""Tags of the ``Linger`` handlers that started."""
FINISHED: list[str] = []
"""Tags of the ``Linger`` handlers whose body ended by itself (not cut by a close)."""
CLEANING: list[str] = []
"""Tags of the ``Linger`` handlers that entered their ``finally``."""
ENDED: list[str] = []
"""Tags of the ``Linger`` handlers whose ``finally`` ran to its end."""
PRINT_ENDS = os.environ.get("CQRS_TEST_PRINT_ENDS") == "1"


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


class Linger(cqrs.Request):
    tag: str
    items: int = 1
    every: float = 0.0
    linger: bool = True


class LingerHandler(cqrs.StreamingRequestHandler[Linger, Counted]):
    def clear_events(self) -> None:
        pass

    async def handle(self, request: Linger) -> AsyncIterator[Counted]:
        _note(STARTED, "started", request.tag)
        try:
            for i in range(request.items):
                if request.every:
                    await asyncio.sleep(request.every)
                yield Counted(i=i)
            if request.linger:
                await asyncio.Event().wait()  # until the stream is closed
            _note(FINISHED, "finished", request.tag)
        finally:
            _note(CLEANING, "cleaning", request.tag)
            await asyncio.sleep(0)  # cleanup that awaits, as closing a connection does
            _note(ENDED, "finally", request.tag)


def _note(into: list[str], what: str, tag: str) -> None:
    into.append(tag)
    if PRINT_ENDS:
        print(f"handler {what}: {tag}", flush=True)


def commands_mapper(mapper: cqrs.RequestMap) -> None:
    mapper.bind(Count, CountHandler)
    mapper.bind(Linger, LingerHandler)


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


def shutdown_app() -> fastapi.FastAPI:
    """The app of the shutdown tests (``uvicorn --factory``): ``POST /linger`` streams a
        ``Linger`` with ``sse_response``; ``/jobs/linger`` runs it as a job; the lifespan enters
        ``SSEShutdown(jobs)``; ``GET /health`` answers with the process id and the number of tasks
    of its event loop."""
    mediator = make_mediator()
    jobs = StreamJobs(mediator)

    @contextlib.asynccontextmanager
    async def lifespan(_: fastapi.FastAPI) -> AsyncIterator[None]:
        async with SSEShutdown(jobs):
            yield

    app = fastapi.FastAPI(lifespan=lifespan)

    @app.post("/linger")
    async def linger(command: Linger) -> Any:
        return sse_response(mediator.stream(command))

    @app.get("/health")
    async def health() -> dict[str, int]:
        return {"pid": os.getpid(), "tasks": len(asyncio.all_tasks())}

    app.include_router(jobs_router(jobs, {"linger": Linger}))
    return app


class Call:
    """One HTTP request to an ASGI app, run as a task as a server would run it: the messages
    the app sends are kept in ``sent``; the client disconnects when the test calls
    :meth:`leave` (until then ``receive`` waits, as with a client that stays)."""

    def __init__(
        self,
        app: ASGIApp,
        method: str,
        path: str,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.sent: list[Message] = []
        self._left = asyncio.Event()
        self._body: bytes | None = b"" if body is None else json.dumps(body).encode()
        path, _, query = path.partition("?")
        scope = {
            "type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1", "method": method, "scheme": "http", "path": path,
            "raw_path": path.encode(), "query_string": query.encode(), "root_path": "",
            "headers": [(b"content-type", b"application/json")]
            + [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
            "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
        }  # fmt: skip

        async def serve() -> None:
            await app(scope, self._receive, self._send)

        self.task = asyncio.get_running_loop().create_task(serve())

    async def _receive(self) -> Message:
        if self._body is not None:
            body, self._body = self._body, None
            return {"type": "http.request", "body": body, "more_body": False}
        await self._left.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: Message) -> None:
        self.sent.append(message)

    def leave(self) -> None:
        """The client goes away."""
        self._left.set()

    @property
    def status(self) -> int | None:
        return next((m["status"] for m in self.sent if m["type"] == "http.response.start"), None)

    @property
    def text(self) -> str:
        return b"".join(m.get("body", b"") for m in self.sent if "body" in m).decode()

    @property
    def ended(self) -> bool:
        """The app sent the end of the body."""
        return any(m.get("more_body") is False for m in self.sent if m["type"].endswith("body"))

    def frames(self) -> list[dict[str, Any]]:
        return parse_frames(self.text)

    def has(self, fragment: str) -> bool:
        return fragment in self.text
