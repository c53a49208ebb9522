"""The SSE response over mediator streams, at the ASGI level."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator, MutableMapping
from typing import Annotated, Any

import fastapi
import pytest
from fastapi.sse import EventSourceResponse

from cqrs.integrations.fastapi import (
    MAX_EVENT_ID,
    BufferUnavailable,
    Frame,
    MemoryReplayBuffer,
    SSEResponse,
    SSESettings,
    StreamJobs,
    jobs_router,
    mediator_dependency,
    server_sent_events,
    sse_response,
)
from tests.conftest import other_tasks
from tests.integration.sse_support import (
    FINALLY,
    HOLD,
    PROCESSED,
    Count,
    Message,
    client,
    make_mediator,
    parse_frames,
    watched,
)
from tests.support import PATIENCE, wait_until_async


@pytest.fixture(autouse=True)
def _clear() -> None:
    PROCESSED.clear()
    FINALLY.clear()
    HOLD.reset()


def app_with(**settings: Any) -> fastapi.FastAPI:
    app = fastapi.FastAPI()
    mediator = make_mediator()

    @app.post("/count")
    async def count(command: Count) -> Any:
        return sse_response(mediator.stream(command), **settings)

    return app


async def post(app: fastapi.FastAPI, body: dict[str, Any]) -> tuple[Any, list[dict[str, Any]]]:
    async with client(app) as http:
        response = await http.post("/count", json=body)
    return response, parse_frames(response.text)


async def test_frames_have_ids_names_json_data_retry_and_a_complete_frame() -> None:
    response, frames = await post(app_with(), {"n": 3})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    assert frames[0] == {
        "event": "start",
        "retry": "3000",
        "data": {"type": "start", "message": "Processing..."},
    }
    assert frames[1:4] == [
        {"id": str(i + 1), "event": "progress", "data": {"i": i}} for i in range(3)
    ]
    assert frames[4] == {"id": "4", "event": "complete", "data": {"type": "complete", "items": 3}}
    assert FINALLY == ["finally"]


async def test_none_items_are_skipped() -> None:
    _, frames = await post(app_with(), {"n": 3, "none_every": 2})
    assert [f["data"]["i"] for f in frames if f["event"] == "progress"] == [0, 1, 2]


async def test_seed_shapes_wrap_items_like_the_documentation() -> None:
    _, frames = await post(app_with(seed_shapes=True, item_event="message"), {"n": 2})
    assert frames[1] == {
        "id": "1",
        "event": "message",
        "data": {"type": "progress", "data": {"i": 0}},
    }


async def test_a_failing_handler_ends_with_a_safe_error_frame(
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, frames = await post(app_with(), {"n": 5, "fail_at": 2})
    assert frames[-1] == {
        "id": "3",
        "event": "error",
        "data": {
            "type": "error",
            "reason": "handler_failed",
            "message": "The stream failed on the server.",
        },
    }
    assert "password" not in str(frames)
    assert any("password" in str(r.exc_info) for r in caplog.records if r.levelno == logging.ERROR)
    assert FINALLY == ["finally"]


async def test_error_text_is_sent_only_when_the_user_opts_in() -> None:
    _, frames = await post(app_with(expose_errors=True), {"n": 5, "fail_at": 0})
    assert frames[-1]["data"]["message"].startswith("RuntimeError: secret database password")


async def test_heartbeat_comments_fill_silences() -> None:
    def release_on_a_ping_during_the_hold(message: Message) -> None:
        if HOLD.reached.is_set() and message.get("body", b"").startswith(b":"):
            HOLD.release.set()

    # The handler holds before item 1 until a heartbeat goes out: without heartbeats during
    # the silence the request never ends (and the test fails after PATIENCE).
    app = watched(app_with(heartbeat=0.05), release_on_a_ping_during_the_hold)
    async with client(app) as http:
        posting = http.post("/count", json={"n": 2, "hold_at": 1})
        response = await asyncio.wait_for(posting, PATIENCE)
    frames = parse_frames(response.text)
    progress = [i for i, f in enumerate(frames) if f.get("event") == "progress"]
    assert [frames[i]["data"]["i"] for i in progress] == [0, 1]
    assert {"comment": "ping"} in frames[progress[0] : progress[1]]


async def test_invalid_body_is_a_422_naming_the_field() -> None:
    async with client(app_with()) as http:
        response = await http.post("/count", json={"n": "many"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "n"]


async def test_client_disconnect_closes_the_handler_at_once() -> None:
    app = app_with(heartbeat=None)
    sent: list[MutableMapping[str, Any]] = []
    first_frame = asyncio.Event()
    disconnect = asyncio.Event()

    async def receive() -> dict[str, Any]:
        if not sent:
            return {
                "type": "http.request",
                "body": b'{"n": 100, "hold_at": 1}',
                "more_body": False,
            }
        await disconnect.wait()
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and b"progress" in message.get("body", b""):
            first_frame.set()

    scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "http_version": "1.1",
        "method": "POST", "scheme": "http", "path": "/count", "raw_path": b"/count",
        "query_string": b"", "root_path": "", "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
    }  # fmt: skip
    call = asyncio.create_task(app(scope, receive, send))
    await wait_until_async(first_frame.is_set, "the first progress frame to be sent")
    await wait_until_async(HOLD.reached.is_set, "the handler to hold before item 1")
    # The handler waits for a release that never comes: only the disconnect can end the call.
    disconnect.set()
    await asyncio.wait_for(call, PATIENCE)
    assert FINALLY == ["finally"]
    assert PROCESSED == [0]
    assert not any(m.get("more_body") is False for m in sent)
    assert not other_tasks()


async def test_fastapi_native_sse_endpoints_can_yield_our_events() -> None:
    app = fastapi.FastAPI()
    mediator = make_mediator()

    @app.get("/native", response_class=EventSourceResponse)
    async def native(n: int) -> Any:
        async for event in server_sent_events(mediator.stream(Count(n=n)), SSESettings()):
            yield event

    async with client(app) as http:
        response = await http.get("/native", params={"n": 2})
    frames = parse_frames(response.text)
    assert [f.get("event") for f in frames] == ["start", "progress", "progress", "complete"]
    assert frames[2]["id"] == "2"


BUILT: list[int] = []


def _counted_factory() -> Any:
    BUILT.append(1)
    return make_mediator()


MEDIATOR = mediator_dependency(_counted_factory)


async def test_mediator_dependency_builds_the_mediator_once() -> None:
    app = fastapi.FastAPI()

    @app.post("/count")
    async def count(command: Count, mediator: Annotated[Any, fastapi.Depends(MEDIATOR)]) -> Any:
        return sse_response(mediator.stream(command))

    async with client(app) as http:
        for _ in range(3):
            assert (await http.post("/count", json={"n": 1})).status_code == 200
    assert BUILT == [1]


# -- heartbeats: a ping only after `heartbeat` seconds of silence ----------------------------

QUIET_S = 3.0
BEAT_S = 0.5


def ping_times(sent: list[tuple[float, Message]]) -> list[float]:
    return [t for t, m in sent if m.get("body", b"").startswith(b": ping")]


async def quiet_call(sent: list[tuple[float, Message]]) -> list[dict[str, Any]]:
    """One POST whose handler is silent for QUIET_S after its start frame (heartbeat BEAT_S);
    every message the app sends is recorded with the loop's clock."""
    loop = asyncio.get_running_loop()
    app = watched(app_with(heartbeat=BEAT_S), lambda m: sent.append((loop.time(), m)))
    async with client(app) as http:
        response = await asyncio.wait_for(
            http.post("/count", json={"n": 1, "delay": QUIET_S}), PATIENCE
        )
    return parse_frames(response.text)


def silence(sent: list[tuple[float, Message]]) -> float:
    """Loop seconds from the start frame to the item frame."""
    bodies = [(t, m.get("body", b"")) for t, m in sent if m["type"] == "http.response.body"]
    start = next(t for t, b in bodies if b"event: start" in b)
    item = next(t for t, b in bodies if b"event: progress" in b)
    return item - start


async def test_a_silent_handler_gets_pings_at_the_heartbeat_rate_not_in_a_loop() -> None:
    sent: list[tuple[float, Message]] = []
    frames = await quiet_call(sent)
    pings = ping_times(sent)
    quiet = silence(sent)
    assert [f.get("event") for f in frames if "event" in f] == ["start", "progress", "complete"]
    # one ping per BEAT_S of silence: 6 in 3 s (fewer if the loaded machine wakes late)
    assert 3 <= len(pings) <= 8, f"{len(pings)} pings in {quiet:.2f} s"
    assert len(pings) <= quiet / BEAT_S + 1
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    assert min(gaps) >= BEAT_S * 0.9, gaps  # a ping counts as traffic


async def test_twenty_quiet_connections_ping_at_the_rate_in_total() -> None:
    logs: list[list[tuple[float, Message]]] = [[] for _ in range(20)]
    await asyncio.gather(*(quiet_call(log) for log in logs))
    totals = [len(ping_times(log)) for log in logs]
    bound = sum(silence(log) / BEAT_S + 1 for log in logs)
    assert sum(totals) <= bound, totals
    assert all(count >= 2 for count in totals), totals
    assert sum(totals) >= 20 * 3, totals


# -- a failing frame iterator ends the body cleanly -------------------------------------------


async def frames_then(failure: BaseException, *first: Frame) -> AsyncIterator[Frame]:
    for frame in first:
        yield frame
    await asyncio.sleep(0)
    raise failure


async def call_response(response: SSEResponse) -> tuple[list[Message], list[dict[str, Any]]]:
    """Run ``response`` as an ASGI app whose client never leaves; the call must return."""
    sent: list[Message] = []
    done = asyncio.Event()

    async def receive() -> Message:
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await asyncio.wait_for(response({"type": "http"}, receive, send), PATIENCE)
    done.set()
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent, parse_frames(body.decode())


@pytest.mark.parametrize(
    ("failure", "reason", "message"),
    [
        (RuntimeError("secret token 42"), "handler_failed", "The stream failed on the server."),
        (
            BufferUnavailable("redis at 10.0.0.9 is down"),
            "buffer_unavailable",
            "The event store is unavailable; try again later.",
        ),
    ],
)
async def test_a_failing_frame_iterator_ends_with_one_error_frame_and_one_log_record(
    cqrs_logs: pytest.LogCaptureFixture, failure: Exception, reason: str, message: str
) -> None:
    first = Frame("progress", '{"i":0}', 1)
    sent, frames = await call_response(SSEResponse(frames_then(failure, first), SSESettings()))
    assert frames == [
        {"id": "1", "event": "progress", "retry": "3000", "data": {"i": 0}},
        {"event": "error", "data": {"type": "error", "reason": reason, "message": message}},
    ]
    assert "secret" not in str(frames)
    assert "10.0.0.9" not in str(frames)
    assert sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}
    errors = [r for r in cqrs_logs.records if r.levelno >= logging.WARNING]
    assert [r.exc_info[1] for r in errors if r.exc_info] == [failure]
    assert len(errors) == 1


async def test_a_safe_error_from_the_frames_reaches_the_client() -> None:
    class Refused(Exception):
        pass

    settings = SSESettings(safe_errors=(Refused,))
    _, frames = await call_response(SSEResponse(frames_then(Refused("no stock for A-1")), settings))
    assert frames[-1]["data"] == {
        "type": "error",
        "reason": "handler_failed",
        "message": "no stock for A-1",
        "error": "Refused",
    }


async def test_frames_after_a_terminal_frame_are_never_sent(
    cqrs_logs: pytest.LogCaptureFixture,
) -> None:
    complete = Frame("complete", '{"type":"complete","items":0}', 1)
    more = Frame("progress", '{"i":9}', 2)
    _, frames = await call_response(
        SSEResponse(frames_then(RuntimeError("after the end"), complete, more), SSESettings())
    )
    assert [f["event"] for f in frames] == ["complete"]
    assert not [r for r in cqrs_logs.records if r.levelno >= logging.WARNING]


# -- the jobs router's answers before a stream starts ---------------------------------------


def jobs_app(jobs: StreamJobs) -> fastapi.FastAPI:
    app = fastapi.FastAPI()
    app.include_router(jobs_router(jobs, {"count": Count}))
    return app


async def test_a_start_past_the_limit_is_a_429_with_retry_after() -> None:
    jobs = StreamJobs(make_mediator, max_running=1, retry_after=2.5)
    async with client(jobs_app(jobs)) as http, jobs:
        first = await http.post("/jobs/count", json={"n": 2, "hold_at": 0})
        await wait_until_async(HOLD.reached.is_set, "the first job to hold")
        refused = await http.post("/jobs/count", json={"n": 2})
        HOLD.release.set()
        frames = parse_frames((await http.get(first.json()["events_url"])).text)
    assert first.status_code == 202
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "3"  # whole seconds, rounded up
    assert "max_running=1" in refused.json()["detail"]
    assert [f.get("event") for f in frames] == ["start", "progress", "progress", "complete"]
    assert PROCESSED == [0, 1]  # the refused job never ran


class DownBuffer(MemoryReplayBuffer):
    """A buffer whose storage stays unreachable."""

    async def open(self, job_id: str) -> None:
        raise BufferUnavailable("redis at 10.0.0.9 stayed unreachable")

    async def state(self, job_id: str) -> Any:
        raise BufferUnavailable("redis at 10.0.0.9 stayed unreachable")


async def test_an_unreachable_buffer_is_a_503_with_retry_after() -> None:
    jobs = StreamJobs(make_mediator, buffer=DownBuffer())
    async with client(jobs_app(jobs)) as http, jobs:
        start = await http.post("/jobs/count", json={"n": 1})
        events = await http.get("/jobs/some-job/events")
    for response in (start, events):
        assert response.status_code == 503
        assert int(response.headers["retry-after"]) >= 1
        assert "10.0.0.9" not in response.text
    assert PROCESSED == []
    assert jobs.running == 0


@pytest.mark.parametrize(
    ("headers", "params"),
    [
        ({"Last-Event-ID": str(MAX_EVENT_ID + 1)}, {}),
        ({}, {"last": str(MAX_EVENT_ID + 1)}),
        ({"Last-Event-ID": "9" * 5000}, {}),
        ({"Last-Event-ID": "-1"}, {}),
    ],
    ids=["header past the max", "query past the max", "5000 digits", "negative"],
)
async def test_a_last_event_id_out_of_range_is_a_400_before_any_200(
    headers: dict[str, str], params: dict[str, str]
) -> None:
    jobs = StreamJobs(make_mediator)
    starts: list[int] = []
    app = watched(
        jobs_app(jobs),
        lambda m: starts.append(m["status"]) if m["type"] == "http.response.start" else None,
    )
    async with client(app) as http, jobs:
        url = (await http.post("/jobs/count", json={"n": 1})).json()["events_url"]
        response = await http.get(url, headers=headers, params=params)
        everything = parse_frames((await http.get(url)).text)
    assert response.status_code == 400
    assert "last event id" in response.json()["detail"]
    assert starts == [202, 400, 200]
    assert [f.get("event") for f in everything] == ["start", "progress", "complete"]


def test_a_router_without_job_kinds_is_refused_when_built() -> None:
    with pytest.raises(ValueError, match="at least one job kind"):
        jobs_router(StreamJobs(make_mediator), {})
