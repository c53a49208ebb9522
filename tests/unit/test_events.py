"""Event processing: policies, limits, follow-ups, failures, cancellation."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

import cqrs
from tests.conftest import other_tasks
from tests.support import HoldsEvents, Ping, Tick, make_mediator

SEEN: list[str] = []
RUNNING = {"now": 0, "peak": 0}


@pytest.fixture(autouse=True)
def _clear() -> None:
    SEEN.clear()
    RUNNING.update(now=0, peak=0)


class Fanout(HoldsEvents, cqrs.RequestHandler[Ping, None]):
    """Emits ``n`` ticks."""

    async def handle(self, request: Ping) -> None:
        self._events.extend(Tick(n=i) for i in range(request.n))


class Measured(cqrs.EventHandler[Tick]):
    async def handle(self, event: Tick) -> None:
        RUNNING["now"] += 1
        RUNNING["peak"] = max(RUNNING["peak"], RUNNING["now"])
        await asyncio.sleep(0.002)
        RUNNING["now"] -= 1
        SEEN.append(f"measured {event.n}")


class AlsoMeasured(Measured):
    pass


class FailsOnOdd(cqrs.EventHandler[Tick]):
    async def handle(self, event: Tick) -> None:
        if event.n % 2:
            raise ValueError(f"odd {event.n}")
        SEEN.append(f"even {event.n}")


class Countdown(cqrs.EventHandler[Tick]):
    """Emits a follow-up Tick(n-1) until 0."""

    def __init__(self) -> None:
        self._follow: list[cqrs.Event] = []

    @property
    def events(self) -> list[cqrs.Event]:
        return self._follow

    async def handle(self, event: Tick) -> None:
        SEEN.append(f"countdown {event.n}")
        if event.n > 0:
            self._follow.append(Tick(n=event.n - 1))


@pytest.mark.parametrize("limit", [1, 2, 3, 5])
async def test_the_limit_bounds_concurrent_handler_executions(limit: int) -> None:
    m = make_mediator(
        {Ping: Fanout},
        {Tick: [Measured, AlsoMeasured]},
        concurrent_event_handle_enable=True,
        max_concurrent_event_handlers=limit,
    )
    await m.send(Ping(n=6))
    assert RUNNING["peak"] == limit
    assert len(SEEN) == 12


async def test_sequential_mode_runs_one_handler_at_a_time_in_order() -> None:
    m = make_mediator({Ping: Fanout}, {Tick: [Measured, AlsoMeasured]})
    await m.send(Ping(n=3))
    assert RUNNING["peak"] == 1
    assert [f"measured {n}" for n in (0, 0, 1, 1, 2, 2)] == SEEN


@pytest.mark.parametrize("concurrent", [False, True])
async def test_follow_up_events_are_processed_in_both_modes(concurrent: bool) -> None:
    m = make_mediator(
        {Ping: Fanout},
        {Tick: [Countdown]},
        concurrent_event_handle_enable=concurrent,
        max_concurrent_event_handlers=4,
    )
    await m.send(Ping(n=3))
    expected = sorted(f"countdown {k}" for start in range(3) for k in range(start, -1, -1))
    assert sorted(SEEN) == expected


@pytest.mark.parametrize("concurrent", [False, True])
async def test_log_policy_logs_failures_and_handles_the_rest(
    concurrent: bool, cqrs_logs: pytest.LogCaptureFixture
) -> None:
    m = make_mediator(
        {Ping: Fanout},
        {Tick: [FailsOnOdd]},
        concurrent_event_handle_enable=concurrent,
        max_concurrent_event_handlers=3,
    )
    await m.send(Ping(n=4))
    assert sorted(SEEN) == ["even 0", "even 2"]
    errors = [r for r in cqrs_logs.records if r.levelno == logging.ERROR]
    assert len(errors) == 2
    assert all("FailsOnOdd" in r.getMessage() and r.exc_info for r in errors)


@pytest.mark.parametrize("concurrent", [False, True])
async def test_raise_policy_surfaces_errors_after_the_other_events(concurrent: bool) -> None:
    m = make_mediator(
        {Ping: Fanout},
        {Tick: [FailsOnOdd]},
        concurrent_event_handle_enable=concurrent,
        max_concurrent_event_handlers=3,
        event_failure_policy="raise",
    )
    with pytest.raises(ExceptionGroup) as info:
        await m.send(Ping(n=4))
    assert sorted(str(e) for e in info.value.exceptions) == ["odd 1", "odd 3"]
    assert sorted(SEEN) == ["even 0", "even 2"]
    with pytest.raises(ValueError, match="odd 1"):
        await m.send(Ping(n=2))


async def test_on_error_hook_sees_every_failure() -> None:
    seen: list[tuple[Any, Any, str]] = []

    async def hook(event: Any, handler: Any, exc: Exception) -> None:
        seen.append((event.n, handler, str(exc)))

    m = make_mediator({Ping: Fanout}, {Tick: [FailsOnOdd]}, on_event_error=hook)
    await m.send(Ping(n=4))
    assert seen == [(1, FailsOnOdd, "odd 1"), (3, FailsOnOdd, "odd 3")]


async def test_cancelling_send_cancels_running_event_handlers() -> None:
    started = asyncio.Event()
    finished: list[int] = []

    class Forever(cqrs.EventHandler[Tick]):
        async def handle(self, event: Tick) -> None:
            started.set()
            try:
                await asyncio.sleep(10)
            finally:
                finished.append(event.n)

    m = make_mediator(
        {Ping: Fanout},
        {Tick: [Forever]},
        concurrent_event_handle_enable=True,
        max_concurrent_event_handlers=3,
    )
    task = asyncio.create_task(m.send(Ping(n=3)))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sorted(finished) == [0, 1, 2]
    assert not other_tasks()


async def test_one_event_with_one_handler_runs_inline_without_a_task() -> None:
    tasks: list[asyncio.Task[Any] | None] = []

    class Where(cqrs.EventHandler[Tick]):
        async def handle(self, event: Tick) -> None:
            tasks.append(asyncio.current_task())

    m = make_mediator(
        {Ping: Fanout},
        {Tick: [Where]},
        concurrent_event_handle_enable=True,
        max_concurrent_event_handlers=3,
    )
    await m.send(Ping(n=1))
    assert tasks == [asyncio.current_task()]


async def test_plain_events_are_reported_not_dropped_silently(
    cqrs_logs: pytest.LogCaptureFixture,
) -> None:
    class Plain(cqrs.Event, frozen=True):
        pass

    class EmitsPlain(cqrs.RequestHandler[Ping, None]):
        @property
        def events(self) -> list[cqrs.Event]:
            return [Plain()]

        async def handle(self, request: Ping) -> None:
            return None

    await make_mediator({Ping: EmitsPlain}).send(Ping())
    assert any("Plain" in r.getMessage() and "DomainEvent" in r.getMessage()
               for r in cqrs_logs.records if r.levelno == logging.WARNING)  # fmt: skip


def test_send_strategy_with_concurrent_events_is_refused() -> None:
    with pytest.raises(ValueError, match="SEND"):
        make_mediator(
            {Ping: Fanout},
            scope_strategy=cqrs.ScopeStrategy.SEND,
            concurrent_event_handle_enable=True,
        )
