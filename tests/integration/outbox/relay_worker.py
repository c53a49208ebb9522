"""A relay process for the crash tests: ``python -m tests.integration.outbox.relay_worker URL
TABLE LOG DELAY LEASE``.

It relays the outbox table ``TABLE`` of the database at ``URL`` (batches of 50, 5 publishes
in flight, lease ``LEASE`` seconds) to a broker that takes ``DELAY`` seconds per message and
then, as its confirmation, appends the message id to ``LOG`` (one line, flushed), until it is
killed. A batch therefore spends about ``10 * DELAY`` seconds publishing, its lines appearing
one group of 5 at a time.
What is in ``LOG`` is what a consumer would have received from this process. With
``RELAY_AMQP_URL`` (and ``RELAY_AMQP_EXCHANGE``) in the environment, each message is also
published to that RabbitMQ exchange, confirmed, before its line is written.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import TextIO

from cqrs._internal.brokers.protocol import Message, MessageBroker

BATCH = 50
IN_FLIGHT = 5


class LoggingBroker(MessageBroker):
    """Confirms each message after ``delay`` seconds by writing its id to ``out``."""

    def __init__(self, out: TextIO, delay: float, forward: MessageBroker | None = None) -> None:
        self.out = out
        self.delay = delay
        self.forward = forward

    async def send_message(self, message: Message) -> None:
        await asyncio.sleep(self.delay)
        if self.forward is not None:
            await self.forward.send_message(message)
        self.out.write(f"{message.message_id}\n")
        self.out.flush()


async def relay(url: str, table: str, log: Path, delay: float, lease: float) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.orm import DeclarativeBase

    from cqrs._internal.outbox.relay import OutboxRelay
    from cqrs._internal.outbox.sqlalchemy import OutboxModel, rebind_outbox_model

    class WorkerBase(DeclarativeBase):
        pass

    model = rebind_outbox_model(OutboxModel, WorkerBase, table)
    engine = create_async_engine(url)
    forward: MessageBroker | None = None
    if "RELAY_AMQP_URL" in os.environ:
        from cqrs.message_brokers.amqp import AMQPMessageBroker

        forward = AMQPMessageBroker.from_url(
            os.environ["RELAY_AMQP_URL"], os.environ.get("RELAY_AMQP_EXCHANGE", "cqrs")
        )
        await forward.__aenter__()  # the process is killed: nothing to close
    with log.open("a", encoding="utf-8") as out:
        worker = OutboxRelay(
            engine,
            LoggingBroker(out, delay, forward),
            model=model,
            batch_size=BATCH,
            concurrency=IN_FLIGHT,
            lease=lease,
            poll_interval=0.05,
        )
        await worker.run()


def file_broker() -> MessageBroker:
    """For the command-line test (``--broker tests.integration.outbox.relay_worker:file_broker``):
    a :class:`LoggingBroker` without delay writing to the file named by ``$RELAY_LOG``."""
    out = Path(os.environ["RELAY_LOG"]).open("a", encoding="utf-8")  # noqa: SIM115 (process-long)
    return LoggingBroker(out, 0.0)


if __name__ == "__main__":
    _url, _table, _log, _delay, _lease = sys.argv[1:]
    asyncio.run(relay(_url, _table, Path(_log), float(_delay), float(_lease)))
