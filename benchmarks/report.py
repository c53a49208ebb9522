"""Result rows, their targets, the printed table and the JSON file."""

from __future__ import annotations

import json
import os
import platform
import sys
import traceback
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

TargetOn = Literal["ours", "overhead", "percent", "ratio"]


@dataclass(frozen=True)
class Target:
    """A limit on ``ours``, on ``ours - baseline`` (both in the row's unit), on the overhead
    in percent of the baseline (``percent``), or on ``ours / baseline`` (``ratio``, the
    targets of ARCHITECTURE §6: absolute times move 5x between runs on a shared machine);
    ``< limit`` if strict, else ``<= limit``."""

    on: TargetOn
    limit: float
    strict: bool = False

    def met(self, ours: float, baseline: float) -> bool:
        """True when the measured value is within the limit."""
        if self.on == "ours":
            value = ours
        elif self.on == "overhead":
            value = ours - baseline
        elif self.on == "ratio":
            value = ours / baseline if baseline else float("inf")
        else:
            value = (ours - baseline) / baseline * 100 if baseline else float("inf")
        return value < self.limit if self.strict else value <= self.limit

    def describe(self, unit: str) -> str:
        """E.g. ``ours <= 1.5 µs``, ``over < 150 ms``, ``over <= 3 %`` or ``ratio <= 5x``."""
        if self.on == "ratio":
            return f"ratio {'<' if self.strict else '<='} {self.limit:g}x"
        what = "ours" if self.on == "ours" else "over"
        shown = "%" if self.on == "percent" else unit
        return f"{what} {'<' if self.strict else '<='} {self.limit:g} {shown}"


@dataclass
class Row:
    """One line of the table: ours beside its baseline, in ``unit`` per op."""

    name: str
    unit: str
    ours: float | None = None
    baseline: float | None = None
    target: Target | None = None
    note: str = ""
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict[str, Any])
    lower_bounds: tuple[str, ...] = ()
    """``"ours"`` and/or ``"baseline"`` when that value is only a lower bound (the operation
    did not finish within the time waited); shown as ``> value``, with no overhead or ratio."""

    @property
    def overhead(self) -> float | None:
        """``ours - baseline``."""
        if self.ours is None or self.baseline is None or self.lower_bounds:
            return None
        return self.ours - self.baseline

    @property
    def ratio(self) -> float | None:
        """``ours / baseline``."""
        if self.ours is None or not self.baseline or self.lower_bounds:
            return None
        return self.ours / self.baseline

    @property
    def status(self) -> str:
        """``OK``, ``MISS``, ``info`` (no target) or ``ERROR``."""
        if self.error is not None:
            return "ERROR"
        if self.target is None or self.ours is None or self.baseline is None:
            return "info"
        return "OK" if self.target.met(self.ours, self.baseline) else "MISS"

    def as_json(self) -> dict[str, Any]:
        """The row as a JSON-ready dict."""
        data = {
            "name": self.name,
            "unit": self.unit,
            "ours": self.ours,
            "baseline": self.baseline,
            "overhead": self.overhead,
            "ratio": self.ratio,
            "target": None if self.target is None else asdict(self.target),
            "target_text": "" if self.target is None else self.target.describe(self.unit),
            "status": self.status,
            "note": self.note,
            "error": self.error,
            "lower_bounds": list(self.lower_bounds),
        }
        data["details"] = self.details
        return data


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:.1f}"
    if abs(value) >= 10:
        return f"{value:.2f}"
    return f"{value:.3f}"


def _ratio(row: Row) -> str:
    ratio = row.ratio
    if ratio is None:
        return "-"
    # a target in percent needs the second decimal to be read off the table
    precise = row.target is not None and row.target.on == "percent"
    return f"{ratio:.2f}x" if precise else f"{ratio:.1f}x"


def failed_row(name: str, exc: BaseException) -> Row:
    """An ``ERROR`` row for a case that raised; the traceback goes to stderr."""
    traceback.print_exception(exc)
    return Row(name=name, unit="-", error=f"{type(exc).__name__}: {exc}")


def format_table(rows: Sequence[Row]) -> str:
    """The rows as an aligned text table; notes and errors are listed under it."""
    header = ("row", "unit", "ours", "baseline", "overhead", "ratio", "target", "status")
    lines = [header]
    for row in rows:
        lines.append(
            (
                row.name,
                row.unit,
                ("> " if "ours" in row.lower_bounds else "") + _num(row.ours),
                ("> " if "baseline" in row.lower_bounds else "") + _num(row.baseline),
                _num(row.overhead),
                _ratio(row),
                "-" if row.target is None else row.target.describe(row.unit),
                row.status,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    numeric = {2, 3, 4, 5}

    def fmt(line: tuple[str, ...]) -> str:
        cells = [
            cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i])
            for i, cell in enumerate(line)
        ]
        return " | ".join(cells).rstrip()

    out = [fmt(lines[0]), "-+-".join("-" * w for w in widths)]
    out.extend(fmt(line) for line in lines[1:])
    notes = [f"  {row.name}: {row.note}" for row in rows if row.note]
    errors = [f"  {row.name}: {row.error}" for row in rows if row.error]
    if notes:
        out += ["", "notes:", *notes]
    if errors:
        out += ["", "errors:", *errors]
    return "\n".join(out)


def environment(quick: bool) -> dict[str, Any]:
    """Where and how the suite ran."""
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "quick": quick,
    }


def write_json(path: Path, rows: Sequence[Row], quick: bool, seconds: float) -> None:
    """Write the environment and every row to ``path``."""
    payload = {
        "environment": environment(quick),
        "seconds": round(seconds, 3),
        "rows": [row.as_json() for row in rows],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
