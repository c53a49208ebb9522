"""The outbox relay as a command: ``python -m cqrs._internal.outbox.relay_cli --database URL
--broker URL [options]`` (see :func:`main`, or ``--help``).

It runs one :class:`~cqrs._internal.outbox.relay.OutboxRelay` until SIGINT or SIGTERM, which
stop it gracefully (the batch in hand is published and settled first); start as many
processes as needed, on as many machines. ``--once`` relays until nothing is claimable and
exits (for a scheduler); ``--lag`` prints the lag as one JSON object and exits (for a health
check or a metrics scraper).

The broker is a URL (``amqp://``, ``amqps://``: RabbitMQ; ``nats://``, ``tls://``: NATS
JetStream; ``redis://``, ``rediss://``, ``unix://``: Redis Streams; ``kafka://host:port,...``:
Kafka) or ``module:name``, an importable ``MessageBroker`` instance or a callable returning
one (awaited if it returns an awaitable) for anything else. Logs go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import importlib
import inspect
import json
import logging
import signal
import sys
from collections.abc import Generator, Sequence
from typing import Any

from cqrs._internal.brokers.protocol import MessageBroker
from cqrs._internal.outbox.models import MAX_FLUSH_COUNTER_VALUE
from cqrs._internal.outbox.relay import OutboxRelay

__all__ = ["build_parser", "main", "make_broker"]

logger = logging.getLogger("cqrs.outbox")

_BROKER_SCHEMES = {
    "amqp": "rabbitmq",
    "amqps": "rabbitmq",
    "nats": "nats",
    "tls": "nats",
    "redis": "redis",
    "rediss": "redis",
    "unix": "redis",
    "kafka": "kafka",
}


def build_parser() -> argparse.ArgumentParser:
    """The command's arguments."""
    parser = argparse.ArgumentParser(
        prog="python -m cqrs._internal.outbox.relay_cli",
        description="Publish the rows of a transactional outbox table to a message broker.",
    )
    parser.add_argument(
        "--database",
        required=True,
        help="SQLAlchemy URL with an async driver, e.g. postgresql+asyncpg://user@host/db",
    )
    parser.add_argument(
        "--broker",
        help="amqp://..., nats://..., redis://..., kafka://host:port, or module:name of a "
        "MessageBroker (or of a function returning one); not needed with --lag",
    )
    parser.add_argument("--exchange", default="cqrs", help="RabbitMQ exchange (default: cqrs)")
    parser.add_argument("--table", default="outbox", help="outbox table name (default: outbox)")
    parser.add_argument("--batch-size", type=int, default=100, help="rows per claim (100)")
    parser.add_argument("--lease", type=float, default=30.0, help="seconds a claim holds (30)")
    parser.add_argument(
        "--max-attempts",
        type=int,
        default=MAX_FLUSH_COUNTER_VALUE,
        help=f"failed publishes before a row is given up ({MAX_FLUSH_COUNTER_VALUE})",
    )
    parser.add_argument(
        "--poll-interval", type=float, default=1.0, help="seconds to wait when idle (1)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=None, help="publishes in flight (the batch size)"
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="relay until idle, then exit")
    mode.add_argument("--lag", action="store_true", help="print the lag as JSON and exit")
    parser.add_argument("--log-level", default="INFO", help="stderr log level (INFO)")
    return parser


async def make_broker(spec: str, *, exchange: str = "cqrs") -> MessageBroker:
    """The broker named by ``spec`` (see the module docstring). Raises ``ValueError`` for a
    spec that is neither a known URL nor ``module:name``, ``TypeError`` when ``module:name``
    is not a ``MessageBroker`` nor makes one, and ``MissingExtraError`` when the broker's
    client library is not installed."""
    scheme, separator, rest = spec.partition("://")
    kind = _BROKER_SCHEMES.get(scheme) if separator else None
    if kind == "rabbitmq":
        from cqrs._internal.brokers.amqp.producer import AMQPMessageBroker

        return AMQPMessageBroker.from_url(spec, exchange)
    if kind == "nats":
        from cqrs._internal.brokers.nats.producer import NatsJetStreamBroker

        return NatsJetStreamBroker.from_url(spec)
    if kind == "redis":
        from cqrs._internal.brokers.redis.producer import RedisMessageBroker

        return RedisMessageBroker.from_url(spec)
    if kind == "kafka":
        from cqrs._internal.brokers.kafka.broker import KafkaMessageBroker

        return KafkaMessageBroker.from_url(rest.rstrip("/"))
    module_name, colon, attribute = spec.partition(":")
    if separator or not colon or not module_name or not attribute:
        raise ValueError(
            f"--broker {spec!r} is neither a broker URL ({', '.join(sorted(_BROKER_SCHEMES))}"
            "://...) nor module:name of a MessageBroker"
        )
    found: Any = getattr(importlib.import_module(module_name), attribute)
    if not isinstance(found, MessageBroker) and callable(found):
        found = found()
        if inspect.isawaitable(found):
            found = await found
    if not isinstance(found, MessageBroker):
        raise TypeError(
            f"--broker {spec!r} gave {type(found).__name__}, not a MessageBroker (nor a "
            "callable returning one)"
        )
    return found


class _UsageError(Exception):
    """A setting the command cannot use; the message says which."""


@contextlib.contextmanager
def _setting() -> Generator[None]:
    try:
        yield
    except (ValueError, TypeError, ImportError) as exc:
        raise _UsageError(str(exc)) from exc


async def _run(args: argparse.Namespace) -> int:
    from cqrs._internal.sql import locking

    with _setting():
        engine = locking.engine_for_url(args.database)
    try:
        with _setting():
            model = locking.outbox_model(args.table)
        if args.lag:
            relay = OutboxRelay(engine, _NoBroker(), model=model, max_attempts=args.max_attempts)
            print(json.dumps(dataclasses.asdict(await relay.lag())))
            return 0
        with _setting():
            if not args.broker:
                raise ValueError("--broker is needed to relay (only --lag works without one)")
            broker = await make_broker(args.broker, exchange=args.exchange)
            relay = OutboxRelay(
                engine,
                broker,
                model=model,
                batch_size=args.batch_size,
                lease=args.lease,
                max_attempts=args.max_attempts,
                poll_interval=args.poll_interval,
                concurrency=args.concurrency,
            )
        try:
            if args.once:
                counts = await relay.drain()
            else:
                loop = asyncio.get_running_loop()
                for signum in (signal.SIGINT, signal.SIGTERM):
                    loop.add_signal_handler(signum, relay.stop)
                logger.info("Outbox relay: relaying table %r; SIGTERM stops it.", args.table)
                counts = await relay.run()
        finally:
            close = getattr(broker, "close", None)
            if callable(close):
                closing = close()
                if inspect.isawaitable(closing):
                    await closing
        logger.info("Outbox relay: done, %s", counts)
        print(json.dumps(dataclasses.asdict(counts)))
        return 0
    finally:
        await engine.dispose()


class _NoBroker(MessageBroker):
    """Stands in for the broker of a relay that only reads the lag."""

    async def send_message(self, message: Any) -> None:
        raise RuntimeError("this relay only reads the lag")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; return its exit status: 0, or 2 for bad arguments or settings
    (the message says which)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return asyncio.run(_run(args))
    except _UsageError as exc:
        parser.exit(2, f"{parser.prog}: error: {exc}\n")
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
