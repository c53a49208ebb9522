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

The work is done by ``concurrency`` long-lived worker tasks, not a task per message: each
reads the next delivery when no other worker is reading, then handles it.
"""

from __future__ import annotations

import asyncio
import collections
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
        self._reading = False
        self._idle: collections.deque[asyncio.Future[None]] = collections.deque()
        self._turn_offered = False
        self._reader: asyncio.Task[None] | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._intake_over: asyncio.Future[None] | None = None
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
        loop = asyncio.get_running_loop()
        self._finished = loop.create_future()
        self._intake_over = loop.create_future()
        try:
            await self._consume()
        finally:
            try:
                await self._cancel_workers()
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
        reader = self._reader
        if reader is not None:
            reader.cancel(_STOP)
        self._end_intake(None)  # also when every worker is busy handling
        await asyncio.shield(self._finished)

    # -- the workers -----------------------------------------------------------------------
    #
    # ``concurrency`` worker tasks, each taking the next delivery (one reader at a time, see
    # ``_take``) and handling it: no task per message. The first worker to find the intake
    # over (stop, or the end of the subscription) resolves ``_intake_over``; a worker whose
    # read raised resolves it with the error.

    async def _consume(self) -> None:
        assert self._intake_over is not None
        self._workers = [
            asyncio.create_task(self._work(), name=f"cqrs consumer worker {n}")
            for n in range(self._concurrency)
        ]
        await self._intake_over
        running = [worker for worker in self._workers if not worker.done()]
        if running:
            await asyncio.wait(running, timeout=self._grace)

    async def _work(self) -> None:
        handle = self._policy.handle
        while True:
            try:
                delivery = await self._take()
            except asyncio.CancelledError:
                self._end_intake(None)
                raise
            except Exception as exc:  # the subscription failed: run() raises it
                self._end_intake(exc)
                return
            if delivery is None:
                self._end_intake(None)
                return
            try:
                await handle(delivery)
            except Exception:  # a bug beyond the policy's reach; the message stays unsettled
                logger.exception("Handling a delivery failed unexpectedly; it is not settled.")

    async def _take(self) -> Delivery | None:
        """Read the next delivery when no other worker is reading, else wait for a turn;
        ``None`` when stopping or the subscription ended.

        Not a fair lock on purpose: a worker that finished its message reads the next one
        at once when the reader is free, without a round through the event loop. After each
        read, one idle worker is woken on the next loop turn if nobody is reading by then
        (the reader went on to a handler that waits), so buffered messages spread over the
        pool when handlers wait and no worker is woken for nothing when they do not."""
        idle = self._idle
        while self._reading:
            turn = asyncio.get_running_loop().create_future()
            idle.append(turn)
            try:
                await turn
            except asyncio.CancelledError:
                if turn.done() and not turn.cancelled():
                    self._pass_turn()  # it was given this turn: give it on
                raise
        self._reading = True
        try:
            over = self._intake_over
            if self._stopping or over is None or over.done():
                return None  # the turn still goes on, to end the next idle worker
            self._reader = asyncio.current_task()
            return await anext(self._subscription)
        except StopAsyncIteration:
            return None
        except asyncio.CancelledError as exc:
            if _is_stop(exc):
                _uncancel()
                return None
            raise
        finally:
            self._reader = None
            self._reading = False
            if idle and not self._turn_offered:
                self._turn_offered = True
                asyncio.get_running_loop().call_soon(self._offer_turn)

    def _offer_turn(self) -> None:
        self._turn_offered = False
        if not self._reading:
            self._pass_turn()

    def _pass_turn(self) -> None:
        idle = self._idle
        while idle:
            turn = idle.popleft()
            if not turn.done():
                turn.set_result(None)
                return

    def _end_intake(self, error: BaseException | None) -> None:
        over = self._intake_over
        if over is None or over.done():
            return
        if error is None or isinstance(error, asyncio.CancelledError):
            over.set_result(None)
        else:
            over.set_exception(error)

    async def _cancel_workers(self) -> None:
        """Cancel the workers still running (their deliveries stay unsettled) and wait."""
        pending = [worker for worker in self._workers if not worker.done()]
        for worker in pending:
            worker.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)


_STOP = "cqrs.EventConsumer.stop"


def _is_stop(exc: asyncio.CancelledError) -> bool:
    return bool(exc.args) and exc.args[0] == _STOP


def _uncancel() -> None:
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()
