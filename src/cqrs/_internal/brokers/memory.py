"""In-memory brokers for tests and for running without infrastructure."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import inspect
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import Self

from cqrs._internal.brokers.delivery import (
    DEAD_LETTER_REASON_HEADER,
    ORIGINAL_TOPIC_HEADER,
    dead_letter_topic,
)
from cqrs._internal.brokers.lifecycle import BrokerLifecycle
from cqrs._internal.brokers.message import received_message, wire_body, wire_id
from cqrs._internal.brokers.protocol import Message, MessageBroker
from cqrs._internal.brokers.settle import already_settled, subscription_closed

__all__ = [
    "CallbackMessageBroker",
    "InMemoryMessageBroker",
    "MemoryDelivery",
    "MemorySubscription",
]


class InMemoryMessageBroker(BrokerLifecycle, MessageBroker):
    """A broker in this process: records what is published and serves it to subscribers.

    Meant for tests (yours and ours) and local runs. As a record: assert what was published
    with :meth:`published` (every message in :attr:`messages`, in publish order), wait for
    asynchronous publishes with :meth:`wait_for`, and simulate an outage with
    :attr:`fail_with` (every ``send_message`` raises it, nothing is recorded or queued).

    As a broker: each topic is a queue that keeps its messages until a subscriber settles
    them (:meth:`subscribe`; the semantics of ``cqrs._internal.brokers.delivery``). A
    message goes through its wire form (the bytes a real broker would carry) on its way to
    a subscriber, so what a consumer receives is what it would receive from RabbitMQ.
    Requeued and returned messages go back to the head of their queue. The broker has the
    life of a real one (unopened, open, closed); sending on an unopened broker opens it.
    """

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.fail_with: BaseException | None = None
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._topics: dict[str, _Topic] = {}
        self._subscriptions: set[MemorySubscription] = set()
        self._sequence = itertools.count()

    async def send_message(self, message: Message) -> None:
        """Record and queue ``message``, or raise :attr:`fail_with` when it is set.

        Raises ``BrokerStateError`` once the broker is closed, and ``TypeError`` for a
        payload that has no wire form (not JSON-encodable).
        """
        if self.fail_with is not None:
            raise self.fail_with
        await self._ensure_open("publish")
        received = received_message(
            wire_body(message),
            topic=message.topic,
            message_id=wire_id(message),
            name=message.message_name,
            content_type=message.content_type,
            headers=message.headers,
        )
        self.messages.append(message)
        self.enqueue(received)
        for count, waiter in list(self._waiters):
            if len(self.messages) >= count and not waiter.done():
                waiter.set_result(None)

    async def subscribe(self, topic: str, *, prefetch: int = 10) -> MemorySubscription:
        """Receive the messages of ``topic`` (those queued already first), at most
        ``prefetch`` unsettled at once. Raises ``ValueError`` for ``prefetch < 1`` and
        ``BrokerStateError`` once the broker is closed."""
        if prefetch < 1:
            raise ValueError(f"prefetch must be at least 1, got {prefetch}")
        await self._ensure_open("subscribe")
        subscription = MemorySubscription(self, self._topic(topic), prefetch)
        self._subscriptions.add(subscription)
        return subscription

    def queued(self, topic: str) -> list[Message]:
        """The messages of ``topic`` waiting for a subscriber (not those being handled)."""
        found = self._topics.get(topic)
        return [] if found is None else [entry.message for entry in found.entries]

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
        """Forget the recorded messages (the queues keep theirs)."""
        self.messages.clear()

    async def _disconnect(self) -> None:
        for subscription in list(self._subscriptions):
            await subscription.close()

    def _topic(self, name: str) -> _Topic:
        found = self._topics.get(name)
        if found is None:
            found = self._topics[name] = _Topic(name)
        return found

    def enqueue(self, message: Message) -> None:
        """Queue a received-form message on its topic (no record in :attr:`messages`)."""
        topic = self._topic(message.topic)
        topic.entries.append(_Entry(next(self._sequence), message))
        topic.wake()

    def forget(self, subscription: MemorySubscription) -> None:
        """Drop a closed subscription from the ones :meth:`close` closes."""
        self._subscriptions.discard(subscription)


@dataclasses.dataclass(eq=False)
class _Entry:
    """A queued message and how often it was delivered."""

    sequence: int
    message: Message
    deliveries: int = 0


class _Topic:
    """One queue: its messages and the subscribers waiting for a change."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.entries: collections.deque[_Entry] = collections.deque()
        self.waiters: list[asyncio.Future[None]] = []

    def wake(self) -> None:
        waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def put_back(self, entries: list[_Entry]) -> None:
        """Return ``entries`` to the head of the queue, in their publish order."""
        for entry in sorted(entries, key=lambda e: e.sequence, reverse=True):
            self.entries.appendleft(entry)
        self.wake()


class MemorySubscription:
    """A subscription of :class:`InMemoryMessageBroker` (see ``Subscription``)."""

    def __init__(self, broker: InMemoryMessageBroker, topic: _Topic, prefetch: int) -> None:
        self._broker = broker
        self._topic = topic
        self._prefetch = prefetch
        self._unsettled: dict[int, _Entry] = {}
        self._closed = False

    @property
    def topic(self) -> str:
        """The topic this subscription reads."""
        return self._topic.name

    @property
    def prefetch(self) -> int:
        """How many deliveries may be unsettled at once."""
        return self._prefetch

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran (or the broker closed)."""
        return self._closed

    def __aiter__(self) -> AsyncIterator[MemoryDelivery]:
        return self

    async def __anext__(self) -> MemoryDelivery:
        """The next delivery, waiting for a message and for a free prefetch slot."""
        topic = self._topic
        while True:
            if self._closed:
                raise StopAsyncIteration
            if topic.entries and len(self._unsettled) < self._prefetch:
                entry = topic.entries.popleft()
                entry.deliveries += 1
                self._unsettled[entry.sequence] = entry
                return MemoryDelivery(self, entry)
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            topic.waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in topic.waiters:
                    topic.waiters.remove(waiter)

    async def close(self) -> None:
        """Stop and return the unsettled deliveries to the head of the queue."""
        if self._closed:
            return
        self._closed = True
        returned = list(self._unsettled.values())
        self._unsettled.clear()
        self._topic.put_back(returned)
        self._topic.wake()
        self._broker.forget(self)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def settle(self, entry: _Entry, action: str, dead_letter_reason: str | None = None) -> None:
        """Settle ``entry`` (for :class:`MemoryDelivery`): ``"ack"``; ``"nack"`` requeues it
        unless ``dead_letter_reason`` is given; ``"dead-letter"`` moves it to the topic's
        dead-letter queue. Raises ``DeliverySettledError`` when it is no longer unsettled."""
        if self._unsettled.pop(entry.sequence, None) is None:
            raise subscription_closed(action) if self._closed else already_settled(action)
        if dead_letter_reason is not None:
            original = entry.message
            headers = dict(original.headers or {})
            headers[DEAD_LETTER_REASON_HEADER] = dead_letter_reason
            headers[ORIGINAL_TOPIC_HEADER] = original.topic
            self._broker.enqueue(
                dataclasses.replace(
                    original, topic=dead_letter_topic(original.topic), headers=headers
                )
            )
        elif action == "nack":
            self._topic.put_back([entry])
        self._topic.wake()


class MemoryDelivery:
    """A delivery of :class:`MemorySubscription` (see ``Delivery``)."""

    __slots__ = ("_entry", "_subscription")

    def __init__(self, subscription: MemorySubscription, entry: _Entry) -> None:
        self._subscription = subscription
        self._entry = entry

    @property
    def message(self) -> Message:
        """The message as received (``payload_bytes`` is the wire body)."""
        return self._entry.message

    @property
    def attempt(self) -> int:
        """How many times this message was delivered, this time included."""
        return self._entry.deliveries

    async def ack(self) -> None:
        """Settle as done."""
        self._subscription.settle(self._entry, "ack")

    async def nack(self, requeue: bool = True) -> None:
        """Deliver again later (head of the queue), or dead-letter as ``"rejected"``."""
        self._subscription.settle(self._entry, "nack", None if requeue else "rejected")

    async def dead_letter(self, reason: str) -> None:
        """Move the message to ``<topic>.dead-letter`` with ``reason`` in its headers."""
        self._subscription.settle(self._entry, "dead-letter", reason)


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
