"""examples/outbox_unit_of_work.py publishes exactly the events whose transaction committed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import LONG_TEST_TIMEOUT, PATIENCE

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "outbox_unit_of_work.py"

pytestmark = pytest.mark.timeout(LONG_TEST_TIMEOUT)  # runs a Python program


def test_only_committed_orders_are_published_each_once() -> None:
    pytest.importorskip("aiosqlite", reason="the sqlalchemy extra is not installed")
    done = subprocess.run(
        [sys.executable, "-W", "error", str(EXAMPLE)],
        capture_output=True,
        text=True,
        timeout=PATIENCE,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    committed = sorted(
        match.group(1) for line in lines if (match := re.fullmatch(r".* (\S+): committed", line))
    )
    rolled_back = [line for line in lines if ": rolled back (card declined" in line]
    published = [
        line.removeprefix("published: order_placed ") for line in lines if "published:" in line
    ]
    assert committed == ["A-1", "B-1", "B-3"]
    assert len(rolled_back) == 2  # the declined command and the declined stream item
    assert sorted(published) == committed  # every committed order once, nothing else
    assert (
        lines[-1] == "3 events published, 3 orders stored, 3 outbox rows, 0 waiting to be published"
    )
