"""Shared fixtures: message types and handlers used across the test suite."""

from __future__ import annotations

import asyncio
import logging

import pytest


@pytest.fixture
def cqrs_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Capture the ``cqrs`` logger from DEBUG up."""
    caplog.set_level(logging.DEBUG, logger="cqrs")
    return caplog


def other_tasks() -> set[asyncio.Task[object]]:
    """Tasks of the running loop other than the current one."""
    current = asyncio.current_task()
    return {t for t in asyncio.all_tasks() if t is not current and not t.done()}
