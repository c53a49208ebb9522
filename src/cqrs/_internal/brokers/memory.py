"""In-memory brokers for tests and for running without infrastructure."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

from cqrs._internal.brokers.protocol import Message, MessageBroker

__all__ = ["CallbackMessageBroker", "InMemoryMessageBroker"]


class InMemoryMessageBroker(MessageBroker):
    """Keeps every published message in :attr:`messages`, in publish order.

    Meant for tests (yours and ours) and local runs: assert what was published with
    :meth:`published`, wait for asynchronous publishes with :meth:`wait_for`, and simulate an
    outage with :attr:`fail_with` (every ``send_message`` raises it, nothing is recorded).
    """

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.fail_with: BaseException | None = None
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    async def send_message(self, message: Message) -> None:
        """Record ``message``, or raise :attr:`fail_with` when it is set."""
        if self.fail_with is not None:
            raise self.fail_with
        self.messages.append(message)
        for count, waiter in list(self._waiters):
            if len(self.messages) >= count and not waiter.done():
                waiter.set_result(None)

    def published(self, *, topic: str | None = None, name: str | None = None) -> list[Message]:
        """The recorded messages, optionally only those with this topic and/or name."""
        return [
            m
            for m in self.messages
            if (topic is None or m.topic == topic) and (name is None or m.message_name == name)
        ]

    async def wait_for(self, count: int) -> list[Message]:
        """Wait until at least ``count`` messages were recorded and return them all.

        Bound the wait yourself: ``async with asyncio.timeout(5): await broker.wait_for(3)``.
        """
        if len(self.messages) < count:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            entry = (count, waiter)
            self._waiters.append(entry)
            try:
                await waiter
            finally:
                self._waiters.remove(entry)
        return list(self.messages)

    def clear(self) -> None:
        """Forget the recorded messages."""
        self.messages.clear()


class CallbackMessageBroker(MessageBroker):
    """Passes each message to ``callback`` (a plain or an async function).

    Whatever the callback raises propagates, as a real broker's failure would.
    """

    def __init__(self, callback: Callable[[Message], Awaitable[object] | object]) -> None:
        self._callback = callback

    async def send_message(self, message: Message) -> None:
        """Call the callback with ``message`` and await its result if it is awaitable."""
        result = self._callback(message)
        if inspect.isawaitable(result):
            await result
