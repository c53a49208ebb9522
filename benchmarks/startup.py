"""Row 6: the cost of ``import cqrs`` in a fresh interpreter.

Each variant runs ``runs`` times in a new ``python`` process (the one running the suite);
the best wall time of each is kept, and the interpreter's own start-up (``python -c pass``)
is the baseline, so ``overhead`` is what the import adds. ``python -X importtime`` gives the
self-reported cumulative import time of ``cqrs`` as a detail.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time

from benchmarks.report import Row, Target

FIRST_USE = (
    "import cqrs\n"
    "from cqrs.requests import bootstrap\n"
    "cqrs.Request, cqrs.Response, cqrs.DomainEvent, cqrs.RequestHandler, cqrs.EventHandler\n"
)
"""What a service touches before its first request (pulls pydantic and the mediators)."""


def _wall_ms(code: str) -> float:
    start = time.perf_counter_ns()
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    return (time.perf_counter_ns() - start) / 1e6


def _best_of(codes: tuple[str, ...], runs: int) -> list[float]:
    """Best wall time (ms) of each code, running the codes in turn ``runs`` times."""
    best = [float("inf")] * len(codes)
    for _ in range(runs):
        for i, code in enumerate(codes):
            best[i] = min(best[i], _wall_ms(code))
    return best


def _importtime_ms(module: str) -> float | None:
    """Cumulative import time of ``module`` as reported by ``-X importtime``, in ms."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        check=True,
        capture_output=True,
        text=True,
    )
    pattern = re.compile(rf"^import time:\s+\d+\s+\|\s+(\d+)\s+\|\s*{re.escape(module)}\s*$")
    for line in done.stderr.splitlines():
        match = pattern.match(line)
        if match:
            return int(match.group(1)) / 1000
    return None


def import_rows(runs: int) -> list[Row]:
    """``import cqrs`` (target: < 150 ms over the interpreter) and first use (report only)."""
    interpreter, bare, first_use = _best_of(("pass", "import cqrs", FIRST_USE), runs)
    note = f"best of {runs} fresh processes; baseline = python -c pass"
    return [
        Row(
            name="import cqrs",
            unit="ms",
            ours=bare,
            baseline=interpreter,
            target=Target("overhead", 150.0, strict=True),
            note=note,
            details={"importtime_cumulative_ms": _importtime_ms("cqrs")},
        ),
        Row(
            name="import cqrs + first use",
            unit="ms",
            ours=first_use,
            baseline=interpreter,
            note="also imports cqrs.requests.bootstrap and the message/handler base classes",
        ),
    ]
