"""Error, failure and gap frames: reason codes, safe errors, ids that never go backwards."""

from __future__ import annotations

import json

import pytest

from cqrs._internal.sse.frames import Reason, SSESettings, failure_frame, gap_frame


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
