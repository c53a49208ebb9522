"""StreamJobs when the buffer fails, when too many jobs start, and at shutdown.

The buffers here are real in-memory buffers (subclasses of MemoryReplayBuffer) that fail on
command: ``FlakyBuffer`` makes appends, follows or state reads raise. The handler awaits in
its ``finally``, so a test sees whether the job engine waited for the cleanup to finish.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import di
import fastapi
import pytest

import cqrs
from cqrs.integrations.fastapi import (
    BufferUnavailable,
    Frame,
    JobState,
    MemoryReplayBuffer,
    ReplayGap,
    SSESettings,
    StreamJobs,
    TooManyJobs,
    jobs_router,
)
from cqrs.requests import bootstrap
from tests.integration.sse_support import client, parse_frames
from tests.support import PATIENCE, settle, wait_until_async

# --- a handler that awaits in its finally ---------------------------------------------------

TRACE: list[str] = []
"""What happened, in order: ``started``, ``item i``, ``finally`` (after the handler's
``finally`` awaited), and ``stored <event> <reason>`` for each terminal frame appended."""


class Gate:
    """Where ``Steps`` handlers with ``hold_at`` wait: ``held`` counts them, ``release``
    lets them all go on."""

    def __init__(self) -> None:
        self.held = 0
        self.release = asyncio.Event()


GATE = Gate()


class Steps(cqrs.Request):
    n: int
    hold_at: int | None = None


class Step(cqrs.Response):
    i: int


class StepsHandler(cqrs.StreamingRequestHandler[Steps, Step]):
    def clear_events(self) -> None:
        pass

    async def handle(self, request: Steps) -> AsyncIterator[Step]:  # pyright: ignore[reportIncompatibleMethodOverride]
        TRACE.append("started")
        try:
            for i in range(request.n):
                if request.hold_at == i:
                    GATE.held += 1
                    await GATE.release.wait()
                TRACE.append(f"item {i}")
                yield Step(i=i)
        finally:
            await asyncio.sleep(0)
            await asyncio.sleep(0.001)
            TRACE.append("finally")


def make_mediator() -> cqrs.StreamingRequestMediator:
    def commands(mapper: cqrs.RequestMap) -> None:
        mapper.bind(Steps, StepsHandler)

    return bootstrap.bootstrap_streaming(di_container=di.Container(), commands_mapper=commands)


@pytest.fixture(autouse=True)
def _reset() -> None:
    global GATE
    TRACE.clear()
    GATE = Gate()


# --- buffers that fail on command -----------------------------------------------------------


class FlakyBuffer(MemoryReplayBuffer):
    """A MemoryReplayBuffer whose appends, follows or state reads raise when told to.

    * ``fail_appends(from_id, times, error)``: the next ``times`` appends of a frame with an
      id >= ``from_id`` raise ``error`` (the frame is not stored).
    * ``fail_follows(after_frames, error)``: each follow raises ``error`` after yielding
      ``after_frames`` frames.
    * ``fail_states(error)``: :meth:`state` raises.
    """

    def __init__(self, **limits: Any) -> None:
        super().__init__(**limits)
        self.append_from: int | None = None
        self.append_failures = 0
        self.append_error: Exception = BufferUnavailable("redis down")
        self.follow_after: int | None = None
        self.follow_error: Exception = BufferUnavailable("redis down")
        self.state_error: Exception | None = None
        self.opened = 0
        self.failed_appends: list[int | None] = []

    def fail_appends(self, from_id: int, times: int, error: Exception) -> None:
        self.append_from, self.append_failures, self.append_error = from_id, times, error

    def fail_follows(self, after_frames: int, error: Exception) -> None:
        self.follow_after, self.follow_error = after_frames, error

    async def open(self, job_id: str) -> None:
        self.opened += 1
        await super().open(job_id)

    async def append(self, job_id: str, frame: Frame) -> None:
        start = self.append_from
        if start is not None and (frame.id or 0) >= start and self.append_failures > 0:
            self.append_failures -= 1
            self.failed_appends.append(frame.id)
            raise self.append_error
        await super().append(job_id, frame)
        if frame.terminal:
            TRACE.append(f"stored {frame.event} {json.loads(frame.data).get('reason')}")

    async def state(self, job_id: str) -> JobState:
        if self.state_error is not None:
            raise self.state_error
        return await super().state(job_id)

    async def follow(self, job_id: str, after: int) -> AsyncGenerator[Frame, None]:
        yielded = 0
        async with _closing(super().follow(job_id, after)) as frames:
            async for frame in frames:
                if self.follow_after is not None and yielded >= self.follow_after:
                    raise self.follow_error
                yielded += 1
                yield frame
        if self.follow_after is not None and yielded >= self.follow_after:
            raise self.follow_error


class _closing:
    """``contextlib.aclosing`` for an async generator (kept local for pyright's sake)."""

    def __init__(self, agen: AsyncGenerator[Frame, None]) -> None:
        self.agen = agen

    async def __aenter__(self) -> AsyncGenerator[Frame, None]:
        return self.agen

    async def __aexit__(self, *exc_info: object) -> None:
        await self.agen.aclose()


class LegacyBuffer(FlakyBuffer):
    """Follows as buffers of the earlier contract did: nothing for a resume at or past the
    end, and :class:`ReplayGap` (with or without ``first_id``) instead of a gap frame."""

    def __init__(self, *, gap_first_id: bool, **limits: Any) -> None:
        super().__init__(**limits)
        self.gap_first_id = gap_first_id
        self.follows = 0

    async def follow(self, job_id: str, after: int) -> AsyncGenerator[Frame, None]:
        self.follows += 1
        async with _closing(super().follow(job_id, after)) as frames:
            async for frame in frames:
                if frame.event == "gap":
                    first = json.loads(frame.data)["first_id"]
                    raise ReplayGap(
                        f"frames after {after} are gone",
                        first_id=first if self.gap_first_id else None,
                    )
                if (frame.id or 0) <= after:
                    return  # the old contract: nothing at or past the end
                yield frame


def make_jobs(buffer: MemoryReplayBuffer | None = None, **options: Any) -> StreamJobs:
    return StreamJobs(
        make_mediator, buffer=buffer or FlakyBuffer(), settings=SSESettings(), **options
    )


async def read_all(frames: AsyncIterator[Frame]) -> list[Frame]:
    async def run() -> list[Frame]:
        return [frame async for frame in frames]

    return await asyncio.wait_for(run(), PATIENCE)


def shape(frames: list[Frame]) -> list[tuple[str, int | None, str | None]]:
    """(event, id, reason) of each frame."""
    return [(f.event, f.id, json.loads(f.data).get("reason")) for f in frames]


def problems(logs: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in logs.records if r.name == "cqrs" and r.levelno >= logging.WARNING]


async def until_ended(jobs: StreamJobs) -> None:
    await wait_until_async(lambda: jobs.running == 0, "every job task to end")


# --- the job side of buffer faults (§2) -------------------------------------------------------


async def test_an_append_that_fails_closes_the_handler_at_once_and_ends_the_job(
    cqrs_logs: pytest.LogCaptureFixture,
) -> None:
    tasks_before = len(asyncio.all_tasks())
    buffer = FlakyBuffer()
    buffer.fail_appends(from_id=3, times=1, error=BufferUnavailable("redis down past 30 s"))
    jobs = make_jobs(buffer)
    job_id = await jobs.start(Steps(n=1_000))
    await until_ended(jobs)

    assert TRACE == [
        "started",
        "item 0",
        "item 1",
        "item 2",
        "finally",
        "stored error buffer_unavailable",
    ]
    frames = await read_all(jobs.follow(job_id, 0))
    assert shape(frames) == [
        ("start", None, None),
        ("progress", 1, None),
        ("progress", 2, None),
        ("error", 4, "buffer_unavailable"),  # 3 may or may not have been stored: skipped
    ]
    assert await jobs.state(job_id) is JobState.FAILED
    assert buffer.failed_appends == [3]
    [record] = problems(cqrs_logs)
    assert record.levelno == logging.ERROR
    assert job_id in record.getMessage()
    assert "redis down past 30 s" in record.getMessage()
    assert record.exc_info is None
    await jobs.aclose()
    assert len(asyncio.all_tasks()) == tasks_before


async def test_an_append_that_never_recovers_ends_the_job_and_logs_once(
    cqrs_logs: pytest.LogCaptureFixture,
) -> None:
    tasks_before = len(asyncio.all_tasks())
    buffer = FlakyBuffer()
    buffer.fail_appends(from_id=1, times=10**9, error=BufferUnavailable("redis down"))
    jobs = make_jobs(buffer)
    job_id = await jobs.start(Steps(n=1_000))
    await until_ended(jobs)

    assert TRACE == ["started", "item 0", "finally"]
    assert buffer.failed_appends == [1, 2]  # the frame, then the best-effort error frame
    assert await jobs.state(job_id) is JobState.RUNNING  # nothing could be recorded
    assert len(problems(cqrs_logs)) == 1
    assert jobs.running == 0
    assert len(asyncio.all_tasks()) == tasks_before
    await jobs.aclose()
    assert buffer.failed_appends == [1, 2], "aclose must not retry a job that already ended"


async def test_an_unexpected_append_error_is_logged_once_with_its_traceback(
    cqrs_logs: pytest.LogCaptureFixture,
) -> None:
    buffer = FlakyBuffer()
    buffer.fail_appends(from_id=2, times=1, error=OSError("disk full"))
    jobs = make_jobs(buffer)
    job_id = await jobs.start(Steps(n=50))
    await until_ended(jobs)

    assert TRACE == ["started", "item 0", "item 1", "finally", "stored error buffer_unavailable"]
    [record] = problems(cqrs_logs)
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], OSError)
    frames = await read_all(jobs.follow(job_id, 1))
    assert shape(frames) == [("error", 3, "buffer_unavailable")]
    await jobs.aclose()


@pytest.mark.parametrize(
    "error",
    [
        BufferUnavailable("redis down"),
        ConnectionResetError("reset"),
        KeyError("gone"),
        RuntimeError("bug"),
    ],
    ids=["unavailable", "connection", "key", "runtime"],
)
@pytest.mark.parametrize("after_frames", [0, 2])
async def test_a_follow_that_fails_ends_with_an_error_frame_and_no_exception(
    cqrs_logs: pytest.LogCaptureFixture, error: Exception, after_frames: int
) -> None:
    buffer = FlakyBuffer()
    jobs = make_jobs(buffer)
    job_id = await jobs.start(Steps(n=5))
    await until_ended(jobs)
    buffer.fail_follows(after_frames, error)

    frames = await read_all(jobs.follow(job_id, 0))  # raises if anything escapes

    assert shape(frames) == [
        ("start", None, None),
        *(("progress", n, None) for n in range(1, after_frames + 1)),
        ("error", None, "buffer_unavailable"),
    ]
    assert json.loads(frames[-1].data)["message"] == (
        "The job's events cannot be read right now; reconnect later."
    )
    [record] = problems(cqrs_logs)
    assert record.levelno == logging.WARNING
    assert record.exc_info is None
    assert job_id in record.getMessage()
    await jobs.aclose()


async def test_a_live_follower_whose_buffer_fails_gets_an_error_frame() -> None:
    tasks_before = len(asyncio.all_tasks())
    buffer = FlakyBuffer()
    jobs = make_jobs(buffer)
    job_id = await jobs.start(Steps(n=3, hold_at=1))
    await wait_until_async(lambda: GATE.held == 1, "the handler to hold before item 1")
    seen: list[Frame] = []

    async def follow() -> None:
        async for frame in jobs.follow(job_id, 0):
            seen.append(frame)

    follower = asyncio.ensure_future(follow())
    await wait_until_async(lambda: len(seen) == 2, "the follower to get start and item 1")
    buffer.fail_follows(0, BufferUnavailable("redis down"))
    GATE.release.set()
    await asyncio.wait_for(follower, PATIENCE)
    assert shape(seen) == [
        ("start", None, None),
        ("progress", 1, None),
        ("error", None, "buffer_unavailable"),
    ]
    await jobs.aclose()
    assert len(asyncio.all_tasks()) == tasks_before


async def test_over_http_a_failing_follow_is_a_200_that_ends_with_an_error_frame(
    cqrs_logs: pytest.LogCaptureFixture,
) -> None:
    buffer = FlakyBuffer()
    jobs = make_jobs(buffer)
    app = fastapi.FastAPI()
    app.include_router(jobs_router(jobs, {"steps": Steps}))
    async with client(app) as http, jobs:
        started = await http.post("/jobs/steps", json={"n": 4})
        url = started.json()["events_url"]
        await until_ended(jobs)
        buffer.fail_follows(1, BufferUnavailable("redis down"))
        response = await http.get(url)  # an exception in the app would raise here
    assert response.status_code == 200
    frames = parse_frames(response.text)
    assert [(f["event"], f.get("id")) for f in frames] == [
        ("start", None),
        ("progress", "1"),
        ("error", None),
    ]
    assert frames[-1]["data"]["reason"] == "buffer_unavailable"
    assert len(problems(cqrs_logs)) == 1


# --- buffers of the earlier contract ---------------------------------------------------------


@pytest.mark.parametrize("after", [6, 7, 500])
async def test_a_resume_past_the_end_gets_the_terminal_frame_from_any_buffer(after: int) -> None:
    buffer = LegacyBuffer(gap_first_id=True)
    jobs = make_jobs(buffer)
    job_id = await jobs.start(Steps(n=5))
    await until_ended(jobs)
    frames = await read_all(jobs.follow(job_id, after))
    assert shape(frames) == [("complete", 6, None)]
    await jobs.aclose()


async def test_a_replay_gap_with_first_id_becomes_a_gap_frame_and_the_follow_goes_on() -> None:
    buffer = LegacyBuffer(gap_first_id=True, max_frames=3)
    jobs = make_jobs(buffer)
    job_id = await jobs.start(Steps(n=10))
    await until_ended(jobs)
    frames = await read_all(jobs.follow(job_id, 2))
    assert shape(frames) == [
        ("gap", 8, "gap"),
        ("progress", 9, None),
        ("progress", 10, None),
        ("complete", 11, None),
    ]
    assert buffer.follows == 2
    await jobs.aclose()


async def test_a_replay_gap_without_first_id_ends_with_a_gap_error_frame(
    cqrs_logs: pytest.LogCaptureFixture,
) -> None:
    buffer = LegacyBuffer(gap_first_id=False, max_frames=3)
    jobs = make_jobs(buffer)
    job_id = await jobs.start(Steps(n=10))
    await until_ended(jobs)
    frames = await read_all(jobs.follow(job_id, 2))
    assert shape(frames) == [("error", None, "gap")]
    assert len(problems(cqrs_logs)) == 1
    await jobs.aclose()


async def test_a_state_error_after_a_follow_without_end_becomes_an_error_frame() -> None:
    buffer = LegacyBuffer(gap_first_id=True)
    jobs = make_jobs(buffer)
    job_id = await jobs.start(Steps(n=2))
    await until_ended(jobs)
    buffer.state_error = BufferUnavailable("redis down")
    frames = await read_all(jobs.follow(job_id, 9))
    buffer.state_error = None
    assert shape(frames) == [("error", None, "buffer_unavailable")]
    await jobs.aclose()


# --- the limit on running jobs -------------------------------------------------------------


class GatedOpen(FlakyBuffer):
    """``open`` waits until ``gate`` is set, so that concurrent starts overlap."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.waiting = 0

    async def open(self, job_id: str) -> None:
        self.waiting += 1
        await self.gate.wait()
        await super().open(job_id)


async def test_starts_past_max_running_are_refused_before_anything_runs() -> None:
    buffer = GatedOpen()
    jobs = make_jobs(buffer, max_running=2, retry_after=7.5)
    starts = [asyncio.ensure_future(jobs.start(Steps(n=3, hold_at=0))) for _ in range(5)]
    await settle()
    assert buffer.waiting == 2, "the 3 refused starts must not reach the buffer"
    buffer.gate.set()
    outcomes = await asyncio.gather(*starts, return_exceptions=True)

    started = [o for o in outcomes if isinstance(o, str)]
    refused = [o for o in outcomes if isinstance(o, TooManyJobs)]
    assert (len(started), len(refused)) == (2, 3)
    assert {o.retry_after for o in refused} == {7.5}
    assert "limit of 2 jobs" in str(refused[0])
    assert "max_running" in str(refused[0])
    assert "retry after 7.5 s" in str(refused[0])
    await wait_until_async(lambda: GATE.held == 2, "both admitted handlers to hold")
    assert TRACE.count("started") == 2
    assert buffer.opened == 2
    with pytest.raises(TooManyJobs):
        await jobs.start(Steps(n=1))
    GATE.release.set()
    await until_ended(jobs)
    third = await jobs.start(Steps(n=1))  # room again once the jobs ended
    await until_ended(jobs)
    assert await jobs.state(third) is JobState.DONE
    assert TRACE.count("started") == 3
    await jobs.aclose()


async def test_a_start_that_overlaps_the_shutdown_is_refused_and_its_log_ended() -> None:
    buffer = GatedOpen()
    jobs = make_jobs(buffer)
    starting = asyncio.ensure_future(jobs.start(Steps(n=3)))
    await wait_until_async(lambda: buffer.waiting == 1, "the start to wait in open")
    await jobs.shutdown()
    buffer.gate.set()
    with pytest.raises(TooManyJobs, match="shutting down"):
        await starting
    [job_id] = list(buffer._logs)  # pyright: ignore[reportPrivateUsage]
    assert await jobs.state(job_id) is JobState.FAILED
    assert shape(await read_all(jobs.follow(job_id, 0))) == [
        ("start", None, None),
        ("error", 1, "shutdown"),
    ]
    assert TRACE == ["stored error shutdown"]  # the handler never ran
    assert jobs.running == 0
    await jobs.aclose()


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="max_running must be >= 1, got 0"):
        StreamJobs(make_mediator, max_running=0)
    with pytest.raises(ValueError, match="retry_after must be > 0 seconds"):
        StreamJobs(make_mediator, retry_after=0)


# --- shutdown (§10) ------------------------------------------------------------------------


async def test_aclose_ends_running_jobs_with_a_shutdown_frame_after_their_cleanup() -> None:
    tasks_before = len(asyncio.all_tasks())
    buffer = FlakyBuffer()
    jobs = make_jobs(buffer)
    ids = [await jobs.start(Steps(n=10, hold_at=2)) for _ in range(2)]
    await wait_until_async(lambda: GATE.held == 2, "both handlers to hold before item 2")
    seen: dict[str, list[Frame]] = {job_id: [] for job_id in ids}

    async def follow(job_id: str) -> None:
        async for frame in jobs.follow(job_id, 0):
            seen[job_id].append(frame)

    followers = [asyncio.ensure_future(follow(job_id)) for job_id in ids]
    await wait_until_async(
        lambda: all(len(frames) == 3 for frames in seen.values()), "start, item 1, item 2"
    )
    await jobs.aclose()
    await asyncio.wait_for(asyncio.gather(*followers), PATIENCE)

    for job_id in ids:
        assert shape(seen[job_id]) == [
            ("start", None, None),
            ("progress", 1, None),
            ("progress", 2, None),
            ("error", 3, "shutdown"),
        ]
        assert json.loads(seen[job_id][-1].data)["message"] == "The server is shutting down."
    # Each job's shutdown frame was stored after its handler's (awaiting) finally ended:
    # at no point are more frames stored than finally blocks ended.
    finished = stored = 0
    for entry in TRACE:
        finished += entry == "finally"
        stored += entry == "stored error shutdown"
        assert stored <= finished, TRACE
    assert (finished, stored) == (2, 2)
    assert jobs.running == 0
    await jobs.aclose()  # idempotent
    with pytest.raises(TooManyJobs, match="shutting down"):
        await jobs.start(Steps(n=1))
    assert TRACE.count("started") == 2
    assert len(asyncio.all_tasks()) == tasks_before


async def test_shutdown_keeps_the_buffer_open_and_cancel_keeps_its_reason() -> None:
    jobs = make_jobs()
    cancelled = await jobs.start(Steps(n=10, hold_at=1))
    running = await jobs.start(Steps(n=10, hold_at=1))
    await wait_until_async(lambda: GATE.held == 2, "both handlers to hold")
    assert await jobs.cancel(cancelled)
    await asyncio.gather(jobs.shutdown(), jobs.shutdown())  # concurrent calls are fine
    assert await jobs.state(cancelled) is JobState.FAILED
    assert await jobs.state(running) is JobState.FAILED
    assert shape(await read_all(jobs.follow(cancelled, 1))) == [("error", 2, "cancelled")]
    assert shape(await read_all(jobs.follow(running, 1))) == [("error", 2, "shutdown")]
    assert TRACE.count("finally") == 2
    assert TRACE.count("stored error shutdown") == 1
    assert TRACE.count("stored error cancelled") == 1
    assert not await jobs.cancel(running)
    await jobs.aclose()


async def test_a_job_stopped_before_its_task_ever_ran_still_gets_its_end_frame() -> None:
    jobs = make_jobs()
    job_id = await jobs.start(Steps(n=3))
    await jobs.shutdown()  # no await in between let the job's task take a step
    assert TRACE == ["stored error shutdown"]  # the handler never started
    assert await jobs.state(job_id) is JobState.FAILED
    assert shape(await read_all(jobs.follow(job_id, 0))) == [
        ("start", None, None),
        ("error", 1, "shutdown"),
    ]
    await jobs.aclose()


async def test_shutdown_with_grace_lets_jobs_finish_on_their_own() -> None:
    jobs = make_jobs()
    job_id = await jobs.start(Steps(n=3, hold_at=1))
    await wait_until_async(lambda: GATE.held == 1, "the handler to hold")
    stopping = asyncio.ensure_future(jobs.shutdown(grace=PATIENCE))
    await settle()
    with pytest.raises(TooManyJobs):
        await jobs.start(Steps(n=1))
    GATE.release.set()
    await asyncio.wait_for(stopping, PATIENCE)
    assert await jobs.state(job_id) is JobState.DONE
    assert TRACE == ["started", "item 0", "item 1", "item 2", "finally", "stored complete None"]
    await jobs.aclose()


async def test_a_job_cancelled_from_outside_ends_as_a_shutdown() -> None:
    """A job task cancelled by someone else (the event loop closing) records ``shutdown``."""
    jobs = make_jobs()
    job_id = await jobs.start(Steps(n=5, hold_at=0))
    await wait_until_async(lambda: GATE.held == 1, "the handler to hold")
    [task] = [t for t in asyncio.all_tasks() if t.get_name() == f"cqrs job {job_id}"]
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert shape(await read_all(jobs.follow(job_id, 0))) == [
        ("start", None, None),
        ("error", 1, "shutdown"),
    ]
    assert TRACE == ["started", "finally", "stored error shutdown"]
    await jobs.aclose()
