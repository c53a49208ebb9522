"""FastAPI glue: an SSE response for ``mediator.stream``, a free mediator dependency, and a
router for resumable jobs."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from typing import Any, TypeVar

from cqrs._internal._optional import require
from cqrs._internal.integrations.starlette import SSEResponse
from cqrs._internal.sse.frames import Frame, SSESettings
from cqrs._internal.sse.jobs import (
    JobExpired,
    JobNotFound,
    StreamJobs,
    parse_last_event_id,
)
from cqrs._internal.sse.replay import ReplayGap
from cqrs._internal.sse.stream import frames_of
from cqrs._internal.streaming import RequestStream

with require("fastapi", extra="fastapi", feature="cqrs.integrations.fastapi"):
    import fastapi

__all__ = ["jobs_router", "mediator_dependency", "server_sent_events", "sse_response"]

M = TypeVar("M")


def sse_response(
    stream: RequestStream[Any], settings: SSESettings | None = None, **overrides: Any
) -> SSEResponse:
    """Serve a mediator stream as Server-Sent Events.

    ``return sse_response(mediator.stream(command))`` from an endpoint sends a ``start``
    frame, one ``progress`` frame per item (increasing ``id:``, the item as JSON), then
    ``complete``; a failing handler ends with an ``error`` frame whose message is safe (see
    :class:`SSESettings`). ``overrides`` replace single settings, e.g. ``heartbeat=5``. When
    the client disconnects, the handler is closed at once.
    """
    chosen = settings or SSESettings()
    if overrides:
        chosen = dataclasses.replace(chosen, **overrides)
    return SSEResponse(frames_of(stream, chosen, encoded=True), chosen)


def mediator_dependency(factory: Callable[[], M]) -> Callable[[], Awaitable[M]]:
    """A FastAPI dependency that builds the mediator once and then returns it.

    ``Depends(mediator_dependency(make_mediator))`` calls ``make_mediator`` on the first
    request only; the dependency is ``async``, so FastAPI runs it on the event loop instead of
    a worker thread. (A plain ``def`` factory, as in the 4.x docs, runs in the thread pool and
    rebuilds the mediator on every request.)
    """
    built: list[M] = []

    async def dependency() -> M:
        if not built:
            built.append(factory())
        return built[0]

    return dependency


def jobs_router(
    jobs: StreamJobs,
    requests: Mapping[str, type[Any]],
    *,
    prefix: str = "/jobs",
    tags: list[str] | None = None,
) -> fastapi.APIRouter:
    """Routes for resumable jobs, one POST per request type.

    * ``POST {prefix}/{name}`` with the request's JSON body (validated by FastAPI: 422 with
      the field errors on a bad body) starts a job; 202 with ``{"job_id", "events_url"}``.
    * ``GET {prefix}/{job_id}/events`` streams the job; resumes after the ``Last-Event-ID``
      header or the ``last`` query parameter. 404 for an unknown job, 410 for an expired one,
      400 for a bad last id; resuming after events the bounded buffer already dropped ends
      with an ``error`` frame.
    * ``DELETE {prefix}/{job_id}`` cancels a job running in this process (204), else 404.
    """
    router = fastapi.APIRouter(prefix=prefix, tags=list(tags or ["jobs"]))
    for name, request_type in requests.items():
        router.add_api_route(
            f"/{name}",
            _starter(jobs, request_type, prefix),
            methods=["POST"],
            status_code=202,
            name=f"start_{name.replace('-', '_')}",
            summary=f"Start a {request_type.__name__} job",
        )

    async def events(
        job_id: str,
        last: str | None = None,
        last_event_id: str | None = fastapi.Header(default=None),
    ) -> SSEResponse:
        try:
            after = parse_last_event_id(last_event_id, last)
        except ValueError as exc:
            raise fastapi.HTTPException(400, f"Invalid last event id: {exc}") from exc
        try:
            await jobs.check(job_id)
        except JobNotFound as exc:
            raise fastapi.HTTPException(404, str(exc)) from exc
        except JobExpired as exc:
            raise fastapi.HTTPException(410, str(exc)) from exc
        return SSEResponse(_gap_safe(jobs, job_id, after), jobs.settings)

    async def cancel(job_id: str) -> fastapi.Response:
        if not await jobs.cancel(job_id):
            raise fastapi.HTTPException(404, f"No running job {job_id!r} in this process.")
        return fastapi.Response(status_code=204)

    router.add_api_route("/{job_id}/events", events, methods=["GET"])
    router.add_api_route("/{job_id}", cancel, methods=["DELETE"], status_code=204)
    return router


async def _gap_safe(jobs: StreamJobs, job_id: str, after: int) -> AsyncGenerator[Frame, None]:
    """The job's frames; a replay gap ends the stream with an error frame (the HTTP status
    is already sent when the gap is found)."""
    try:
        async with contextlib.aclosing(jobs.follow(job_id, after)) as frames:
            async for frame in frames:
                yield frame
    except ReplayGap as exc:
        yield jobs.settings.error(exc, after + 1)


def _starter(jobs: StreamJobs, request_type: type[Any], prefix: str) -> Callable[..., Any]:
    async def start(request: Any, http: fastapi.Request) -> dict[str, str]:
        job_id = await jobs.start(request)
        return {
            "job_id": job_id,
            "events_url": f"{http.scope.get('root_path', '')}{prefix}/{job_id}/events",
        }

    start.__annotations__ = {
        "request": request_type,
        "http": fastapi.Request,
        "return": dict[str, str],
    }
    return start


async def server_sent_events(
    stream: RequestStream[Any], settings: SSESettings | None = None
) -> AsyncGenerator[Any, None]:
    """The frames of ``stream`` as ``fastapi.sse.ServerSentEvent`` objects (FastAPI >= 0.135).

    For endpoints written in FastAPI's own SSE style, which then handles keep-alive pings and
    disconnects itself::

        @app.get("/progress", response_class=EventSourceResponse)
        async def progress():
            async for event in server_sent_events(mediator.stream(command)):
                yield event

    Raises :class:`~cqrs.errors.MissingExtraError` (an ``ImportError``) on a FastAPI without
    ``fastapi.sse``, saying to upgrade it.
    """
    with require("fastapi>=0.135", extra="fastapi", feature="server_sent_events"):
        from fastapi.sse import ServerSentEvent

    chosen = settings or SSESettings()
    retry = chosen.retry_ms
    async with contextlib.aclosing(frames_of(stream, chosen)) as frames:
        async for frame in frames:
            yield ServerSentEvent(
                raw_data=frame.data,
                event=frame.event,
                id=None if frame.id is None else str(frame.id),
                retry=retry,
            )
            retry = None
