"""The SSE response over mediator streams, at the ASGI level."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import MutableMapping
from typing import Annotated, Any

import fastapi
import pytest
from fastapi.sse import EventSourceResponse

from cqrs.integrations.fastapi import (
    SSESettings,
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
