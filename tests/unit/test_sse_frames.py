"""Error, failure and gap frames: reason codes, safe errors, ids that never go backwards."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator

import pytest

import cqrs
from cqrs._internal.sse.frames import Reason, SSESettings, failure_frame, gap_frame
from cqrs._internal.sse.stream import frames_of
from cqrs.requests import bootstrap
from cqrs.testing import StaticContainer


class OrderRejected(Exception):
    """A domain error whose message is meant for the client."""


class OutOfStock(OrderRejected):
    """A subclass of a safe error is safe too."""


def test_an_unmarked_error_stays_generic_and_names_its_reason() -> None:
    frame = SSESettings(safe_errors=(OrderRejected,)).error(RuntimeError("db password x"), 4)
    assert frame.event == "error"
    assert frame.id == 4
    assert frame.terminal
    assert json.loads(frame.data) == {
        "type": "error",
        "reason": "handler_failed",
        "message": "The stream failed on the server.",
    }


def test_a_safe_error_and_its_subclasses_show_their_message() -> None:
    settings = SSESettings(safe_errors=(OrderRejected,))
    data = json.loads(settings.error(OutOfStock("order 7: no stock for SKU-3"), 8).data)
    assert data == {
        "type": "error",
        "reason": "handler_failed",
        "message": "order 7: no stock for SKU-3",
        "error": "OutOfStock",
    }


def test_safe_errors_must_be_exception_classes() -> None:
    with pytest.raises(TypeError, match=r"safe_errors must hold exception classes.*OrderRejected"):
        SSESettings(safe_errors=("OrderRejected",))  # type: ignore[arg-type]


def test_failure_frame_is_terminal_with_its_reason() -> None:
    frame = failure_frame(Reason.BUFFER_UNAVAILABLE, "Redis is down.", 12)
    assert frame.terminal
    assert frame.id == 12
    assert json.loads(frame.data)["reason"] == "buffer_unavailable"


def test_gap_frame_is_not_terminal_and_resumes_at_the_first_kept_frame() -> None:
    frame = gap_frame(first_id=501)
    assert not frame.terminal
    assert frame.id == 500
    assert json.loads(frame.data) == {
        "type": "gap",
        "reason": "gap",
        "first_id": 501,
        "message": "Frames before 501 were dropped; continuing from 501.",
    }


class Watch(cqrs.Request):
    """Stream one item, then fail with the error named by ``fail``."""

    fail: str


class Tick(cqrs.Response):
    n: int


class WatchHandler(cqrs.StreamingRequestHandler[Watch, Tick]):
    @property
    def events(self) -> list[cqrs.Event]:
        return []

    def clear_events(self) -> None:
        return None

    async def handle(self, request: Watch) -> AsyncIterator[Tick]:
        yield Tick(n=1)
        if request.fail == "rejected":
            raise OrderRejected("order 7 was rejected: no stock")
        raise RuntimeError("db password x")


@pytest.mark.parametrize(
    ("fail", "level", "with_traceback"),
    [("rejected", logging.INFO, False), ("crash", logging.ERROR, True)],
)
async def test_a_safe_error_is_logged_as_an_outcome_and_a_fault_with_its_traceback(
    fail: str, level: int, with_traceback: bool, caplog: pytest.LogCaptureFixture
) -> None:
    mediator = bootstrap.bootstrap_streaming(
        di_container=StaticContainer({}),
        queries_mapper=lambda mapper: mapper.bind(Watch, WatchHandler),
    )
    settings = SSESettings(safe_errors=(OrderRejected,))
    with caplog.at_level(logging.INFO, logger="cqrs"):
        frames = [f async for f in frames_of(mediator.stream(Watch(fail=fail)), settings)]
    assert [f.event for f in frames] == ["start", "progress", "error"]
    records = [r for r in caplog.records if r.name == "cqrs" and r.levelno >= logging.INFO]
    assert [r.levelno for r in records] == [level]
    assert (records[0].exc_info is not None) is with_traceback
