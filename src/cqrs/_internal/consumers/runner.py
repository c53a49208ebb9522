"""The consumer runner: deliveries of a subscription -> events -> ``EventMediator.send``.

Per delivery: decode (4.x ``JsonDeserializer`` semantics, see ``decode.py``), send the event
through the mediator, and only then ``ack``. A handler failure is retried through the
broker (``nack(requeue=True)`` after a backoff, so the attempt count is the broker's and
survives a restart of this process) until ``max_attempts``, then dead-lettered with the
error as the reason. A message that can never be decoded (bad JSON, wrong schema, unknown
event name) is dead-lettered at once. The runner never crashes on bad input and never
settles a message it did not finish: on stop, unfinished deliveries stay unsettled and the
broker delivers them again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from cqrs._internal.brokers.delivery import Delivery, Subscription
from cqrs._internal.consumers.decode import EventDecoder, EventSource, Poison

__all__ = ["Backoff", "ConsumerStats", "EventConsumer", "SupportsSend"]

logger = logging.getLogger("cqrs.consumer")


class SupportsSend(Protocol):
    """What the runner sends events to: ``EventMediator`` or anything with ``send``."""

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


class EventConsumer:
    """Runs ``mediator.send`` for every delivery of ``subscription``.

    ``events`` says what the bodies decode into: one event type, a mapping of
    ``event_name`` to event type, or a 4.x deserializer such as ``JsonDeserializer(Model)``.
    At most ``concurrency`` messages (default: the subscription's prefetch) are handled at
    once; with 1, in delivery order. A failed handler is retried up to ``max_attempts`` in
    all (``backoff(attempt)`` seconds before each return to the broker), then
    dead-lettered. ``on_dead_letter(delivery, reason)`` (sync or async) is called for every
    message given up.

    :meth:`run` consumes until :meth:`stop` is called or the subscription ends, and closes
    the subscription at the end. Raises ``ValueError`` for ``max_attempts`` or
    ``concurrency`` below 1 and ``TypeError`` for an ``events`` it cannot decode into.
    """

    def __init__(
        self,
        subscription: Subscription,
        mediator: SupportsSend,
        events: EventSource,
        *,
        max_attempts: int = 5,
        backoff: Callable[[int], float] = Backoff(),
        concurrency: int | None = None,
        on_dead_letter: Callable[[Delivery, str], object] | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        concurrency = subscription.prefetch if concurrency is None else concurrency
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self._subscription = subscription
        self._send = mediator.send
        self._decode = EventDecoder(events).decode
        self._max_attempts = max_attempts
        self._backoff = backoff
        self._concurrency = concurrency
        self._on_dead_letter = on_dead_letter
        self.stats = ConsumerStats()
        self._stopping = False
        self._intake: asyncio.Task[None] | None = None
        self._intake_waiting = False
        self._inflight: set[asyncio.Task[None]] = set()
        self._finished: asyncio.Future[None] | None = None
        self._grace: float | None = None

    @property
    def subscription(self) -> Subscription:
        """The subscription this runner reads."""
        return self._subscription

    async def run(self) -> None:
        """Consume until :meth:`stop` or the end of the subscription, then close it.

        Raises ``RuntimeError`` when the runner is already running or has run. Cancelling
        ``run`` cancels the messages being handled; none of them is settled, so the broker
        delivers them again.
        """
        if self._finished is not None:
            raise RuntimeError("Cannot run an EventConsumer twice; create a new one.")
        self._finished = asyncio.get_running_loop().create_future()
        try:
            self._intake = asyncio.current_task()
            await self._consume()
        finally:
            self._intake = None
            try:
                await self._cancel_inflight()
            finally:
                await self._subscription.close()
                if not self._finished.done():
                    self._finished.set_result(None)

    async def stop(self, grace: float | None = None) -> None:
        """Stop taking deliveries, let the ones being handled finish, and return when
        :meth:`run` has returned.

        ``grace`` bounds the wait in seconds (``None``: as long as they take); handlers
        still running then are cancelled and their messages left unsettled, so the broker
        delivers them again. Safe to call before, during and after :meth:`run`.
        """
        self._grace = grace
        if self._stopping:
            if self._finished is not None:
                await asyncio.shield(self._finished)
            return
        self._stopping = True
        if self._finished is None:
            return
        intake = self._intake
        if intake is not None and self._intake_waiting:
            intake.cancel(_STOP)
        await asyncio.shield(self._finished)

    # -- intake ------------------------------------------------------------------------------

    async def _next(self) -> Delivery | None:
        """The next delivery, or ``None`` when stopping or the subscription ended."""
        if self._stopping:
            return None
        self._intake_waiting = True
        try:
            return await anext(self._subscription)
        except StopAsyncIteration:
            return None
        except asyncio.CancelledError as exc:
            if _is_stop(exc):
                _uncancel()
                return None
            raise
        finally:
            self._intake_waiting = False

    async def _consume(self) -> None:
        slots = asyncio.Semaphore(self._concurrency)
        inflight = self._inflight
        while True:
            self._intake_waiting = True
            try:
                await slots.acquire()
            except asyncio.CancelledError as exc:
                if _is_stop(exc):
                    _uncancel()
                    break
                raise
            finally:
                self._intake_waiting = False
            delivery = await self._next()
            if delivery is None:
                slots.release()
                break
            task = asyncio.create_task(self._handle(delivery))
            inflight.add(task)
            task.add_done_callback(inflight.discard)
            task.add_done_callback(lambda _: slots.release())
        if inflight:
            await asyncio.wait(set(inflight), timeout=self._grace)

    async def _cancel_inflight(self) -> None:
        """Cancel what still runs (its deliveries stay unsettled) and wait for it."""
        pending = set(self._inflight)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    # -- one delivery ----------------------------------------------------------------------

    async def _handle(self, delivery: Delivery) -> None:
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
        if await self._settle(delivery, "ack", delivery.ack()):
            self.stats.acked += 1

    async def _failed(self, delivery: Delivery, exc: Exception) -> None:
        attempt = delivery.attempt
        what = f"{type(exc).__name__}: {exc}"
        if attempt >= self._max_attempts:
            await self._dead_letter(
                delivery,
                f"handler failed on attempt {attempt} of {self._max_attempts}: {what}",
                exc,
            )
            return
        delay = self._backoff(attempt)
        logger.warning(
            "Handling message %s failed on attempt %d of %d (%s); it is retried in %.3g s.",
            delivery.message.message_id,
            attempt,
            self._max_attempts,
            what,
            delay,
        )
        if delay > 0:
            await asyncio.sleep(delay)  # cancelled by a stop past its grace: left unsettled
        if await self._settle(delivery, "nack", delivery.nack(requeue=True)):
            self.stats.retried += 1

    async def _dead_letter(
        self, delivery: Delivery, reason: str, exc: BaseException | None = None
    ) -> None:
        logger.error(
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
                logger.exception("on_dead_letter hook failed for %s", delivery.message.message_id)

    async def _settle(self, delivery: Delivery, action: str, settling: Awaitable[None]) -> bool:
        """Await a settlement; a refusal is logged and counted, never raised."""
        try:
            await settling
        except Exception as exc:
            self.stats.settle_failures += 1
            logger.warning(
                "Could not %s message %s (%s: %s); the broker will deliver it again.",
                action,
                delivery.message.message_id,
                type(exc).__name__,
                exc,
            )
            return False
        return True


_STOP = "cqrs.EventConsumer.stop"


def _is_stop(exc: asyncio.CancelledError) -> bool:
    return bool(exc.args) and exc.args[0] == _STOP


def _uncancel() -> None:
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()
