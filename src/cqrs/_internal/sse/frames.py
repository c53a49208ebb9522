"""Server-Sent Events frames: what a stream item, a start, an end or an error looks like.

Framework-free: this module only turns values into ``text/event-stream`` bytes.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import pydantic_core

__all__ = [
    "Frame",
    "SSESettings",
    "encode_comment",
    "encode_frame",
    "encode_retry",
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

    def __post_init__(self) -> None:
        if self.heartbeat is not None and self.heartbeat <= 0:
            raise ValueError(
                f"heartbeat must be a positive number of seconds or None, got {self.heartbeat!r}"
            )
        if "\n" in self.item_event or "\r" in self.item_event:
            raise ValueError("item_event must be a single line")

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
        """The last frame of a stream that failed; the text is safe unless ``expose_errors``."""
        message = f"{type(exc).__name__}: {exc}" if self.expose_errors else self.error_message
        payload: dict[str, Any] = {"type": "error", "message": message}
        return Frame("error", pydantic_core.to_json(payload).decode(), event_id)
