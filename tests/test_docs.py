"""Every complete Python block of the README and every example program runs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_programs() -> list[str]:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    return [b for b in blocks if not b.startswith("# fragment")]


@pytest.mark.parametrize("source", readme_programs())
def test_readme_program_runs(source: str, tmp_path: Path) -> None:
    script = tmp_path / "snippet.py"
    script.write_text(source)
    done = subprocess.run(
        [sys.executable, "-W", "error", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()


def test_readme_has_a_complete_program() -> None:
    assert readme_programs()


@pytest.mark.parametrize("example", sorted((ROOT / "examples").glob("*.py")), ids=lambda p: p.name)
def test_example_runs(example: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-W", "error", str(example)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()


def test_stream_orders_example_shows_both_policies_and_the_early_close() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "stream_orders.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = [line.split("  ", 1)[-1].strip() for line in done.stdout.splitlines()]
    before, concurrent, early = "\n".join(lines).split("== ")[1:]
    assert before.index("shipping email sent for A-1") < before.index("order A-1 done")
    assert concurrent.index("order A-3 done") < concurrent.index("shipping email sent for A-1")
    assert "3 notifications published" in before
    assert "3 notifications published" in concurrent
    assert early.index("handler: finally ran") < early.index("after the loop")
