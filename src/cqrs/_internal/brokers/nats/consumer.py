"""Consuming from JetStream: pull subscriptions and their deliveries, for the runner.

A :class:`NatsSubscription` reads its topic's durable pull consumer. It keeps one pull
request outstanding (``batch`` = the free places of ``prefetch``, renewed once half of them
are free; it expires after ``PULL_EXPIRES`` seconds and carries idle heartbeats), so
messages flow while the runner works; a request whose heartbeats stop (a lost connection, a
restarted server) is replaced. ``attempt`` is JetStream's delivery count
(``num_delivered``), kept by the server.

Settling: ``ack`` sends ``+ACK`` (unconfirmed, as nats-py's ``ack``: one lost with the
connection makes the message come back after ``ack_wait``, at least once); ``nack()`` sends
``-NAK`` (JetStream delivers the message again at once, or after ``delay`` seconds);
``dead_letter(reason)`` publishes a copy to ``<prefix>.<topic>.dead-letter``, waits for its
acknowledgement, and only then sends ``+TERM`` (JetStream never delivers the original
again). A failure in between brings the message back, to be dead-lettered again, and
JetStream drops that second copy (same ``Nats-Msg-Id``): nothing lost, nothing doubled.

While a message is held (waiting for the runner, or in a slow handler) the subscription
sends progress acks (``+WPI``) every third of ``ack_wait``, so JetStream does not deliver it
to someone else meanwhile. Closing the subscription naks every message it holds, in stream
order, and JetStream delivers them again at once; a subscription that dies without closing
leaves them to ``ack_wait``. When JetStream gives a message up after ``max_deliver``
deliveries, a live subscription moves it to the dead-letter subject with the reason.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any, Self

from cqrs._internal._optional import require
from cqrs._internal.brokers.delivery import DeliveryLostError, dead_letter_topic
from cqrs._internal.brokers.nats.topology import Topology
from cqrs._internal.brokers.nats.wire import dead_letter_headers, received
from cqrs._internal.brokers.protocol import Message
from cqrs._internal.brokers.settle import claim, settlement_lost

with require("nats-py", extra="nats", feature="cqrs.message_brokers.nats"):
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription as NatsCoreSubscription
    from nats.errors import Error as NatsError
    from nats.js import JetStreamContext
    from nats.js.errors import NotFoundError

__all__ = ["NatsDelivery", "NatsSubscription", "Publish"]

logger = logging.getLogger("cqrs.nats")

Publish = Callable[[str, bytes, dict[str, str]], Awaitable[object]]
"""The broker's confirmed publish: ``publish(subject, body, headers)``."""

PULL_EXPIRES = 10.0
"""Seconds a pull request waits for messages before JetStream ends it."""
HEARTBEAT = 2.0
"""Seconds between JetStream's idle heartbeats on a waiting pull request."""
DEAD_AFTER = 2 * HEARTBEAT + 1.0
"""Seconds without a message or heartbeat after which a pull request is taken for lost."""
CLOSE_TIMEOUT = 5.0
"""Seconds closing a subscription waits for the server before giving up on it."""
_RETRY_FIRST, _RETRY_MAX = 0.1, 2.0


class NatsSubscription:
    """Deliveries of one topic's durable consumer (see ``cqrs._internal.brokers.delivery``).

    Made by ``NatsJetStreamBroker.subscribe``; call :meth:`start` before iterating.
    """

    def __init__(
        self,
        client: Client,
        js: JetStreamContext,
        topology: Topology,
        *,
        topic: str,
        durable: str,
        prefetch: int,
        publish: Publish,
        on_close: Callable[[NatsSubscription], object] | None = None,
    ) -> None:
        self._client = client
        self._js = js
        self._topology = topology
        self._topic = topic
        self._durable = durable
        self._prefetch = prefetch
        self._publish = publish
        self._on_close = on_close
        stream = topology.stream
        self._stream = stream.name
        self._subject = stream.subject(topic)
        self._dead_letter_subject = stream.subject(dead_letter_topic(topic))
        self._next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream.name}.{durable}"
        self._inbox = ""
        self._threshold = max(1, prefetch // 2)
        self._ready: collections.deque[Msg] = collections.deque()
        self._unsettled: set[NatsDelivery] = set()
        self._readable = asyncio.Event()
        self._wake = asyncio.Event()
        self._pull_id = 0
        self._pull_remaining = 0
        self._pull_seen = 0.0
        self._pause_until = 0.0
        self._consumer_lost = False
        self._subscriptions: list[NatsCoreSubscription] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._giving_up: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def topic(self) -> str:
        """The topic this subscription reads."""
        return self._topic

    @property
    def durable(self) -> str:
        """The durable consumer this subscription reads."""
        return self._durable

    @property
    def prefetch(self) -> int:
        """How many deliveries may be unsettled at once."""
        return self._prefetch

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran."""
        return self._closed

    async def start(self) -> None:
        """Create the consumer if needed, listen on an inbox and start pulling. Raises
        ``ValueError`` when the consumer cannot exist as asked, nats-py's errors when the
        server does not answer."""
        await self._topology.ensure_consumer(self._js, self._durable, self._subject)
        self._inbox = self._client.new_inbox()
        advisories = f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{self._stream}.{self._durable}"
        subscribe: Any = self._client.subscribe  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
        try:
            self._subscriptions.append(await subscribe(self._inbox + ".*", cb=self._received))
            self._subscriptions.append(await subscribe(advisories, cb=self._max_delivered))
        except BaseException:
            await self._unsubscribe()
            raise
        self._spawn(self._pump(), self._tasks)
        self._spawn(self._keep_alive(), self._tasks)

    def reconnected(self) -> None:
        """The connection came back: unless JetStream shows the pull request is still alive
        (a heartbeat within ``HEARTBEAT``), pull again; a restarted server forgot it."""
        soon = asyncio.get_running_loop().time() - DEAD_AFTER + HEARTBEAT + 0.5
        self._pull_seen = min(self._pull_seen, soon)
        self._wake.set()

    # -- receiving ---------------------------------------------------------------------------

    def _spawn(self, work: Coroutine[Any, Any, None], tasks: set[asyncio.Task[None]]) -> None:
        task = asyncio.create_task(work)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def _pump(self) -> None:
        """Keep one pull request outstanding while there is room for its messages."""
        loop = asyncio.get_running_loop()
        delay = _RETRY_FIRST
        while not self._closed:
            now = loop.time()
            if self._pull_remaining and now - self._pull_seen > DEAD_AFTER:
                logger.debug("Pull request %d of %s went silent.", self._pull_id, self._durable)
                self._pull_remaining = 0
            free = self._prefetch - len(self._ready) - len(self._unsettled)
            if not self._pull_remaining and free >= self._threshold and now >= self._pause_until:
                try:
                    if self._consumer_lost:
                        self._topology.forget_consumer(self._durable)
                        await self._topology.ensure_consumer(self._js, self._durable, self._subject)
                        self._consumer_lost = False
                    await self._pull(free)
                    delay = _RETRY_FIRST
                except Exception as exc:  # the pump must outlive any failure: log, retry
                    self._pull_remaining = 0
                    logger.log(
                        logging.DEBUG if isinstance(exc, NatsError | OSError) else logging.ERROR,
                        "Pulling from %s failed (%s: %s); retrying in %.2g s.",
                        self._durable,
                        type(exc).__name__,
                        exc,
                        delay,
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, _RETRY_MAX)
                continue
            if self._pull_remaining:
                timeout: float | None = max(0.05, self._pull_seen + DEAD_AFTER - now)
            elif now < self._pause_until:
                timeout = self._pause_until - now
            else:
                timeout = None
            self._wake.clear()
            try:
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def _pull(self, batch: int) -> None:
        self._pull_id += 1
        self._pull_remaining = batch
        self._pull_seen = asyncio.get_running_loop().time()
        request = {
            "batch": batch,
            "expires": int(PULL_EXPIRES * 1e9),
            "idle_heartbeat": int(HEARTBEAT * 1e9),
        }
        await self._client.publish(
            self._next_subject,
            json.dumps(request).encode(),
            reply=f"{self._inbox}.{self._pull_id}",
        )

    async def _received(self, msg: Msg) -> None:
        if not msg.reply:
            self._status(msg)
            return
        if self._closed:  # arrived while closing: give it back at once
            await _quietly(msg.nak(), "returning a message")
            return
        if self._pull_remaining:
            self._pull_remaining -= 1
            self._pull_seen = asyncio.get_running_loop().time()
            if not self._pull_remaining:
                self._wake.set()
        self._ready.append(msg)
        self._readable.set()

    def _status(self, msg: Msg) -> None:
        """A status message about pull request ``<inbox>.<id>``: a heartbeat, or its end."""
        headers: dict[str, Any] = msg.headers or {}
        if msg.subject.rpartition(".")[2] != str(self._pull_id) or not self._pull_remaining:
            return  # about an earlier request
        code = headers.get("Status")
        self._pull_seen = asyncio.get_running_loop().time()
        if code == "100":
            return
        self._pull_remaining = 0
        self._wake.set()
        if code in ("404", "408"):  # no messages / expired: pull again
            return
        description = headers.get("Description", "")
        logger.warning(
            "JetStream ended a pull of %s on %s: %s %s.",
            self._durable,
            self._stream,
            code,
            description,
        )
        if code == "503" or "Consumer Deleted" in str(description):
            self._consumer_lost = True
        self._pause_until = asyncio.get_running_loop().time() + _RETRY_MAX

    async def _keep_alive(self) -> None:
        """Send progress acks for the messages held, every third of ``ack_wait``."""
        interval = self._topology.consumer.ack_wait / 3
        while not self._closed:
            await asyncio.sleep(interval)
            held = [*self._ready, *(d.raw for d in self._unsettled)]
            for msg in held:
                if msg.is_acked:
                    continue
                try:
                    await msg.in_progress()
                except NatsError:
                    break  # the connection is down: the next round tries again

    async def _max_delivered(self, advisory: Msg) -> None:
        try:
            data = json.loads(advisory.data)
            sequence, deliveries = int(data["stream_seq"]), int(data.get("deliveries", 0))
        except (ValueError, KeyError, TypeError):
            logger.warning("Unreadable max-deliveries advisory: %r", advisory.data)
            return
        self._spawn(self._give_up(sequence, deliveries), self._giving_up)

    async def _give_up(self, sequence: int, deliveries: int) -> None:
        """Move message ``sequence``, which JetStream stopped delivering, to dead letters."""
        try:
            try:
                raw = await self._js.get_msg(self._stream, sequence)
            except NotFoundError:
                return  # another subscription moved it already
            reason = (
                f"JetStream gave up after {deliveries} deliveries without an ack "
                f"(max_deliver={self._topology.consumer.max_deliver})"
            )
            raw_headers: Any = raw.headers  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
            headers = dead_letter_headers(
                raw_headers,
                reason=reason,
                topic=self._topic,
                fallback_id=f"{self._stream}-{sequence}",
            )
            await self._publish(self._dead_letter_subject, raw.data or b"", headers)
            with contextlib.suppress(NotFoundError):
                await self._js.delete_msg(self._stream, sequence)
            logger.error("Message %d of %s is dead-lettered: %s", sequence, self._topic, reason)
        except Exception:
            logger.exception(
                "Could not dead-letter message %d of %s, which JetStream gave up; it stays "
                "in stream %s.",
                sequence,
                self._topic,
                self._stream,
            )

    # -- the iterator ----------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[NatsDelivery]:
        return self

    async def __anext__(self) -> NatsDelivery:
        """The next delivery, once fewer than ``prefetch`` are unsettled;
        ``StopAsyncIteration`` once closed. Cancel-safe."""
        while True:
            if self._closed:
                raise StopAsyncIteration
            if self._ready and len(self._unsettled) < self._prefetch:
                delivery = NatsDelivery(self, self._ready.popleft())
                self._unsettled.add(delivery)
                return delivery
            self._readable.clear()
            await self._readable.wait()

    def settled(self, delivery: NatsDelivery) -> None:
        """``delivery`` is settled: make room for the next one."""
        self._unsettled.discard(delivery)
        self._readable.set()
        self._wake.set()

    # -- closing ---------------------------------------------------------------------------

    async def close(self) -> None:
        """Stop pulling and give back every message held; JetStream delivers them again at
        once (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._readable.set()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._unsubscribe()
        if self._giving_up:  # let a dead-lettering finish: cut short, it leaves two copies
            _, late = await asyncio.wait(set(self._giving_up), timeout=CLOSE_TIMEOUT)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        held = [*self._ready, *(d.raw for d in self._unsettled)]
        held.sort(key=_stream_sequence)  # JetStream delivers them again in the order of naks
        self._ready.clear()
        self._unsettled.clear()
        for msg in held:
            if not msg.is_acked:
                await _quietly(msg.nak(), "returning a message")
        if held and self._client.is_connected:
            await _quietly(self._client.flush(timeout=int(CLOSE_TIMEOUT)), "flushing")
        if self._on_close is not None:
            self._on_close(self)

    async def _unsubscribe(self) -> None:
        """Stop listening; messages already received are handled first (and returned)."""
        for subscription in self._subscriptions:
            if self._client.is_connected:  # else nothing can arrive to drain
                try:
                    async with asyncio.timeout(CLOSE_TIMEOUT):
                        await subscription.drain()
                    continue
                except (NatsError, TimeoutError, OSError) as exc:
                    logger.debug("draining a subscription failed: %s", exc)
            await _quietly(subscription.unsubscribe(), "unsubscribing")
        self._subscriptions.clear()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def publish_dead_letter(self, raw: Msg, reason: str) -> None:
        """Publish the dead-letter copy of ``raw`` and wait for its acknowledgement."""
        headers = dead_letter_headers(
            raw.headers,
            reason=reason,
            topic=self._topic,
            fallback_id=f"{self._stream}-{raw.metadata.sequence.stream}",
        )
        await self._publish(self._dead_letter_subject, raw.data, headers)


class NatsDelivery:
    """One message of a :class:`NatsSubscription` (see ``Delivery``)."""

    __slots__ = ("_message", "_raw", "_settled", "_subscription")

    def __init__(self, subscription: NatsSubscription, raw: Msg) -> None:
        self._subscription = subscription
        self._raw = raw
        self._message: Message | None = None
        self._settled = False

    @property
    def raw(self) -> Msg:
        """The nats-py message."""
        return self._raw

    @property
    def message(self) -> Message:
        """The message as received (``payload_bytes`` is the body)."""
        if self._message is None:
            self._message = received(self._raw.data, self._raw.headers, self._subscription.topic)
        return self._message

    @property
    def attempt(self) -> int:
        """JetStream's delivery count (``num_delivered``): 1 for the first delivery."""
        return self._raw.metadata.num_delivered

    def _claim(self, action: str) -> None:
        claim(action, settled=self._settled, closed=self._subscription.closed)
        self._settled = True

    async def ack(self) -> None:
        """Settle as done (``+ACK``). Raises :class:`~cqrs.errors.DeliveryLostError` when
        the connection is closed (JetStream delivers the message again after ``ack_wait``)
        and ``DeliverySettledError`` when already settled."""
        self._claim("ack")
        try:
            await self._raw.ack()
        except (NatsError, OSError) as exc:
            raise self._lost("ack", exc) from exc
        finally:
            self._subscription.settled(self)

    async def nack(self, requeue: bool = True, *, delay: float | None = None) -> None:
        """Deliver again (``-NAK``), after ``delay`` seconds when given; or, with
        ``requeue=False``, dead-letter the message as ``"rejected"``."""
        if not requeue:
            await self.dead_letter("rejected")
            return
        self._claim("nack")
        try:
            await self._raw.nak(delay=delay)
        except (NatsError, OSError) as exc:
            raise self._lost("nack", exc) from exc
        finally:
            self._subscription.settled(self)

    def _lost(self, action: str, exc: BaseException) -> DeliveryLostError:
        return settlement_lost(
            action,
            self.message.message_id,
            "the connection to NATS",
            exc,
            "JetStream delivers it again after ack_wait",
        )

    async def dead_letter(self, reason: str) -> None:
        """Publish the copy with ``reason`` to the dead-letter subject, then ``+TERM``.
        When the copy cannot be published the message is returned (``-NAK``) and the
        error raised."""
        self._claim("dead-letter")
        try:
            try:
                await self._subscription.publish_dead_letter(self._raw, reason)
            except BaseException:
                await _quietly(self._raw.nak(), "returning a message")
                raise
            await self._raw.term()
        finally:
            self._subscription.settled(self)


def _stream_sequence(msg: Msg) -> int:
    return msg.metadata.sequence.stream


async def _quietly(work: Awaitable[object], what: str) -> None:
    """Await ``work``; a failure (the connection is gone) is logged: the server delivers
    the message again after ``ack_wait``."""
    try:
        await work
    except (NatsError, OSError) as exc:
        logger.debug("%s failed: %s", what, exc)
