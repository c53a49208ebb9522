"""Server-Sent Events frames: what a stream item, a start, an end or an error looks like.

Framework-free: this module only turns values into ``text/event-stream`` bytes.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, NamedTuple

import pydantic_core

__all__ = [
    "Frame",
    "Reason",
    "SSESettings",
    "encode_comment",
    "encode_frame",
    "encode_retry",
    "failure_frame",
    "gap_frame",
    "json_bytes",
    "to_json",
]


def json_bytes(value: Any) -> bytes:
    """Compact JSON of a stream item (never contains a raw newline).

    Pydantic models are encoded by their own compiled serializer; objects with ``to_dict()``
    (dataclass messages) and plain values go through pydantic's JSON encoder.
    """
    serializer: Any = getattr(value.__class__, "__pydantic_serializer__", None)
    if serializer is not None:
        encoded: bytes = serializer.to_json(value)
        return encoded
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        value = to_dict()
    return pydantic_core.to_json(value)


def to_json(value: Any) -> str:
    """:func:`json_bytes` as text."""
    return json_bytes(value).decode()


class Reason(enum.StrEnum):
    """Why a stream ended with an ``error`` frame, or why a ``gap`` frame was sent.

    The value is the ``reason`` field of the frame's JSON, for clients to branch on:

    * ``handler_failed``: the handler raised; the message is generic unless the exception is
      one the application marked safe (``SSESettings.safe_errors``) or ``expose_errors`` is on.
    * ``cancelled``: the job was cancelled (``DELETE`` or :meth:`StreamJobs.cancel`).
    * ``shutdown``: the server shut down while the stream or job was running.
    * ``buffer_unavailable``: the replay buffer stayed unreachable past its deadline.
    * ``writer_lost``: the process running the job stopped renewing it (it died).
    * ``gap``: the client fell behind the replay window; frames were skipped (``gap`` frame).
    """

    HANDLER_FAILED = "handler_failed"
    CANCELLED = "cancelled"
    SHUTDOWN = "shutdown"
    BUFFER_UNAVAILABLE = "buffer_unavailable"
    WRITER_LOST = "writer_lost"
    GAP = "gap"


class Frame(NamedTuple):
    """One SSE event: its ``event`` name, JSON ``data``, and ``id`` (None: not replayable)."""

    event: str
    data: str
    id: int | None = None

    @property
    def terminal(self) -> bool:
        """True for the frames that end a stream (``complete`` and ``error``)."""
        return self.event in ("complete", "error")


def encode_frame(frame: Frame, retry_ms: int | None = None) -> bytes:
    """The wire bytes of ``frame``: ``id:``, ``event:``, ``retry:`` and ``data:`` lines.

    Multi-line data is split into several ``data:`` lines, as the SSE format requires.
    """
    parts: list[str] = []
    if frame.id is not None:
        parts.append(f"id: {frame.id}\n")
    parts.append(f"event: {frame.event}\n")
    if retry_ms is not None:
        parts.append(f"retry: {retry_ms}\n")
    data = frame.data
    if "\n" in data or "\r" in data:
        for line in data.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
            parts.append(f"data: {line}\n")
    else:
        parts.append(f"data: {data}\n")
    parts.append("\n")
    return "".join(parts).encode()


def encode_retry(retry_ms: int) -> bytes:
    """A block that only sets the client's reconnection delay."""
    return b"retry: %d\n\n" % retry_ms


def encode_comment(text: str = "ping") -> bytes:
    """A comment line (``: text``), ignored by ``EventSource``; used as a heartbeat."""
    return f": {text}\n\n".encode()


@dataclasses.dataclass(frozen=True, slots=True)
class SSESettings:
    """How a stream is rendered as Server-Sent Events.

    * ``item_event``: the ``event:`` name of item frames (default ``"progress"``).
    * ``heartbeat``: seconds of silence after which a ``: ping`` comment is sent (keeps
      proxies from closing the connection); ``None`` disables it.
    * ``retry_ms``: the reconnection delay hint sent with the first frame; ``None`` omits it.
    * ``expose_errors``: put the exception text in ``error`` frames. Off by default: the
      client gets ``error_message`` and the exception is logged on the server.
    * ``safe_errors``: exception types (base classes included) whose message is meant for
      clients, e.g. a domain ``OrderRejected``: their ``str(exc)`` goes in the ``error`` frame
      with ``"error": <type name>``; every other exception stays the generic message.
    * ``seed_shapes``: emit the JSON shapes of the python-cqrs documentation: a ``start``
      frame ``{"type": "start", "message": start_message}``, items as
      ``{"type": "progress", "data": item}``, and ``{"type": "complete"}``. Off: items are
      the item's own JSON, ``complete`` carries ``{"items": n}``.
    * ``send_start``: send a ``start`` frame before the first item.
    """

    item_event: str = "progress"
    heartbeat: float | None = 15.0
    retry_ms: int | None = 3000
    expose_errors: bool = False
    error_message: str = "The stream failed on the server."
    seed_shapes: bool = False
    send_start: bool = True
    start_message: str = "Processing..."
    safe_errors: tuple[type[BaseException], ...] = ()

    def __post_init__(self) -> None:
        if self.heartbeat is not None and self.heartbeat <= 0:
            raise ValueError(
                f"heartbeat must be a positive number of seconds or None, got {self.heartbeat!r}"
            )
        if "\n" in self.item_event or "\r" in self.item_event:
            raise ValueError("item_event must be a single line")
        not_types = [t for t in self.safe_errors if not _is_exception_type(t)]
        if not_types:
            raise TypeError(
                f"safe_errors must hold exception classes, got {not_types!r}; pass e.g. "
                "safe_errors=(OrderRejected,)"
            )

    def start(self) -> Frame:
        """The frame sent before the first item."""
        payload: dict[str, Any] = {"type": "start", "message": self.start_message}
        return Frame("start", pydantic_core.to_json(payload).decode())

    def item(self, item: Any, event_id: int) -> Frame:
        """The frame of one stream item."""
        return Frame(self.item_event, self.item_data(item).decode(), event_id)

    def item_data(self, item: Any) -> bytes:
        """The ``data:`` JSON of one stream item."""
        data = json_bytes(item)
        return b'{"type":"progress","data":%b}' % data if self.seed_shapes else data

    def encoded_item(self, item: Any, event_id: int) -> bytes:
        """The wire bytes of one item frame, built without a :class:`Frame` (the hot path)."""
        return b"id: %d\nevent: %b\ndata: %b\n\n" % (
            event_id,
            self.item_event.encode(),
            self.item_data(item),
        )

    def complete(self, items: int, event_id: int) -> Frame:
        """The last frame of a stream that ended normally."""
        payload: dict[str, Any] = {"type": "complete", "items": items}
        return Frame("complete", pydantic_core.to_json(payload).decode(), event_id)

    def error(self, exc: BaseException, event_id: int) -> Frame:
        """The last frame of a stream whose handler raised ``exc`` (reason ``handler_failed``).

        The message is ``str(exc)`` for the ``safe_errors`` types, the exception text with
        ``expose_errors``, else ``error_message``.
        """
        payload: dict[str, Any] = {"type": "error", "reason": Reason.HANDLER_FAILED.value}
        if isinstance(exc, self.safe_errors):
            payload["message"] = str(exc) or type(exc).__name__
            payload["error"] = type(exc).__name__
        elif self.expose_errors:
            payload["message"] = f"{type(exc).__name__}: {exc}"
        else:
            payload["message"] = self.error_message
        return Frame("error", pydantic_core.to_json(payload).decode(), event_id)


def failure_frame(reason: Reason, message: str, event_id: int | None) -> Frame:
    """A terminal ``error`` frame for a stream that ended for ``reason`` (not a handler error)."""
    payload = {"type": "error", "reason": reason.value, "message": message}
    return Frame("error", pydantic_core.to_json(payload).decode(), event_id)


def gap_frame(first_id: int) -> Frame:
    """The frame a follower gets when the frames before ``first_id`` were dropped while it
    was behind: not terminal; its ``id`` is ``first_id - 1``, so a reconnect with
    ``Last-Event-ID`` resumes at the first frame still kept, and ids never go backwards."""
    payload = {
        "type": "gap",
        "reason": Reason.GAP.value,
        "first_id": first_id,
        "message": f"Frames before {first_id} were dropped; continuing from {first_id}.",
    }
    return Frame("gap", pydantic_core.to_json(payload).decode(), first_id - 1)


def _is_exception_type(value: object) -> bool:
    return isinstance(value, type) and issubclass(value, BaseException)
