"""MemoryReplayBuffer under many jobs, slow readers and resumes at the edges of its window.

The clock of the buffer module is replaced by a hand-driven one (:class:`Clock`), so TTLs run
out exactly when a test says so: nothing here waits on the wall clock.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import pytest

from cqrs._internal.sse import replay
from cqrs.integrations.fastapi import Frame, JobState, MemoryReplayBuffer
from tests.support import PATIENCE, settle

GAP = "gap"


class Clock:
    """Stands in for the ``time`` module inside ``replay``: ``monotonic()`` is ``now``."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(replay, "time", fake)
    return fake


def item(n: int, size: int = 0) -> Frame:
    return Frame("progress", json.dumps({"n": n, "pad": "x" * size}), n)


def complete(n: int) -> Frame:
    return Frame("complete", json.dumps({"type": "complete", "items": n - 1}), n)


def error(n: int) -> Frame:
    return Frame("error", json.dumps({"type": "error", "reason": "handler_failed"}), n)


async def finished_job(buffer: MemoryReplayBuffer, job_id: str, items: int, size: int = 0) -> None:
    """A job of ``items`` item frames and a ``complete`` frame."""
    await buffer.open(job_id)
    for n in range(1, items + 1):
        await buffer.append(job_id, item(n, size))
    await buffer.append(job_id, complete(items + 1))


async def collect(frames: AsyncIterator[Frame]) -> list[Frame]:
    async def run() -> list[Frame]:
        return [frame async for frame in frames]

    return await asyncio.wait_for(run(), PATIENCE)


def ids(frames: list[Frame]) -> list[int | None]:
    return [frame.id for frame in frames]


# --- bounded memory across jobs -----------------------------------------------------------


async def test_finished_jobs_past_the_total_frame_limit_are_evicted_oldest_first(
    clock: Clock,
) -> None:
    buffer = MemoryReplayBuffer(max_total_frames=100)
    for j in range(50):  # 10 frames each: 500 frames for a limit of 100
        await finished_job(buffer, f"job-{j}", 9)
        clock.now += 1
    states = [await buffer.state(f"job-{j}") for j in range(50)]
    assert states == [JobState.EXPIRED] * 40 + [JobState.DONE] * 10
    assert await collect(buffer.follow("job-49", 0)) == [*map(item, range(1, 10)), complete(10)]
    assert await collect(buffer.follow("job-0", 0)) == []
    assert (buffer.kept_frames, buffer.kept_jobs, buffer.tombstones) == (100, 10, 40)


async def test_the_byte_limit_evicts_finished_jobs_and_counts_frame_sizes() -> None:
    size = 10_000
    per_job = 2 * (size + replay.FRAME_OVERHEAD + 100)  # two frames of about 10 KB
    buffer = MemoryReplayBuffer(max_bytes=5 * per_job)
    for j in range(20):
        await buffer.open(f"job-{j}")
        await buffer.append(f"job-{j}", item(1, size))
        await buffer.append(f"job-{j}", Frame("complete", "x" * size, 2))
    kept = [j for j in range(20) if await buffer.state(f"job-{j}") is JobState.DONE]
    assert kept == list(range(20 - len(kept), 20)), "the newest jobs are the ones kept"
    assert 3 <= len(kept) <= 5
    assert buffer.kept_bytes <= buffer.max_bytes
    assert buffer.kept_frames == 2 * len(kept)
    assert {await buffer.state(f"job-{j}") for j in range(20 - len(kept))} == {JobState.EXPIRED}


async def test_running_jobs_alone_past_the_limit_trim_their_own_oldest_frames() -> None:
    buffer = MemoryReplayBuffer(max_total_frames=10)
    for job_id in ("a", "b", "c"):
        await buffer.open(job_id)
    await buffer.append("a", item(1))
    reader_a = buffer.follow("a", 0)
    assert await anext(reader_a) == item(1)
    for n in range(2, 11):
        await buffer.append("a", item(n))
    for n in range(1, 11):
        await buffer.append("b", item(n))
        await buffer.append("c", item(n))
    # ``a`` filled the limit first and keeps its frames; ``b`` and ``c`` keep their newest.
    assert buffer.kept_frames == 12  # the limit plus one frame per other running job
    assert await collect_until(buffer.follow("a", 0), 10) == list(map(item, range(1, 11)))
    b = await collect_until(buffer.follow("b", 0), 2)
    assert [(f.event, f.id) for f in b] == [(GAP, 9), ("progress", 10)]
    # A job finishing while running jobs alone fill the limit is evicted at once; its
    # reader still gets every frame up to the terminal one.
    await buffer.append("a", complete(11))
    assert await buffer.state("a") is JobState.EXPIRED
    assert await collect(reader_a) == [*map(item, range(2, 11)), complete(11)]
    assert (buffer.kept_frames, buffer.kept_jobs, buffer.tombstones) == (2, 2, 1)


async def test_a_finished_job_frees_room_before_a_running_job_is_trimmed() -> None:
    buffer = MemoryReplayBuffer(max_total_frames=10)
    await finished_job(buffer, "done", 4)  # 5 frames
    await buffer.open("running")
    for n in range(1, 9):  # 5 + 8 > 10: ``done`` goes, ``running`` keeps all 8
        await buffer.append("running", item(n))
    assert await buffer.state("done") is JobState.EXPIRED
    assert buffer.kept_frames == 8
    await buffer.append("running", complete(9))
    assert ids(await collect(buffer.follow("running", 0))) == list(range(1, 10))


async def test_expiry_by_ttl_forgets_finished_jobs_in_deadline_order(clock: Clock) -> None:
    buffer = MemoryReplayBuffer(ttl=10)
    await buffer.open("running")
    for j in range(5):
        await finished_job(buffer, f"job-{j}", 1)
        clock.now += 1  # job-j finished at 1000 + j
    clock.now = 1_000 + 12.5  # job-0..2 are past their 10 s, job-3 and job-4 are not
    assert [await buffer.state(f"job-{j}") for j in range(5)] == [JobState.EXPIRED] * 3 + [
        JobState.DONE
    ] * 2
    assert await buffer.state("running") is JobState.RUNNING
    assert (buffer.kept_jobs, buffer.kept_frames, buffer.tombstones) == (3, 4, 3)
    clock.now += 10  # the tombstones of job-0..2 (made at 1012.5) run out; job-3/4 expire
    states = [await buffer.state(f"job-{j}") for j in range(5)]
    assert states == [JobState.UNKNOWN] * 3 + [JobState.EXPIRED] * 2
    assert (buffer.kept_jobs, buffer.kept_frames, buffer.tombstones) == (1, 0, 2)


async def test_tombstones_are_capped_by_count() -> None:
    buffer = MemoryReplayBuffer(max_total_frames=2, max_tombstones=5)
    for j in range(12):
        await finished_job(buffer, f"job-{j}", 1)  # 2 frames: each new job evicts the last
    states = [await buffer.state(f"job-{j}") for j in range(12)]
    assert states == [JobState.UNKNOWN] * 6 + [JobState.EXPIRED] * 5 + [JobState.DONE]
    assert buffer.tombstones == 5


async def test_reopening_an_expired_id_starts_a_fresh_job(clock: Clock) -> None:
    buffer = MemoryReplayBuffer(ttl=1)
    await finished_job(buffer, "job", 2)
    clock.now += 2
    assert await buffer.state("job") is JobState.EXPIRED
    await buffer.open("job")
    assert await buffer.state("job") is JobState.RUNNING
    assert (buffer.kept_jobs, buffer.kept_frames, buffer.tombstones) == (1, 0, 0)


async def test_a_reader_replaying_a_job_that_expires_finishes_its_replay(clock: Clock) -> None:
    buffer = MemoryReplayBuffer(ttl=1)
    await finished_job(buffer, "job", 3)
    reader = buffer.follow("job", 0)
    first = await anext(reader)
    clock.now += 2
    assert await buffer.state("job") is JobState.EXPIRED
    rest = await collect(reader)
    assert [first, *rest] == [item(1), item(2), item(3), complete(4)]


# --- slow readers and the window --------------------------------------------------------


async def test_a_reader_that_fell_behind_gets_a_gap_then_every_kept_frame() -> None:
    max_frames = 10
    buffer = MemoryReplayBuffer(max_frames=max_frames)
    await buffer.open("job")
    reader = buffer.follow("job", 0)
    got: list[Frame] = []
    for n in range(1, 4):
        await buffer.append("job", item(n))
        got.append(await anext(reader))
    # The reader reads nothing while three windows' worth of frames are appended.
    last = 3 + 3 * max_frames
    for n in range(4, last + 1):
        await buffer.append("job", item(n))
    await buffer.append("job", complete(last + 1))
    got += await collect(reader)

    assert got[:3] == [item(1), item(2), item(3)]
    gap = got[3]
    first_kept = last + 2 - max_frames
    assert gap.event == GAP
    assert gap.id == first_kept - 1
    assert json.loads(gap.data)["first_id"] == first_kept
    assert got[4:] == [*map(item, range(first_kept, last + 1)), complete(last + 1)]
    frame_ids = [frame.id for frame in got if frame.id is not None]
    assert all(a < b for a, b in itertools.pairwise(frame_ids))
    assert got[-1].terminal
    assert not any(frame.terminal for frame in got[:-1])
    assert len(got) == 3 + 1 + max_frames


async def test_a_live_reader_that_stops_reading_mid_window_resumes_after_a_gap() -> None:
    """The reader is suspended between two frames (not waiting) while the window moves."""
    buffer = MemoryReplayBuffer(max_frames=4)
    await buffer.open("job")
    for n in range(1, 3):
        await buffer.append("job", item(n))
    reader = buffer.follow("job", 0)
    assert await anext(reader) == item(1)  # frame 2 is still unread
    for n in range(3, 20):
        await buffer.append("job", item(n))
    gap = await anext(reader)
    assert (gap.event, gap.id) == (GAP, 15)
    await buffer.append("job", complete(20))  # drops frame 16, also unread: a second gap
    rest = await collect(reader)
    assert [(f.event, f.id) for f in rest[:1]] == [(GAP, 16)]
    assert rest[1:] == [*map(item, range(17, 20)), complete(20)]


async def test_a_resume_older_than_the_window_gets_a_gap_then_the_kept_frames() -> None:
    buffer = MemoryReplayBuffer(max_frames=5)
    await finished_job(buffer, "job", 20)  # ids 1..21, 17..21 kept
    for after in (0, 1, 15):
        frames = await collect(buffer.follow("job", after))
        assert [(f.event, f.id) for f in frames[:1]] == [(GAP, 16)], after
        assert frames[1:] == [*map(item, range(17, 21)), complete(21)]
    assert await collect(buffer.follow("job", 16)) == [*map(item, range(17, 21)), complete(21)]


async def test_a_waiting_reader_that_misses_frames_while_it_is_not_scheduled() -> None:
    """Frames appended in one go (no await between) overflow the window of a waiting reader:
    it wakes up behind the window and gets a gap, not an error."""
    buffer = MemoryReplayBuffer(max_frames=3)
    await buffer.open("job")
    seen: list[Frame] = []

    async def read() -> None:
        async for frame in buffer.follow("job", 0):
            seen.append(frame)

    reader = asyncio.ensure_future(read())
    await settle()  # waiting for the first frame
    for n in range(1, 11):
        await buffer.append("job", item(n))  # never yields to the reader
    await buffer.append("job", complete(11))
    await asyncio.wait_for(reader, PATIENCE)
    assert [(f.event, f.id) for f in seen] == [
        (GAP, 8),
        ("progress", 9),
        ("progress", 10),
        ("complete", 11),
    ]


# --- resuming at and past the end --------------------------------------------------------


@pytest.mark.parametrize("after", [4, 5, 1_000])
async def test_resuming_at_or_past_the_end_of_a_finished_job_replays_its_terminal_frame(
    after: int,
) -> None:
    buffer = MemoryReplayBuffer()
    await finished_job(buffer, "job", 3)  # terminal id 4
    assert await collect(buffer.follow("job", after)) == [complete(4)]


async def test_resuming_past_the_end_of_a_failed_job_replays_its_error_frame() -> None:
    buffer = MemoryReplayBuffer()
    await buffer.open("job")
    await buffer.append("job", item(1))
    await buffer.append("job", error(2))
    assert await buffer.state("job") is JobState.FAILED
    assert await collect(buffer.follow("job", 7)) == [error(2)]


async def test_resuming_past_the_last_frame_of_a_running_job_waits_for_larger_ids() -> None:
    buffer = MemoryReplayBuffer()
    await buffer.open("job")
    for n in range(1, 4):
        await buffer.append("job", item(n))
    seen: list[Frame] = []

    async def read() -> None:
        async for frame in buffer.follow("job", 10):
            seen.append(frame)

    reader = asyncio.ensure_future(read())
    for n in range(4, 11):
        await buffer.append("job", item(n))
        await settle()
    assert seen == []
    assert not reader.done()
    await buffer.append("job", item(11))
    await buffer.append("job", complete(12))
    await asyncio.wait_for(reader, PATIENCE)
    assert seen == [item(11), complete(12)]


async def test_a_running_job_resumed_past_its_end_ends_with_its_terminal_frame() -> None:
    buffer = MemoryReplayBuffer()
    await buffer.open("job")
    await buffer.append("job", item(1))
    reader = asyncio.ensure_future(collect(buffer.follow("job", 50)))
    await settle()
    await buffer.append("job", item(2))
    await buffer.append("job", complete(3))
    assert await reader == [complete(3)]


# --- states, ids, lifecycle ---------------------------------------------------------------


async def test_a_job_ending_with_an_error_frame_is_failed_and_with_complete_done() -> None:
    buffer = MemoryReplayBuffer()
    await buffer.open("ok")
    await buffer.open("bad")
    await buffer.append("ok", complete(1))
    await buffer.append("bad", item(1))
    await buffer.append("bad", error(2))
    assert await buffer.state("ok") is JobState.DONE
    assert await buffer.state("bad") is JobState.FAILED
    assert await collect(buffer.follow("bad", 0)) == [item(1), error(2)]


async def test_frames_after_the_terminal_frame_are_ignored_and_ids_must_grow() -> None:
    buffer = MemoryReplayBuffer()
    await buffer.open("job")
    await buffer.append("job", item(1))
    await buffer.append("job", item(3))  # ids may skip
    with pytest.raises(ValueError, match=r"greater than the previous one \(3\), got 3"):
        await buffer.append("job", item(3))
    with pytest.raises(ValueError, match="got None"):
        await buffer.append("job", Frame("progress", "{}"))
    await buffer.append("job", complete(4))
    await buffer.append("job", error(5))
    assert await collect(buffer.follow("job", 0)) == [item(1), item(3), complete(4)]
    assert await collect(buffer.follow("job", 1)) == [item(3), complete(4)]
    assert await collect(buffer.follow("job", 2)) == [item(3), complete(4)]
    assert (buffer.kept_frames, await buffer.state("job")) == (3, JobState.DONE)
    with pytest.raises(KeyError, match="no open job 'other'"):
        await buffer.append("other", item(1))


async def test_gap_after_skipped_ids_names_the_first_kept_frame() -> None:
    buffer = MemoryReplayBuffer(max_frames=2)
    await buffer.open("job")
    for n in (2, 5, 9, 14):
        await buffer.append("job", item(n))
    frames = await collect_until(buffer.follow("job", 3), 3)
    assert [(f.event, f.id) for f in frames] == [(GAP, 8), ("progress", 9), ("progress", 14)]
    assert ids(await collect_until(buffer.follow("job", 5), 2)) == [9, 14]  # saw 5: no gap
    assert ids(await collect_until(buffer.follow("job", 9), 1)) == [14]


async def collect_until(frames: AsyncGenerator[Frame, None], count: int) -> list[Frame]:
    """The first ``count`` frames of a follow of a running job, then close it."""
    try:
        return [await asyncio.wait_for(anext(frames), PATIENCE) for _ in range(count)]
    finally:
        await frames.aclose()


async def test_closing_or_reopening_stops_waiting_readers_and_resets_the_totals() -> None:
    buffer = MemoryReplayBuffer()
    await buffer.open("a")
    await buffer.open("b")
    await buffer.append("a", item(1))
    await buffer.append("b", item(1))
    readers = [asyncio.ensure_future(collect(buffer.follow(j, 1))) for j in ("a", "b")]
    await settle()
    await buffer.open("a")  # a new log under the same id: the old one's readers stop
    assert await asyncio.wait_for(readers[0], PATIENCE) == []
    assert (buffer.kept_jobs, buffer.kept_frames) == (2, 1)
    await buffer.aclose()
    assert await asyncio.wait_for(readers[1], PATIENCE) == []
    assert (buffer.kept_jobs, buffer.kept_frames, buffer.kept_bytes) == (0, 0, 0)
    assert await buffer.state("b") is JobState.UNKNOWN


async def test_a_cancelled_waiting_reader_leaves_no_waiter_behind() -> None:
    buffer = MemoryReplayBuffer()
    await buffer.open("job")
    readers = [asyncio.ensure_future(collect(buffer.follow("job", 0))) for _ in range(50)]
    await settle()
    for reader in readers:
        reader.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    log: Any = buffer._logs["job"]  # pyright: ignore[reportPrivateUsage]
    assert log.waiters == set()


def test_bad_limits_are_refused_with_the_name_of_each() -> None:
    with pytest.raises(ValueError) as info:
        MemoryReplayBuffer(ttl=0, max_frames=0, max_total_frames=0, max_bytes=0, max_tombstones=-1)
    message = str(info.value)
    for name in ("ttl", "max_frames", "max_total_frames", "max_bytes", "max_tombstones"):
        assert f"{name} must be" in message
