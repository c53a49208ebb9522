"""An ASGI response that sends SSE frames, with heartbeats and immediate disconnect handling.

It speaks plain ASGI; it subclasses Starlette's ``StreamingResponse`` so that FastAPI and
Starlette accept it as an endpoint's return value.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

from cqrs._internal._optional import require
from cqrs._internal.sse.frames import (
    Frame,
    SSESettings,
    encode_comment,
    encode_frame,
    encode_retry,
)

with require("fastapi", extra="fastapi", feature="cqrs.integrations.fastapi"):
    from starlette.responses import StreamingResponse

__all__ = ["SSEResponse"]

logger = logging.getLogger("cqrs")


class _ClientGone(Exception):
    """The client closed the connection."""


class SSEResponse(StreamingResponse):
    """A ``text/event-stream`` response over an async iterator of :class:`Frame` (or of frames
    already encoded as bytes).

    It listens for the client's disconnect while streaming: when the client goes away the
    frame iterator is cancelled at once (for a mediator stream: the handler's generator is
    closed, its ``finally`` runs and its DI scope is released), without waiting for the next
    item. While no frame is sent for ``settings.heartbeat`` seconds it sends a ``: ping``
    comment. ``retry:`` goes with the first frame. Headers disable proxy buffering.

    It deliberately does not derive from ``fastapi.sse.EventSourceResponse``: FastAPI treats
    that class as the marker of ``yield``-based SSE endpoints (see ``server_sent_events``).
    """

    def __init__(
        self,
        frames: AsyncIterator[Frame] | AsyncIterator[Frame | bytes],
        settings: SSESettings | None = None,
        *,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.frames = frames
        self.settings: SSESettings = settings or SSESettings()
        merged = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        merged.update(headers or {})
        # The body is written by __call__ from ``frames``; the parent only keeps the headers.
        super().__init__(
            (), status_code=status_code, headers=merged, media_type="text/event-stream"
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": self.status_code,
                    "headers": self.raw_headers})  # fmt: skip
        settings = self.settings
        loop = asyncio.get_running_loop()
        lock = asyncio.Lock() if settings.heartbeat is not None else None
        last_sent = loop.time()

        async def pump() -> None:
            nonlocal last_sent
            retry = settings.retry_ms
            frames = self.frames
            try:
                async for frame in frames:
                    if isinstance(frame, bytes):
                        body = frame if retry is None else encode_retry(retry) + frame
                    else:
                        body = encode_frame(frame, retry)
                    retry = None
                    if lock is None:
                        await send({"type": "http.response.body", "body": body, "more_body": True})
                    else:
                        async with lock:
                            await send({"type": "http.response.body", "body": body,
                                        "more_body": True})  # fmt: skip
                        last_sent = loop.time()
                await send({"type": "http.response.body", "body": b"", "more_body": False})
            finally:
                aclose = getattr(frames, "aclose", None)
                if aclose is not None:
                    await aclose()

        async def heartbeat(every: float, lock: asyncio.Lock) -> None:
            ping = encode_comment()
            while True:
                await asyncio.sleep(max(0.0, last_sent + every - loop.time()))
                if loop.time() - last_sent >= every and not lock.locked():
                    async with lock:
                        await send({"type": "http.response.body", "body": ping, "more_body": True})

        async def watch() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise _ClientGone

        try:
            async with asyncio.TaskGroup() as group:
                watcher = group.create_task(watch())
                beater = (
                    group.create_task(heartbeat(settings.heartbeat, lock))
                    if settings.heartbeat is not None and lock is not None
                    else None
                )
                await pump()
                watcher.cancel()
                if beater is not None:
                    beater.cancel()
        except* (_ClientGone, OSError):
            logger.debug("SSE client went away; the stream was closed")
        if self.background is not None:
            await self.background()
