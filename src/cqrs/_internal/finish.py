"""Finishing a coroutine from synchronous code, such as ``__del__``.

``finish_soon(coro)`` runs the coroutine right now, up to its first real suspension; if it
still has work to await, the rest runs in a task on the running loop. Stream cleanup uses it
so that a consumer that just ``break``s out of ``async for`` sees the handler's ``finally``
run at once instead of whenever the garbage collector gets to it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Generator
from typing import Any

__all__ = ["finish_soon"]

logger = logging.getLogger("cqrs")

_pending: set[asyncio.Task[None]] = set()


class _Suspend:
    """Hands one value the inner coroutine yielded (a future, or None) to the running task."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __await__(self) -> Generator[Any, Any, Any]:
        return (yield self.value)


async def _resume(coro: Coroutine[Any, Any, None], yielded: Any) -> None:
    while True:
        try:
            sent = await _Suspend(yielded)
        except BaseException as exc:
            try:
                yielded = coro.throw(exc)
            except StopIteration:
                return
        else:
            try:
                yielded = coro.send(sent)
            except StopIteration:
                return


def finish_soon(coro: Coroutine[Any, Any, None], what: str) -> None:
    """Run ``coro`` now as far as it goes without waiting; finish the rest in a task.

    Errors are logged (``what`` names the work in the message), never raised: this runs
    where nobody can catch them. Without a running loop, work that needs to wait is
    abandoned with a WARNING.
    """
    try:
        yielded = coro.send(None)
    except StopIteration:
        return
    except BaseException:
        logger.exception("Error while %s", what)
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        coro.close()
        logger.warning("Could not finish %s: no event loop is running", what)
        return
    task = loop.create_task(_resume(coro, yielded), name=f"cqrs: {what}")
    _pending.add(task)
    task.add_done_callback(lambda done: _finished(done, what))


def _finished(task: asyncio.Task[None], what: str) -> None:
    _pending.discard(task)
    if not task.cancelled() and (exc := task.exception()) is not None:
        logger.error("Error while %s", what, exc_info=exc)
