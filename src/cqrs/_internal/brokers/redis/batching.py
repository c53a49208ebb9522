"""Group commit: concurrent callers' commands go to Redis together, one round trip per batch.

The first :meth:`GroupCommit.submit` starts a flush task; everything submitted before that
task runs, and everything submitted while a batch is in flight, goes into the next batch. So
a lone caller pays one round trip, and a hundred concurrent callers pay about one, not a
hundred: the throughput of a pipeline without callers having to build one.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

__all__ = ["GroupCommit"]

T = TypeVar("T")
R = TypeVar("R")

RunBatch = Callable[[list[T]], Awaitable[list[R | BaseException]]]
"""Runs a batch; returns a result or an exception for each item, in order."""


class GroupCommit(Generic[T, R]):
    """Runs items submitted concurrently in batches of at most ``max_batch`` (see the module
    docstring); ``run`` returns one result or exception per item, and handles its own
    retries: an exception it raises fails the whole batch."""

    def __init__(self, run: RunBatch[T, R], *, max_batch: int, name: str) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self._run = run
        self._max_batch = max_batch
        self._name = name
        self._queue: collections.deque[tuple[T, asyncio.Future[R]]] = collections.deque()
        self._task: asyncio.Task[None] | None = None

    def submit(self, item: T) -> asyncio.Future[R]:
        """Queue ``item`` for the next batch; the future gets its result (or exception).
        Cancelling the future (or a task awaiting it) drops the item if its batch has not
        been sent yet."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._queue.append((item, future))
        if self._task is None:
            self._task = loop.create_task(self._flush(), name=self._name)
        return future

    @property
    def busy(self) -> bool:
        """Whether a batch is queued or in flight."""
        return self._task is not None

    async def drain(self) -> None:
        """Wait until every item submitted so far has its result."""
        while (task := self._task) is not None:
            await asyncio.shield(task)

    async def _flush(self) -> None:
        queue = self._queue
        batch: list[tuple[T, asyncio.Future[R]]] = []
        try:
            while queue:
                batch = []
                while queue and len(batch) < self._max_batch:
                    item, future = queue.popleft()
                    if not future.done():  # a cancelled caller's item is not sent
                        batch.append((item, future))
                if not batch:
                    continue
                try:
                    results = await self._run([item for item, _ in batch])
                except Exception as exc:
                    results = [exc] * len(batch)
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():
                        continue
                    if isinstance(result, BaseException):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        except asyncio.CancelledError:
            for _, future in (*batch, *queue):
                future.cancel()
            queue.clear()
            raise
        finally:
            self._task = None
