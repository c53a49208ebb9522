"""FastAPI glue: an SSE response for ``mediator.stream``, a free mediator dependency, and a
router for resumable jobs."""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from typing import Any, NoReturn, TypeVar

import pydantic

from cqrs._internal._optional import require
from cqrs._internal.integrations.starlette import SSEResponse
from cqrs._internal.sse.frames import SSESettings
from cqrs._internal.sse.jobs import (
    JobExpired,
    JobNotFound,
    StreamJobs,
    TooManyJobs,
    parse_last_event_id,
)
from cqrs._internal.sse.replay import BufferUnavailable
from cqrs._internal.sse.stream import frames_of
from cqrs._internal.streaming import RequestStream

with require("fastapi", extra="fastapi", feature="cqrs.integrations.fastapi"):
    import fastapi

__all__ = [
    "JobStarted",
    "event_stream_openapi",
    "jobs_router",
    "mediator_dependency",
    "server_sent_events",
    "sse_response",
]

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


class JobStarted(pydantic.BaseModel):
    """The answer to a job's POST: its id and the URL that streams its events."""

    job_id: str
    events_url: str


_DETAIL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
}
_RETRY_AFTER: dict[str, Any] = {
    "description": "Seconds to wait before trying again.",
    "schema": {"type": "integer", "minimum": 1},
}


def _error(description: str, *, retry_after: bool = False) -> dict[str, Any]:
    """An OpenAPI response of ``{"detail": "..."}`` as JSON (never as the route's SSE type)."""
    answer: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": _DETAIL_SCHEMA}},
    }
    if retry_after:
        answer["headers"] = {"Retry-After": _RETRY_AFTER}
    return answer


_UNAVAILABLE = _error("The replay buffer is unreachable; try again later.", retry_after=True)
_START_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _error("The body could not be read as JSON (FastAPI: e.g. it is not UTF-8)."),
    429: _error(
        "This server runs its limit of jobs, or is shutting down; retry after Retry-After seconds.",
        retry_after=True,
    ),
    503: _UNAVAILABLE,
}
_EVENTS_ERRORS: dict[int | str, dict[str, Any]] = {
    400: _error("The last event id (Last-Event-ID or ?last=) is not an integer in range."),
    404: _error("No such job."),
    410: _error("The job finished and its events expired."),
    503: _UNAVAILABLE,
}


def event_stream_openapi(settings: SSESettings, description: str) -> dict[str, Any]:
    """The OpenAPI response (for ``responses={200: ...}``) of a route answering with an
    :class:`SSEResponse` rendered with ``settings``: ``text/event-stream`` whose events
    (``itemSchema``, as FastAPI documents its own SSE routes) are named ``start``,
    ``settings.item_event``, ``complete``, ``error`` or ``gap``, with JSON ``data``."""
    names = ["start", settings.item_event, "complete", "error", "gap"]
    return {
        "description": description,
        "content": {
            "text/event-stream": {
                "itemSchema": {
                    "type": "object",
                    "required": ["event", "data"],
                    "properties": {
                        "event": {"type": "string", "enum": list(dict.fromkeys(names))},
                        "data": {"type": "string", "contentMediaType": "application/json"},
                        "id": {"type": "string", "pattern": "^[0-9]+$"},
                        "retry": {"type": "integer", "minimum": 0},
                    },
                }
            }
        },
    }


_EVENTS_DESCRIPTION = (
    "The job's Server-Sent Events: `start` (first connection only), one item frame per item "
    "(`id:` 1, 2, ...; the item as JSON), then `complete`, or `error` whose JSON `reason` is "
    "one of handler_failed, cancelled, shutdown, buffer_unavailable, writer_lost, gap; a "
    "`gap` frame when frames were skipped; `: ping` comments while the job is silent."
)
_CANCEL_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: _error("No job with this id runs in this process."),
}
_BUFFER_RETRY_AFTER = 5


def jobs_router(
    jobs: StreamJobs,
    requests: Mapping[str, type[Any]],
    *,
    prefix: str = "/jobs",
    tags: list[str] | None = None,
) -> fastapi.APIRouter:
    """Routes for resumable jobs, one POST per request type (``requests`` maps a URL name,
    the job's *kind*, to its request type).

    * ``POST {prefix}/{kind}`` with the request's JSON body (validated by FastAPI: 422 with
      the field errors on a bad body) starts a job: 202 with :class:`JobStarted`
      ``{"job_id", "events_url"}``; 429 with ``Retry-After`` when the jobs refuse more
      (:class:`TooManyJobs`: the limit, or a shutdown); 503 when the replay buffer is
      unreachable; 404 naming the known kinds for any other kind.
    * ``GET {prefix}/{job_id}/events`` streams the job (``text/event-stream``, see
      :class:`SSEResponse`); resumes after the ``Last-Event-ID`` header or the ``last``
      query parameter. 400 for a bad last id, 404 for an unknown job, 410 for an expired
      one, 503 when the buffer is unreachable, all before the stream starts.
    * ``DELETE {prefix}/{job_id}`` cancels a job running in this process (204), else 404.

    The OpenAPI schema documents each of these answers.
    """
    if not requests:
        raise ValueError("jobs_router needs at least one job kind: {'kind': RequestType}")
    router = fastapi.APIRouter(prefix=prefix, tags=list(tags or ["jobs"]))
    kinds = sorted(requests)
    for name, request_type in requests.items():
        router.add_api_route(
            f"/{name}",
            _starter(jobs, request_type, prefix),
            methods=["POST"],
            status_code=202,
            response_model=JobStarted,
            responses=_START_RESPONSES,
            name=f"start_{name.replace('-', '_')}",
            summary=f"Start a {request_type.__name__} job",
        )

    async def unknown_kind(kind: str) -> NoReturn:
        raise fastapi.HTTPException(
            404,
            f"No job kind {kind!r} here; the kinds are: {', '.join(kinds)} (POST {prefix}/<kind>).",
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
        except BufferUnavailable as exc:
            raise _unavailable() from exc
        return SSEResponse(jobs.follow(job_id, after), jobs.settings)

    async def cancel(job_id: str) -> fastapi.Response:
        if not await jobs.cancel(job_id):
            raise fastapi.HTTPException(404, f"No running job {job_id!r} in this process.")
        return fastapi.Response(status_code=204)

    router.add_api_route(
        "/{job_id}/events",
        events,
        methods=["GET"],
        response_class=SSEResponse,
        responses={200: event_stream_openapi(jobs.settings, _EVENTS_DESCRIPTION), **_EVENTS_ERRORS},
        summary="Stream a job's events",
    )
    router.add_api_route(
        "/{job_id}",
        cancel,
        methods=["DELETE"],
        status_code=204,
        response_class=fastapi.Response,
        responses=_CANCEL_RESPONSES,
        summary="Cancel a running job",
    )
    # After the kinds' own routes: any other POST {prefix}/<x> is a 404 that lists them.
    router.add_api_route(
        "/{kind}", unknown_kind, methods=["POST"], response_model=None, include_in_schema=False
    )
    return router


def _unavailable() -> fastapi.HTTPException:
    return fastapi.HTTPException(
        503,
        "The job store is unreachable; try again later.",
        headers={"Retry-After": str(_BUFFER_RETRY_AFTER)},
    )


def _starter(jobs: StreamJobs, request_type: type[Any], prefix: str) -> Callable[..., Any]:
    async def start(request: Any, http: fastapi.Request) -> JobStarted:
        try:
            job_id = await jobs.start(request)
        except TooManyJobs as exc:
            seconds = max(1, math.ceil(exc.retry_after))
            raise fastapi.HTTPException(
                429, str(exc), headers={"Retry-After": str(seconds)}
            ) from exc
        except BufferUnavailable as exc:
            raise _unavailable() from exc
        return JobStarted(
            job_id=job_id,
            events_url=f"{http.scope.get('root_path', '')}{prefix}/{job_id}/events",
        )

    start.__annotations__ = {
        "request": request_type,
        "http": fastapi.Request,
        "return": JobStarted,
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
