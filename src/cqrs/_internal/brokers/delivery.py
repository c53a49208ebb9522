"""The consuming side of every broker: a subscription hands out deliveries to settle.

A :class:`Subscription` is an async iterator of :class:`Delivery` objects for one topic (one
queue). Each delivery must be settled exactly once:

* ``ack()``: done, the broker forgets the message;
* ``nack(requeue=True)``: not done, deliver it again later (its ``attempt`` grows by one);
  ``nack(requeue=False)`` gives it up: it is dead-lettered with the reason ``"rejected"``;
* ``dead_letter(reason)``: it can never succeed; it moves to the topic's dead-letter
  destination (:func:`dead_letter_topic`), whose copy carries ``reason`` in the
  :data:`DEAD_LETTER_REASON_HEADER` header and the original message id and body.

At most ``prefetch`` deliveries of a subscription are unsettled at once: the iterator waits
until one is settled. Closing a subscription returns every unsettled delivery to the broker,
which delivers it again (to this topic's next subscriber), so a consumer that stops or dies
mid-batch loses nothing. Several subscriptions of one topic compete for its messages.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from cqrs._internal.brokers.lifecycle import BrokerStateError
from cqrs._internal.brokers.protocol import Message
from cqrs._internal.errors import CQRSError

__all__ = [
    "DEAD_LETTER_REASON_HEADER",
    "DEAD_LETTER_SUFFIX",
    "ORIGINAL_TOPIC_HEADER",
    "ConsumableBroker",
    "Delivery",
    "DeliveryLostError",
    "DeliverySettledError",
    "Subscription",
    "dead_letter_topic",
]

DEAD_LETTER_SUFFIX = ".dead-letter"
"""Appended to a topic to name its dead-letter destination."""

DEAD_LETTER_REASON_HEADER = "x-dead-letter-reason"
"""The header of a dead-lettered copy that says why the message was given up."""

ORIGINAL_TOPIC_HEADER = "x-original-topic"
"""The header of a dead-lettered copy that names the topic it came from."""


def dead_letter_topic(topic: str) -> str:
    """Where the dead letters of ``topic`` go: ``"<topic>.dead-letter"``."""
    return topic + DEAD_LETTER_SUFFIX


class DeliverySettledError(BrokerStateError):
    """A delivery was settled twice, or after its subscription was closed (it went back to
    the broker and will be delivered again)."""


class DeliveryLostError(CQRSError, ConnectionError):
    """A settlement could not reach the broker: the connection or channel the message came
    on is gone (a broker restart, a network cut). Nothing is lost: the broker delivers the
    message again, on the next connection."""


@runtime_checkable
class Delivery(Protocol):
    """One received message, waiting to be settled (see the module docstring)."""

    @property
    def message(self) -> Message:
        """The message as received: ``payload_bytes`` is the body, ``message_id`` the id it
        was published with (the event id), ``headers`` the transport headers."""
        ...

    @property
    def attempt(self) -> int:
        """1 for the first delivery of this message, 2 for the second, and so on (the
        broker's redelivery count, so it survives a consumer restart)."""
        ...

    async def ack(self) -> None:
        """Settle as done. Raises :class:`DeliverySettledError` when already settled, and
        :class:`DeliveryLostError` when the message's channel or connection is gone
        (RabbitMQ, NATS; Redis acks in the background and reports a lost ack from its
        subscription's ``commit()``)."""
        ...

    async def nack(self, requeue: bool = True) -> None:
        """Settle as not done: deliver again (``requeue=True``) or dead-letter with the reason
        ``"rejected"``. Raises :class:`DeliverySettledError` when already settled."""
        ...

    async def dead_letter(self, reason: str) -> None:
        """Move the message to the dead-letter destination with ``reason``; the copy is
        stored before the original is removed, so a failure in between duplicates it
        rather than losing it. Raises :class:`DeliverySettledError` when already settled."""
        ...


@runtime_checkable
class Subscription(Protocol):
    """Deliveries of one topic, at most ``prefetch`` unsettled at a time."""

    @property
    def topic(self) -> str:
        """The topic (queue) this subscription reads."""
        ...

    @property
    def prefetch(self) -> int:
        """How many deliveries may be unsettled at once."""
        ...

    def __aiter__(self) -> AsyncIterator[Delivery]:
        """The subscription itself."""
        ...

    async def __anext__(self) -> Delivery:
        """Wait for the next delivery; ``StopAsyncIteration`` once closed. Cancelling the wait
        loses nothing."""
        ...

    async def close(self) -> None:
        """Stop receiving and return every unsettled delivery to the broker (idempotent)."""
        ...

    async def __aenter__(self) -> Self:
        """The subscription itself."""
        ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the subscription."""
        ...


@runtime_checkable
class ConsumableBroker(Protocol):
    """A broker that publishes and subscribes, with the life of
    :class:`~cqrs._internal.brokers.lifecycle.BrokerLifecycle`: what
    ``cqrs.testing.check_message_broker`` checks and the consumer runner reads from."""

    async def send_message(self, message: Message) -> None:
        """Publish ``message`` on ``message.topic``; return once the broker stored it, raise
        if it did not."""
        ...

    async def subscribe(self, topic: str, *, prefetch: int = 10) -> Subscription:
        """Start receiving the messages of ``topic``, including those published before."""
        ...

    async def open(self) -> None:
        """Connect (see ``BrokerLifecycle.open``)."""
        ...

    async def close(self) -> None:
        """Disconnect for good (see ``BrokerLifecycle.close``)."""
        ...
