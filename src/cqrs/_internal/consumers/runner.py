"""The consumer runner: deliveries of a subscription -> events -> ``EventMediator.send``.

Per delivery: decode (4.x ``JsonDeserializer`` semantics, see ``decode.py``), send the event
through the mediator, and only then ``ack``. A handler failure is retried through the
broker (``nack(requeue=True)`` after a backoff, so the attempt count is the broker's and
survives a restart of this process) until ``max_attempts``, then dead-lettered with the
error as the reason; a delivery that takes a delayed ``nack`` (NATS) is returned at once
with the backoff as its delay instead. A message that can never be decoded (bad JSON, wrong
schema, unknown event name) is dead-lettered at once (the policy is ``policy.py``, shared with
the FastStream adapter). The runner never crashes on bad input and never
settles a message it did not finish: on stop, unfinished deliveries stay unsettled and the
broker delivers them again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from cqrs._internal.brokers.delivery import Delivery, Subscription
from cqrs._internal.consumers.decode import EventSource
from cqrs._internal.consumers.policy import (
    DEFAULT_BACKOFF,
    Backoff,
    ConsumerStats,
    MessagePolicy,
    SupportsSend,
)

__all__ = ["Backoff", "ConsumerStats", "EventConsumer", "SupportsSend"]

logger = logging.getLogger("cqrs.consumer")


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
        backoff: Callable[[int], float] = DEFAULT_BACKOFF,
        concurrency: int | None = None,
        on_dead_letter: Callable[[Delivery, str], object] | None = None,
    ) -> None:
        self._policy = MessagePolicy[Delivery](
            mediator, events, max_attempts, backoff, on_dead_letter, logger
        )
        concurrency = subscription.prefetch if concurrency is None else concurrency
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self._subscription = subscription
        self.stats = self._policy.stats
        self._concurrency = concurrency
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
            task = asyncio.create_task(self._policy.handle(delivery))
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


_STOP = "cqrs.EventConsumer.stop"


def _is_stop(exc: asyncio.CancelledError) -> bool:
    return bool(exc.args) and exc.args[0] == _STOP


def _uncancel() -> None:
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()
