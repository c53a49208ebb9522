"""Driving a coroutine by hand: resuming it elsewhere, or noticing when it first waits.

:class:`Resume` continues a coroutine that was started by hand (``coro.send(None)``) exactly
as ``await`` would, inside the current task. Two places use it:

* :func:`finish_soon` runs a coroutine from synchronous code (such as ``__del__``) up to its
  first real suspension, and finishes the rest in a task. Stream cleanup uses it so that a
  consumer that just ``break``s out of ``async for`` sees the handler's ``finally`` run at once.
* The concurrent event publisher (and ``EventEmitter.run_events``, which follows its
  schedule) starts each job by hand and notices when it first suspends: only then does it
  start helper tasks, so handlers that never wait cost no task and no loop turn.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Generator
from typing import Any, TypeVar

__all__ = ["Resume", "being_cancelled", "finish_soon"]

logger = logging.getLogger("cqrs")

T = TypeVar("T")

_pending: set[asyncio.Task[Any]] = set()


class Resume:
    """Awaitable that continues ``coro`` from the value it last yielded, in the current task.

    Futures are handed to the running task and results, exceptions and cancellation are passed
    back into the coroutine, as a native ``await`` does.
    """

    __slots__ = ("coro", "yielded")

    def __init__(self, coro: Coroutine[Any, Any, Any], yielded: Any) -> None:
        self.coro = coro
        self.yielded = yielded

    def __await__(self) -> Generator[Any, Any, Any]:
        coro = self.coro
        yielded = self.yielded
        while True:
            try:
                sent = yield yielded
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:
                try:
                    yielded = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    yielded = coro.send(sent)
                except StopIteration as stop:
                    return stop.value


async def _resume(coro: Coroutine[Any, Any, None], yielded: Any) -> None:
    await Resume(coro, yielded)


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


def being_cancelled() -> bool:
    """True when the running task has been asked to cancel.

    Tells a real cancellation apart from a ``CancelledError`` that a handler raised by itself
    (its caller was not cancelled): the second is that handler's failure, not a cancellation.
    """
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
