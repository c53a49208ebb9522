"""Resumable jobs over the in-memory replay buffer, at the ASGI level."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import fastapi
import pytest

from cqrs.integrations.fastapi import (
    JobState,
    MemoryReplayBuffer,
    SSESettings,
    StreamJobs,
    jobs_router,
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


def make_app(**buffer: Any) -> tuple[fastapi.FastAPI, StreamJobs]:
    jobs = StreamJobs(make_mediator, buffer=MemoryReplayBuffer(**buffer), settings=SSESettings())
    app = fastapi.FastAPI()
    app.include_router(jobs_router(jobs, {"count": Count}))
    return app, jobs


async def start(http: Any, **body: Any) -> str:
    response = await http.post("/jobs/count", json=body)
    assert response.status_code == 202
    payload = response.json()
    assert payload["events_url"] == f"/jobs/{payload['job_id']}/events"
    return str(payload["events_url"])


async def test_a_job_streams_all_frames_and_runs_once() -> None:
    app, jobs = make_app()
    async with client(app) as http, jobs:
        url = await start(http, n=3)
        frames = parse_frames((await http.get(url)).text)
        again = parse_frames((await http.get(url)).text)
    assert [f.get("event") for f in frames] == [
        "start",
        "progress",
        "progress",
        "progress",
        "complete",
    ]
    assert frames == again
    assert PROCESSED == [0, 1, 2]


@pytest.mark.parametrize("how", ["header", "query"])
async def test_resume_after_an_id_never_reruns_the_command(how: str) -> None:
    app, jobs = make_app()
    async with client(app) as http, jobs:
        url = await start(http, n=4, delay=0.01)
        if how == "header":
            response = await http.get(url, headers={"Last-Event-ID": "2"})
        else:
            response = await http.get(url, params={"last": "2"})
    frames = parse_frames(response.text)
    assert [f["id"] for f in frames] == ["3", "4", "5"]
    assert frames[0]["retry"] == "3000"
    assert frames[-1]["event"] == "complete"
    assert PROCESSED == [0, 1, 2, 3]


async def test_several_readers_follow_one_job_live() -> None:
    app, jobs = make_app()
    async with client(app) as http, jobs:
        url = await start(http, n=5, delay=0.02)
        bodies = await asyncio.gather(*(http.get(url) for _ in range(3)))
    expected = [str(i) for i in range(1, 7)]
    for body in bodies:
        assert [f["id"] for f in parse_frames(body.text) if "id" in f] == expected
    assert PROCESSED == [0, 1, 2, 3, 4]


async def test_unknown_job_is_404_and_bad_last_id_is_400() -> None:
    app, jobs = make_app()
    async with client(app) as http, jobs:
        assert (await http.get("/jobs/nope/events")).status_code == 404
        url = await start(http, n=1)
        response = await http.get(url, headers={"Last-Event-ID": "soon"})
    assert response.status_code == 400
    assert "Invalid last event id" in response.json()["detail"]


async def test_an_expired_job_is_410_and_not_before_its_ttl() -> None:
    ttl = 0.05
    app, jobs = make_app(ttl=ttl)
    sent: list[Message] = []
    async with client(watched(app, sent.append)) as http, jobs:
        url = await start(http, n=1, hold_at=0)
        await wait_until_async(HOLD.reached.is_set, "the job's handler to hold before item 0")
        before = len(sent)
        reading = asyncio.ensure_future(http.get(url))
        await wait_until_async(
            lambda: any(m["type"] == "http.response.start" for m in sent[before:]),
            "the events response of the held (running) job to send its headers",
        )
        released_at = time.monotonic()
        HOLD.release.set()
        assert (await reading).status_code == 200

        async def expired() -> Any:
            response = await http.get(url)
            # 200 while the job is kept, then 410; a 404 would mean EXPIRED was skipped.
            assert response.status_code in (200, 410), response.text
            return response if response.status_code == 410 else None

        response = await wait_until_async(expired, "the finished job to expire (410)")
        expired_at = time.monotonic()
    assert "expired" in response.json()["detail"]
    assert expired_at - released_at >= ttl, "the job expired before its ttl ran out"
    assert PROCESSED == [0]


async def test_resuming_before_the_kept_frames_gets_a_gap_then_the_rest() -> None:
    app, jobs = make_app(max_frames=2)
    async with client(app) as http, jobs:
        url = await start(http, n=5)
        await http.get(url)
        response = await http.get(url, params={"last": "1"})
    assert response.status_code == 200
    frames = parse_frames(response.text)
    assert [(f["event"], f["id"]) for f in frames] == [
        ("gap", "4"),
        ("progress", "5"),
        ("complete", "6"),
    ]
    assert frames[0]["data"] == {
        "type": "gap",
        "reason": "gap",
        "first_id": 5,
        "message": "Frames before 5 were dropped; continuing from 5.",
    }
    assert PROCESSED == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("last", ["6", "7", "9007199254740991"])
async def test_resuming_at_or_past_the_end_gets_the_terminal_frame_again(last: str) -> None:
    app, jobs = make_app()
    async with client(app) as http, jobs:
        url = await start(http, n=5)
        await http.get(url)
        response = await http.get(url, headers={"Last-Event-ID": last})
    frames = parse_frames(response.text)
    assert [(f["event"], f["id"]) for f in frames] == [("complete", "6")]
    assert frames[0]["data"] == {"type": "complete", "items": 5}
    assert PROCESSED == [0, 1, 2, 3, 4]


async def test_a_follower_that_reads_nothing_for_three_windows_gets_a_gap_then_the_end() -> None:
    max_frames = 4
    _, jobs = make_app(max_frames=max_frames)
    n = 2 + 3 * max_frames
    async with jobs:
        job_id = await jobs.start(Count(n=n, hold_at=2))
        follower = jobs.follow(job_id, 0)
        got = [await anext(follower) for _ in range(3)]  # start, items 0 and 1
        await wait_until_async(HOLD.reached.is_set, "the handler to hold before item 2")
        HOLD.release.set()  # the follower reads nothing while the job runs to its end
        await wait_until_async(lambda: jobs.running == 0, "the job to end")
        got += [frame async for frame in follower]
    first_kept = n + 2 - max_frames  # ids 1..n are items, n+1 is complete
    assert [f.event for f in got[:3]] == ["start", "progress", "progress"]
    assert [f.id for f in got[1:3]] == [1, 2]
    assert (got[3].event, got[3].id) == ("gap", first_kept - 1)
    assert [f.id for f in got[4:]] == list(range(first_kept, n + 2))
    assert [f.event for f in got[4:]] == ["progress"] * (max_frames - 1) + ["complete"]
    assert len(got) == 3 + 1 + max_frames
    assert list(range(n)) == PROCESSED


async def test_cancelling_a_job_closes_its_handler_and_ends_the_stream() -> None:
    app, jobs = make_app()
    async with client(app) as http, jobs:
        url = await start(http, n=100, hold_at=1)
        job_id = url.split("/")[2]
        await wait_until_async(HOLD.reached.is_set, "the job's handler to hold before item 1")
        assert (await http.delete(f"/jobs/{job_id}")).status_code == 204
        frames = parse_frames((await http.get(url)).text)
        assert (await http.delete(f"/jobs/{job_id}")).status_code == 404
    assert frames[-1]["data"] == {
        "type": "error",
        "reason": "cancelled",
        "message": "The job was cancelled.",
    }
    assert FINALLY == ["finally"]
    assert PROCESSED == [0]  # cancelled while held: item 1 never ran


async def test_a_failing_job_ends_with_a_safe_error_frame() -> None:
    app, jobs = make_app()
    async with client(app) as http, jobs:
        url = await start(http, n=3, fail_at=1)
        frames = parse_frames((await http.get(url)).text)
        state = await jobs.state(url.split("/")[2])
        url = await start(http, n=1)
        assert parse_frames((await http.get(url)).text)[-1]["event"] == "complete"
        done = await jobs.state(url.split("/")[2])
    assert frames[-1]["data"]["message"] == "The stream failed on the server."
    assert state is JobState.FAILED
    assert done is JobState.DONE


async def test_closing_the_jobs_ends_running_ones_and_leaves_no_task() -> None:
    app, jobs = make_app()
    async with client(app) as http:
        url = await start(http, n=100, hold_at=0)
        await wait_until_async(HOLD.reached.is_set, "the job's handler to hold before item 0")
        assert jobs.running == 1
        reading = asyncio.ensure_future(http.get(url))
        await jobs.shutdown()
        frames = parse_frames((await asyncio.wait_for(reading, PATIENCE)).text)
        await jobs.aclose()
    assert [(f["event"], f.get("id")) for f in frames] == [("start", None), ("error", "1")]
    assert frames[-1]["data"] == {
        "type": "error",
        "reason": "shutdown",
        "message": "The server is shutting down.",
    }
    assert FINALLY == ["finally"]
    assert PROCESSED == []
    assert jobs.running == 0
    assert not other_tasks()


async def test_job_ids_are_unguessable() -> None:
    app, jobs = make_app()
    async with client(app) as http, jobs:
        urls = {await start(http, n=0) for _ in range(20)}
    ids = {u.split("/")[2] for u in urls}
    assert len(ids) == 20
    assert all(len(i) >= 22 for i in ids)
