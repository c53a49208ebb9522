"""What happens to one delivery: the policy shared by ``EventConsumer`` and the FastStream
adapter.

Decode (``decode.py``), send the event with ``send``, and only then ``ack``. A message that
can never be decoded is dead-lettered at once with the reason. A handler failure returns the
message to the broker for another attempt (the attempt count is the broker's) after
``backoff(attempt)`` seconds, until ``max_attempts``; then it is dead-lettered with the error
as the reason. A delivery whose ``nack`` takes a ``delay`` keyword (NATS JetStream's delayed
``-NAK``) is returned at once with the backoff as that delay, so the wait holds neither the
message nor a concurrency slot; any other delivery is held for the backoff, then returned.
A settlement the broker refuses is logged and counted, never raised: the broker delivers
that message again. Cancellation (a stop past its grace) leaves the message unsettled.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Generic, Protocol, TypeVar, cast

from cqrs._internal.brokers.delivery import Delivery
from cqrs._internal.consumers.decode import EventDecoder, EventSource, Poison

__all__ = [
    "DEFAULT_BACKOFF",
    "Backoff",
    "ConsumerStats",
    "MessagePolicy",
    "SupportsSend",
    "nacks_with_delay",
]


class SupportsSend(Protocol):
    """What the policy sends events to: ``EventMediator`` or anything with ``send``."""

    def send(self, event: Any, /) -> Awaitable[Any]:
        """Handle ``event``; raise if a handler failed."""
        ...


@dataclasses.dataclass(frozen=True)
class Backoff:
    """Delay before a failed message is returned for its next attempt:
    ``initial * factor ** (attempt - 1)`` seconds, at most ``maximum``."""

    initial: float = 0.1
    factor: float = 2.0
    maximum: float = 30.0

    def __call__(self, attempt: int) -> float:
        """The delay after the failure of attempt ``attempt`` (1-based)."""
        return min(self.maximum, self.initial * self.factor ** max(0, attempt - 1))


DEFAULT_BACKOFF = Backoff()
"""0.1 s after the first failure, doubling up to 30 s."""


@dataclasses.dataclass
class ConsumerStats:
    """Counts of what a runner did, for logs, metrics and tests."""

    received: int = 0
    acked: int = 0
    retried: int = 0
    dead_lettered: int = 0
    settle_failures: int = 0
    """Acks, nacks or dead-letters the broker refused (a lost connection): those messages
    are delivered again."""


D = TypeVar("D", bound=Delivery)


class _DelayedNack(Protocol):
    def nack(self, requeue: bool = True, *, delay: float | None = None) -> Awaitable[None]: ...


_DELAYED_NACK: dict[type[Any], bool] = {}


def nacks_with_delay(delivery: object) -> bool:
    """Whether ``delivery.nack`` takes a ``delay`` keyword (seconds before the broker
    delivers the message again), as NATS JetStream's delivery does. Decided once per type."""
    kind = type(delivery)
    known = _DELAYED_NACK.get(kind)
    if known is None:
        nack: object = getattr(kind, "nack", None)
        delay: inspect.Parameter | None = None
        if callable(nack):
            try:
                delay = inspect.signature(nack).parameters.get("delay")
            except (TypeError, ValueError):
                delay = None
        known = delay is not None and delay.kind in (
            inspect.Parameter.KEYWORD_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        )
        _DELAYED_NACK[kind] = known
    return known


async def _nack(delivery: Any) -> None:
    await delivery.nack(requeue=True)


class MessagePolicy(Generic[D]):
    """Handles one delivery at a time by the module's policy, counting into ``stats``.

    ``events`` is what the bodies decode into (see ``EventDecoder``); ``mediator.send``
    runs the handlers. Raises ``ValueError`` for ``max_attempts`` below 1 and
    ``TypeError`` for an ``events`` it cannot decode into. ``retry(delivery)`` returns a
    message for another attempt (default ``nack(requeue=True)``; named ``retry_action``
    in logs). ``on_dead_letter(delivery, reason)`` (sync or async) is called for every
    message given up; its errors are logged. Log records go to ``logger``; ``redelivery``
    ends the warning of a refused settlement.
    """

    __slots__ = (
        "_backoff",
        "_decode",
        "_logger",
        "_max_attempts",
        "_on_dead_letter",
        "_redelivery",
        "_retry",
        "_retry_action",
        "_send",
        "stats",
    )

    def __init__(
        self,
        mediator: SupportsSend,
        events: EventSource,
        max_attempts: int,
        backoff: Callable[[int], float],
        on_dead_letter: Callable[[D, str], object] | None,
        logger: logging.Logger,
        *,
        stats: ConsumerStats | None = None,
        retry: Callable[[D], Awaitable[None]] = _nack,
        retry_action: str = "nack",
        redelivery: str = "the broker will deliver it again.",
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        self._send = mediator.send
        self._decode = EventDecoder(events).decode
        self._max_attempts = max_attempts
        self._backoff = backoff
        self._on_dead_letter = on_dead_letter
        self._logger = logger
        self._retry = retry
        self._retry_action = retry_action
        self._redelivery = redelivery
        self.stats = stats if stats is not None else ConsumerStats()

    async def handle(self, delivery: D) -> None:
        """Decode, send, then ack; retry or dead-letter by the policy. Never raises for a
        bad message, a failing handler or a refused settlement; ``CancelledError`` leaves
        the message unsettled."""
        self.stats.received += 1
        try:
            event = self._decode(delivery.message)
        except Poison as poison:
            await self._dead_letter(delivery, poison.reason)
            return
        try:
            await self._send(event)
        except Exception as exc:
            await self._failed(delivery, exc)
            return
        try:  # not through _settle: one coroutine less on the path every message takes
            await delivery.ack()
        except Exception as exc:
            self._refused(delivery, "ack", exc)
            return
        self.stats.acked += 1

    async def _failed(self, delivery: D, exc: Exception) -> None:
        attempt = delivery.attempt
        limit = self._max_attempts
        what = f"{type(exc).__name__}: {exc}"
        if attempt >= limit:
            await self._dead_letter(
                delivery, f"handler failed on attempt {attempt} of {limit}: {what}", exc
            )
            return
        delay = self._backoff(attempt)
        self._logger.warning(
            "Handling message %s failed on attempt %d of %d (%s); it is retried in %.3g s.",
            delivery.message.message_id,
            attempt,
            limit,
            what,
            delay,
        )
        if delay > 0 and nacks_with_delay(delivery):
            returning = cast(_DelayedNack, delivery).nack(requeue=True, delay=delay)
            action = "nack"
        else:
            if delay > 0:
                await asyncio.sleep(delay)  # cancelled by a stop past its grace: unsettled
            returning = self._retry(delivery)
            action = self._retry_action
        if await self._settle(delivery, action, returning):
            self.stats.retried += 1

    async def _dead_letter(
        self, delivery: D, reason: str, exc: BaseException | None = None
    ) -> None:
        self._logger.error(
            "Message %s (%r) is dead-lettered: %s",
            delivery.message.message_id,
            delivery.message.message_name,
            reason,
            exc_info=exc,
        )
        if not await self._settle(delivery, "dead-letter", delivery.dead_letter(reason)):
            return
        self.stats.dead_lettered += 1
        hook = self._on_dead_letter
        if hook is not None:
            try:
                result = hook(delivery, reason)
                if isinstance(result, Awaitable):
                    await result
            except Exception:
                self._logger.exception(
                    "on_dead_letter hook failed for %s", delivery.message.message_id
                )

    async def _settle(self, delivery: D, action: str, settling: Awaitable[None]) -> bool:
        """Await a settlement; a refusal is logged and counted, never raised."""
        try:
            await settling
        except Exception as exc:
            self._refused(delivery, action, exc)
            return False
        return True

    def _refused(self, delivery: D, action: str, exc: Exception) -> None:
        self.stats.settle_failures += 1
        self._logger.warning(
            "Could not %s message %s (%s: %s); %s",
            action,
            delivery.message.message_id,
            type(exc).__name__,
            exc,
            self._redelivery,
        )
