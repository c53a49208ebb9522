"""How many operations and repeats each row uses, for a full and a ``--quick`` run."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    """Sizes of one run of the suite."""

    send_ops: int
    """Sends per repeat (rows 1-2)."""
    send_repeats: int
    stream_items: int
    """Items per stream; one stream per repeat (rows 3-4)."""
    stream_repeats: int
    latency_runs: int
    """Streams per policy in the first-item latency rows (row 5)."""
    latency_items: int
    """Items per stream in the latency rows."""
    import_runs: int
    """Fresh interpreters per variant in the import rows (row 6)."""
    memory_items: int
    """Items streamed under tracemalloc."""
    sse_items: int
    """Items per SSE response through uvicorn (row 7)."""
    sse_requests: int
    """Responses per measurement (row 7): server CPU is read before and after them."""
    sse_rounds: int
    """Measurements of ours and of the raw response, alternating (row 7)."""
    disconnect_runs: int
    """Disconnects per variant (row 8)."""
    disconnect_wait_s: float
    """How long to wait for a ``finally`` after the disconnect before giving up (row 8)."""


FULL = Settings(
    send_ops=20_000,
    send_repeats=15,
    stream_items=10_000,
    stream_repeats=11,
    latency_runs=50,
    latency_items=3,
    import_runs=10,
    memory_items=10_000,
    sse_items=2_000,
    sse_requests=5,
    sse_rounds=25,
    disconnect_runs=20,
    disconnect_wait_s=2.0,
)

QUICK = Settings(
    send_ops=2_000,
    send_repeats=5,
    stream_items=2_000,
    stream_repeats=3,
    latency_runs=5,
    latency_items=3,
    import_runs=3,
    memory_items=2_000,
    sse_items=300,
    sse_requests=3,
    sse_rounds=3,
    disconnect_runs=5,
    disconnect_wait_s=0.5,
)
