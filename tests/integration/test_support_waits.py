"""The shared readiness wait of the test suite (``tests.support.wait_until``): it polls until
the thing happened, retries only what it is told to, and fails naming what it waited for."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from tests.support import PATIENCE, wait_until, wait_until_async


def test_returns_the_first_truthy_answer() -> None:
    answers = iter([None, 0, "", "ready", "later"])
    assert wait_until(lambda: next(answers), "an answer", every=0.001) == "ready"
    assert next(answers) == "later"  # no check after the first truthy answer


def test_retries_the_given_errors_and_raises_any_other_at_once() -> None:
    calls = itertools.count(1)

    def flaky() -> int:
        n = next(calls)
        if n < 3:
            raise ConnectionError(f"refused {n}")
        return n

    assert wait_until(flaky, "a server", every=0.001, retry_on=(ConnectionError,)) == 3

    def dead() -> bool:
        raise AssertionError("the process exited")

    with pytest.raises(AssertionError, match="the process exited"):
        wait_until(dead, "a server", retry_on=(ConnectionError,))


def test_gives_up_naming_what_it_waited_for_the_last_answer_and_the_details() -> None:
    with pytest.raises(AssertionError) as failure:
        wait_until(
            lambda: [],
            "uvicorn at http://127.0.0.1:1 to answer",
            within=0.05,
            every=0.01,
            details=lambda: "log: started",
        )
    message = str(failure.value)
    assert message.startswith("gave up after 0 s waiting for uvicorn at http://127.0.0.1:1")
    assert "last check gave []" in message
    assert message.endswith("\nlog: started")

    def refused() -> bool:
        raise ConnectionError("refused")

    with pytest.raises(AssertionError, match=r"last check gave ConnectionError\('refused'\)"):
        wait_until(refused, "a server", within=0.02, every=0.01, retry_on=(ConnectionError,))


def test_the_default_patience_is_generous() -> None:
    assert PATIENCE >= 60


async def test_async_face_lets_the_awaited_work_run_and_awaits_async_checks() -> None:
    done: list[int] = []

    async def work() -> None:
        for n in range(3):
            await asyncio.sleep(0)
            done.append(n)

    task = asyncio.ensure_future(work())
    assert await wait_until_async(lambda: len(done) == 3, "the work", every=0.001)
    await task

    async def answer() -> str:
        await asyncio.sleep(0)
        return "async answer"

    assert await wait_until_async(answer, "an async answer") == "async answer"
    with pytest.raises(AssertionError, match="waiting for nothing to happen"):
        await wait_until_async(lambda: False, "nothing to happen", within=0.02, every=0.01)
