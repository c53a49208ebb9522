"""What the RabbitMQ side looks like, declared once per queue.

Every topic is a queue of the same name, bound with the topic as routing key to a direct
exchange. By default the exchange is durable, the queue a durable **quorum** queue (the
broker counts redeliveries in ``x-delivery-count`` and keeps messages across a restart) and
messages are published persistent. 4.x declared a transient queue, an auto-delete exchange
and transient messages: a RabbitMQ restart lost everything queued. Each queue dead-letters
into ``<queue>.dead-letter`` through the exchange :data:`DEAD_LETTER_EXCHANGE`, declared
together with it, so even a message RabbitMQ gives up by itself (past ``delivery_limit``)
lands somewhere.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any, Literal

from cqrs._internal._optional import require
from cqrs._internal.brokers.delivery import dead_letter_topic

with require("aio-pika", extra="rabbit", feature="cqrs.adapters.amqp"):
    from aio_pika import ExchangeType
    from aio_pika.abc import AbstractChannel, AbstractQueue

__all__ = ["DEAD_LETTER_EXCHANGE", "QueueOptions", "Topology"]

DEAD_LETTER_EXCHANGE = "cqrs.dead-letter"
"""The direct exchange every queue dead-letters through, routing key ``<queue>.dead-letter``
(one name for all, so a queue's arguments do not depend on who declares it first)."""


@dataclasses.dataclass(frozen=True)
class QueueOptions:
    """How queues are declared.

    ``queue_type="quorum"`` (default) gives exact attempt counts; ``"classic"`` only tells a
    first delivery (attempt 1) from a redelivery (attempt 2). ``durable=False`` (classic
    only) is the 4.x behaviour: the queue and its messages die with the server.
    ``delivery_limit`` (quorum only) makes RabbitMQ itself dead-letter a message delivered
    that many times (a consumer that crashes on it); ``None`` means no limit.
    """

    queue_type: Literal["quorum", "classic"] = "quorum"
    durable: bool = True
    delivery_limit: int | None = 20

    def __post_init__(self) -> None:
        if self.queue_type == "quorum" and not self.durable:
            raise ValueError("a quorum queue is always durable; use queue_type='classic'")

    def arguments(self, queue_name: str) -> dict[str, Any]:
        """The ``x-`` arguments of ``queue_name``."""
        arguments: dict[str, Any] = {
            "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
            "x-dead-letter-routing-key": dead_letter_topic(queue_name),
        }
        if self.queue_type == "quorum":
            arguments["x-queue-type"] = "quorum"
            if self.delivery_limit is not None:
                arguments["x-delivery-limit"] = self.delivery_limit
        return arguments


class Topology:
    """Declares each (exchange, queue) pair once per process: the exchange, the queue, its
    binding (when an exchange is given), and its dead-letter exchange, queue and binding.
    Concurrent first uses share one declaration; a failed one is retried by the next use."""

    def __init__(self, options: QueueOptions) -> None:
        self.options = options
        self._done: set[tuple[str | None, str]] = set()
        self._pending: dict[tuple[str | None, str], asyncio.Future[None]] = {}

    def forget(self, exchange_name: str | None, queue_name: str) -> None:
        """Declare this pair again on its next use (the server lost it)."""
        self._done.discard((exchange_name, queue_name))

    async def ensure(
        self, channel: AbstractChannel, exchange_name: str | None, queue_name: str
    ) -> None:
        """Declare the pair unless this process already did (``exchange_name=None``: the
        queue and its dead-letter side only, no binding)."""
        key = (exchange_name, queue_name)
        if key in self._done:
            return
        pending = self._pending.get(key)
        if pending is not None:
            await asyncio.shield(pending)
            return
        future = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            await self._declare(channel, exchange_name, queue_name)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()
            raise
        else:
            self._done.add(key)
            future.set_result(None)
        finally:
            del self._pending[key]

    async def queue(self, channel: AbstractChannel, name: str) -> AbstractQueue:
        """Declare queue ``name`` on ``channel`` (idempotent) and return it, so that a
        robust channel re-declares it, and restores its consumers, after a reconnection."""
        return await channel.declare_queue(
            name, durable=self.options.durable, arguments=self.options.arguments(name)
        )

    async def _declare(
        self, channel: AbstractChannel, exchange_name: str | None, queue: str
    ) -> None:
        durable = self.options.durable
        dead_exchange = await channel.declare_exchange(
            DEAD_LETTER_EXCHANGE, ExchangeType.DIRECT, durable=durable
        )
        dead_queue = await channel.declare_queue(
            dead_letter_topic(queue),
            durable=durable,
            arguments=self.options.arguments(dead_letter_topic(queue)),
        )
        await dead_queue.bind(dead_exchange, routing_key=dead_letter_topic(queue))
        declared = await channel.declare_queue(
            queue, durable=durable, arguments=self.options.arguments(queue)
        )
        if exchange_name is not None:
            exchange = await channel.declare_exchange(
                exchange_name, ExchangeType.DIRECT, durable=durable
            )
            await declared.bind(exchange, routing_key=queue)
