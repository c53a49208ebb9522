"""An ASGI response that sends SSE frames, and the hook that ends open streams at shutdown.

``SSEResponse`` speaks plain ASGI; it subclasses Starlette's ``StreamingResponse`` so that
FastAPI and Starlette accept it as an endpoint's return value. ``SSEShutdown`` is entered in
the application's lifespan: when the server is told to stop it ends every open
``SSEResponse`` with a ``shutdown`` frame and closes the given jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from types import FrameType
from typing import Any, Self

from cqrs._internal._optional import require
from cqrs._internal.sse.frames import (
    Frame,
    Reason,
    SSESettings,
    encode_comment,
    encode_frame,
    encode_retry,
    failure_frame,
)
from cqrs._internal.sse.jobs import StreamJobs
from cqrs._internal.sse.replay import BufferUnavailable

with require("fastapi", extra="fastapi", feature="cqrs.integrations.fastapi"):
    from starlette.responses import StreamingResponse

__all__ = ["SSEResponse", "SSEShutdown"]

logger = logging.getLogger("cqrs")

BUFFER_UNAVAILABLE_MESSAGE = "The event store is unavailable; try again later."
SHUTDOWN_MESSAGE = "The server is shutting down."
_TERMINAL = frozenset(("complete", "error"))


class _ClientGone(Exception):
    """The client closed the connection."""


class _ShuttingDown(Exception):
    """The server is shutting down: the stream ends with a ``shutdown`` frame."""


class SSEResponse(StreamingResponse):
    """A ``text/event-stream`` response over an async iterator of :class:`Frame` (or of frames
    already encoded as bytes).

    * **Disconnects**: it listens for the client's disconnect while streaming; when the client
      goes away the frame iterator is closed at once (for a mediator stream: the handler's
      generator is closed, its ``finally`` runs and its DI scope is released), without
      waiting for the next item.
    * **Heartbeats**: after ``settings.heartbeat`` seconds without a byte sent it sends a
      ``: ping`` comment; a ping counts as traffic, so a silent stream gets one ping per
      ``heartbeat`` seconds.
    * **A failing iterator**: an exception from the frames (not a disconnect) is logged once
      and ends the body with a terminal ``error`` frame: reason ``buffer_unavailable`` for
      :class:`BufferUnavailable`, else ``handler_failed`` with the message
      :meth:`SSESettings.error` chooses. Nothing reaches the ASGI server.
    * **The end**: the stream ends after its first terminal frame (``complete``/``error``).
    * **Shutdown**: while an :class:`SSEShutdown` is active on the event loop, its shutdown
      ends the response with a ``shutdown`` error frame.

    ``retry:`` goes with the first frame; headers disable caching and proxy buffering.

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
        monotonic = time.monotonic
        frames = self.frames
        retry = settings.retry_ms
        last_sent = monotonic()
        sending = False  # the pump is inside send(): that is traffic, no ping needed
        ping_sent: asyncio.Future[None] | None = None  # a ping inside send(); the pump waits
        ended = False  # a terminal frame went out: nothing but the end of the body may follow
        finished = False  # the end of the body went out

        async def finish(frame: Frame | None) -> None:
            nonlocal ended, finished
            if frame is not None and not ended:
                ended = True
                await send({"type": "http.response.body", "body": encode_frame(frame, retry),
                            "more_body": True})  # fmt: skip
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            finished = True

        async def pump() -> None:
            nonlocal retry, last_sent, sending, ended
            failed: Exception | None = None
            try:
                next_frame = frames.__anext__
                while True:
                    try:
                        frame = await next_frame()
                    except StopAsyncIteration:
                        break
                    except Exception as exc:
                        failed = exc
                        break
                    terminal = False
                    if isinstance(frame, bytes):
                        body = frame if retry is None else encode_retry(retry) + frame
                    else:
                        body = encode_frame(frame, retry)
                        terminal = frame.event in _TERMINAL
                    retry = None
                    if ping_sent is not None:
                        await ping_sent
                    sending = True
                    await send({"type": "http.response.body", "body": body, "more_body": True})
                    sending = False
                    last_sent = monotonic()
                    if terminal:
                        ended = True
                        break
            finally:
                await _close(frames)
            await finish(None if failed is None else _failure(failed, settings))

        async def heartbeat(every: float) -> None:
            nonlocal last_sent, ping_sent
            ping = {"type": "http.response.body", "body": encode_comment(), "more_body": True}
            while True:
                delay = last_sent + every - monotonic()
                if delay > 0 or sending:
                    await asyncio.sleep(delay if delay > 0 else every)
                    continue
                ping_sent = loop.create_future()
                try:
                    await send(ping)
                finally:
                    done, ping_sent = ping_sent, None
                    done.set_result(None)
                last_sent = monotonic()

        async def watch() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise _ClientGone

        async def stopped(stop: asyncio.Future[None]) -> None:
            await stop
            raise _ShuttingDown

        streams = _ACTIVE.get(loop)
        stop = None if streams is None else streams.register()
        try:
            if stop is not None and stop.done():  # the shutdown began before this response
                raise _ShuttingDown
            async with asyncio.TaskGroup() as group:
                children = [group.create_task(watch())]
                if settings.heartbeat is not None:
                    children.append(group.create_task(heartbeat(settings.heartbeat)))
                if stop is not None:
                    children.append(group.create_task(stopped(stop)))
                await pump()
                for child in children:
                    child.cancel()
        except* (_ClientGone, OSError):
            logger.debug("SSE client went away; the stream was closed")
        except* _ShuttingDown:
            await _close(frames)
            if not finished:
                await _ended_by_shutdown(finish)
        finally:
            if streams is not None and stop is not None:
                streams.unregister(stop)
        if self.background is not None:
            await self.background()


async def _close(frames: AsyncIterator[Any]) -> None:
    """Close the frame iterator (the handler's ``finally`` runs); a failure there is logged."""
    aclose: Callable[[], Any] | None = getattr(frames, "aclose", None)
    if aclose is None:
        return
    try:
        await aclose()
    except Exception as exc:
        logger.error("Closing an SSE stream's frames failed", exc_info=exc)


def _failure(exc: Exception, settings: SSESettings) -> Frame:
    """The terminal frame for frames that raised ``exc``; logs it once."""
    if isinstance(exc, BufferUnavailable):
        logger.error("SSE stream ended: the replay buffer is unavailable", exc_info=exc)
        return failure_frame(Reason.BUFFER_UNAVAILABLE, BUFFER_UNAVAILABLE_MESSAGE, None)
    logger.error("SSE stream failed; the client gets an error frame", exc_info=exc)
    return settings.error(exc, 0)._replace(id=None)


async def _ended_by_shutdown(finish: Callable[[Frame | None], Any]) -> None:
    try:
        await finish(failure_frame(Reason.SHUTDOWN, SHUTDOWN_MESSAGE, None))
    except OSError:
        logger.debug("SSE client went away during shutdown")


class _OpenStreams:
    """The SSE responses streaming on one event loop: each holds a future that is resolved
    to end it with the ``shutdown`` frame."""

    __slots__ = ("closing", "stops")

    def __init__(self) -> None:
        self.closing = False
        self.stops: set[asyncio.Future[None]] = set()

    def register(self) -> asyncio.Future[None]:
        """A new response's stop future (already resolved once the shutdown began)."""
        stop: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.closing:
            stop.set_result(None)
        self.stops.add(stop)
        return stop

    def unregister(self, stop: asyncio.Future[None]) -> None:
        """The response ended."""
        self.stops.discard(stop)

    def stop_all(self) -> None:
        """End every open response."""
        for stop in self.stops:
            if not stop.done():
                stop.set_result(None)


_ACTIVE: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _OpenStreams] = (
    weakref.WeakKeyDictionary()
)
"""The open streams of the SSEShutdown entered on each event loop (at most one)."""

_SignalHandler = Callable[[int, FrameType | None], Any]


class SSEShutdown:
    """Ends open SSE streams and running jobs with a ``shutdown`` frame when the server stops.

    Enter it in the application's lifespan::

        @contextlib.asynccontextmanager
        async def lifespan(app):
            async with SSEShutdown(jobs):
                yield

    Why not just the lifespan's exit: uvicorn (and other servers) wait for open responses to
    end *before* they run the lifespan shutdown, and an SSE stream may never end by itself.
    So on entering, it chains onto the handlers the server installed for ``signals``
    (default SIGTERM and SIGINT): on the signal it starts the shutdown, then calls the
    server's handler as before. The shutdown:

    1. refuses new streams (they get the ``shutdown`` frame at once) and new jobs
       (``StreamJobs.start`` raises ``TooManyJobs``: HTTP 429);
    2. stops the given jobs (``StreamJobs.shutdown``): each running job is cancelled, its
       handler's cleanup runs, and it ends with its own ``error`` frame with the reason
       ``shutdown``, which its followers read as their last frame; this step waits at most
       ``jobs_grace`` seconds before going on;
    3. ends every :class:`SSEResponse` still streaming on this event loop with
       ``event: error`` and ``"reason": "shutdown"`` (no id); the stream's handler is closed.

    The server then sees the connections end and stops. Leaving the context runs the
    shutdown if no signal did, waits for it, closes the jobs (``StreamJobs.aclose``: their
    buffers too), and puts back the signal handlers it replaced if they are still its own.

    * Signals are chained only in the main thread, and only onto a Python-level handler (a
      server's): with the default disposition SIGTERM kills the process at once, so there
      is nothing graceful to join. Elsewhere, call :meth:`trigger` (thread-safe) yourself.
    * One ``SSEShutdown`` per event loop: entering a second raises ``RuntimeError``.
    """

    def __init__(
        self,
        *jobs: StreamJobs,
        signals: Iterable[signal.Signals] = (signal.SIGTERM, signal.SIGINT),
        jobs_grace: float = 5.0,
    ) -> None:
        for each in jobs:
            if not isinstance(each, StreamJobs):  # pyright: ignore[reportUnnecessaryIsInstance]
                raise TypeError(f"SSEShutdown takes StreamJobs objects, got {each!r}")
        if not jobs_grace >= 0:
            raise ValueError(f"jobs_grace must be >= 0 seconds, got {jobs_grace!r}")
        self._jobs = jobs
        self._signals = tuple(signals)
        self._jobs_grace = jobs_grace
        self._loop: asyncio.AbstractEventLoop | None = None
        self._streams = _OpenStreams()
        self._task: asyncio.Task[None] | None = None
        self._jobs_stopped: asyncio.Task[None] | None = None
        self._chained: dict[signal.Signals, tuple[_SignalHandler, Any]] = {}

    @property
    def open_streams(self) -> int:
        """How many SSE responses are streaming on this loop now."""
        return len(self._streams.stops)

    @property
    def shutting_down(self) -> bool:
        """True once the shutdown has begun."""
        return self._streams.closing

    async def __aenter__(self) -> Self:
        loop = asyncio.get_running_loop()
        if self._loop is not None:
            raise RuntimeError("This SSEShutdown was already entered; make a new one.")
        if _ACTIVE.get(loop) is not None:
            raise RuntimeError(
                "An SSEShutdown is already active on this event loop; pass all the StreamJobs "
                "to one: SSEShutdown(jobs_a, jobs_b)."
            )
        self._loop = loop
        _ACTIVE[loop] = self._streams
        self._chain_signals()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            await self.shutdown()
            for jobs in self._jobs:
                try:
                    await jobs.aclose()
                except Exception as exc:
                    logger.error("Closing the jobs at shutdown failed", exc_info=exc)
        finally:
            self._unchain_signals()
            if self._loop is not None and _ACTIVE.get(self._loop) is self._streams:
                del _ACTIVE[self._loop]

    def trigger(self) -> None:
        """Start the shutdown; callable from any thread and from a signal handler."""
        loop = self._loop
        if loop is None:
            raise RuntimeError("Enter the SSEShutdown (async with) before triggering it.")
        with contextlib.suppress(RuntimeError):  # a closed loop streams nothing any more
            loop.call_soon_threadsafe(self._begin)

    async def shutdown(self) -> None:
        """Start the shutdown (if it has not begun) and wait until it is done: the streams
        ended and the jobs stopped."""
        self._begin()
        if self._task is not None:
            await asyncio.shield(self._task)
        if self._jobs_stopped is not None:
            await asyncio.shield(self._jobs_stopped)

    def _begin(self) -> None:
        if self._streams.closing:
            return
        self._streams.closing = True
        loop = asyncio.get_running_loop()
        logger.info(
            "Shutting down: %d open SSE stream(s) end with a shutdown frame",
            len(self._streams.stops),
        )
        self._jobs_stopped = loop.create_task(self._stop_jobs(), name="cqrs SSE shutdown: jobs")
        self._task = loop.create_task(self._end_streams(), name="cqrs SSE shutdown: streams")

    async def _stop_jobs(self) -> None:
        async def stop(jobs: StreamJobs) -> None:
            try:
                await jobs.shutdown()
            except Exception as exc:
                logger.error("Stopping the jobs at shutdown failed", exc_info=exc)

        await asyncio.gather(*(stop(jobs) for jobs in self._jobs))

    async def _end_streams(self) -> None:
        stopped = self._jobs_stopped
        if stopped is not None and not stopped.done():
            # Followers of this process's jobs read the jobs' own shutdown frames first.
            await asyncio.wait([stopped], timeout=self._jobs_grace)
        self._streams.stop_all()

    def _chain_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            logger.debug("SSEShutdown: not in the main thread; call trigger() at shutdown")
            return
        for signum in self._signals:
            previous = signal.getsignal(signum)
            if not callable(previous):
                continue

            def handler(
                received: int, frame: FrameType | None, previous: _SignalHandler = previous
            ) -> Any:
                self.trigger()
                return previous(received, frame)

            signal.signal(signum, handler)
            self._chained[signum] = (handler, previous)

    def _unchain_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum, (handler, previous) in self._chained.items():
            if signal.getsignal(signum) is handler:
                signal.signal(signum, previous)
        self._chained.clear()
