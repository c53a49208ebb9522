"""Every complete Python block of the README and of docs/*.md, and every example program, runs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support import LONG_TEST_TIMEOUT, PATIENCE

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(LONG_TEST_TIMEOUT)  # each test runs a Python program


def programs_of(page: Path) -> list[str]:
    """The complete Python blocks of a Markdown page (blocks starting ``# fragment`` are not)."""
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), re.S)
    return [b for b in blocks if not b.startswith("# fragment")]


def readme_programs() -> list[str]:
    return programs_of(ROOT / "README.md")


def docs_programs() -> list[Any]:
    return [
        pytest.param(source, id=f"{page.stem}-{number}")
        for page in sorted((ROOT / "docs").glob("*.md"))
        for number, source in enumerate(programs_of(page), start=1)
    ]


@pytest.mark.parametrize("source", readme_programs())
def test_readme_program_runs(source: str, tmp_path: Path) -> None:
    script = tmp_path / "snippet.py"
    script.write_text(source)
    done = subprocess.run(
        [sys.executable, "-W", "error", str(script)],
        capture_output=True,
        text=True,
        timeout=PATIENCE,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()


@pytest.mark.parametrize("source", docs_programs())
def test_docs_program_runs(source: str, tmp_path: Path) -> None:
    test_readme_program_runs(source, tmp_path)


def test_readme_has_a_complete_program() -> None:
    assert readme_programs()


@pytest.mark.parametrize("example", sorted((ROOT / "examples").glob("*.py")), ids=lambda p: p.name)
def test_example_runs(example: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-W", "error", str(example)],
        capture_output=True,
        text=True,
        timeout=PATIENCE,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()


def test_stream_orders_example_shows_both_policies_and_the_early_close() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "stream_orders.py")],
        capture_output=True,
        text=True,
        timeout=PATIENCE,
        check=True,
    )
    # Each line is stamped with the milliseconds since its section began, for a person to
    # read; the test reads only the order of the lines (one process, one stdout).
    lines = [line.split(" ms  ", 1)[-1].strip() for line in done.stdout.splitlines()]
    sections: list[list[str]] = []
    for line in lines:
        if line.startswith("== "):
            sections.append([])
        elif line and sections:
            sections[-1].append(line)
    before, concurrent, early = sections
    orders = ["A-1", "A-2", "A-3"]

    def at(section: list[str], text: str) -> int:
        assert section.count(text) == 1, (text, section)
        return section.index(text)

    for section in (before, concurrent):
        assert [line for line in section if line.startswith("order ")] == [
            f"order {order} done ({n}/3)" for n, order in enumerate(orders, start=1)
        ]
        assert section[-1] == "stream finished; 3 notifications published"
    for order in orders:
        shown = f"order {order} done ({orders.index(order) + 1}/3)"
        email = f"event: shipping email sent for {order}"
        statistics = f"event: statistics updated for {order}"
        # before_item: an order's events are all done before the order is shown
        assert at(before, email) < at(before, shown)
        assert at(before, statistics) < at(before, shown)
        # concurrent: the order is shown at once, its slow email is sent in the background,
        # and the stream ends only when every email was sent
        assert at(concurrent, shown) < at(concurrent, email) < len(concurrent) - 1
        at(concurrent, statistics)
    # early close: the handler's finally runs before the code after the loop goes on
    assert [line for line in early if not line.startswith("event: ")] == [
        "order A-1 done, breaking out",
        "handler: finally ran",
        "after the loop",
    ]
