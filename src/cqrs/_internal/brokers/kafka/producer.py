"""Sending records to Kafka: the 4.x ``cqrs.adapters.kafka`` adapter and its factory.

Differences from 4.x, on purpose:

* **Acknowledged or raised.** Every record waits for Kafka's acknowledgement (``acks="all"``
  by default: every in-sync replica has it). A record that is refused, or not acknowledged
  within ``timeout`` seconds (aiokafka reconnects and retries meanwhile; failed tries are
  tried again after ``retry_delay`` seconds, doubling, up to ``retry_count`` tries), raises
  :class:`KafkaPublishError`. 4.x retried three times one second apart and its emitter then
  swallowed the error.
* **Pipelined.** Concurrent ``produce`` calls share aiokafka's batches: many records are in
  flight at once (``asyncio.gather`` of many ``send_message`` calls), rather than one
  ``send_and_wait`` after the other; :meth:`KafkaProducer.produce_many` hands a whole batch
  to aiokafka before awaiting any acknowledgement, without a task per record.
* **Built where it runs.** :func:`kafka_producer_factory` can be called anywhere (at import
  time too); the aiokafka producer is made on first use, inside the running loop (4.x
  called ``asyncio.get_event_loop()``/``set_event_loop`` and passed ``loop=``).
* **Keys.** ``produce(..., key=...)`` sets the record key (the broker sends the event id);
  4.x sent none.

Delivery is at least once: a record retried after a lost connection may have been stored
already (consumers deduplicate on the message id). The idempotent producer
(``enable_idempotence=True``, passed through to aiokafka) removes those duplicates on a real
Kafka; the Kafka-protocol broker the tests run on cannot test it.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Literal, NamedTuple

from cqrs._internal._optional import require
from cqrs._internal.brokers.kafka.errors import KafkaPublishError
from cqrs._internal.brokers.kafka.wire import encode_headers
from cqrs._internal.serialization.json import default_serializer

with require("aiokafka", extra="kafka", feature="cqrs.adapters.kafka"):
    from aiokafka import AIOKafkaProducer  # pyright: ignore[reportMissingTypeStubs]
    from aiokafka.errors import (  # pyright: ignore[reportMissingTypeStubs]
        KafkaError,
        KafkaTimeoutError,
    )

__all__ = [
    "PUBLISH_TIMEOUT",
    "Headers",
    "KafkaProducer",
    "SaslMechanism",
    "SecurityProtocol",
    "Serializer",
    "kafka_producer_factory",
]

logger = logging.getLogger("cqrs.kafka")

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "GSSAPI", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"]
Serializer = Callable[[Any], bytes]

PUBLISH_TIMEOUT = 30.0
"""Seconds a record may take to be acknowledged, reconnections and retries included."""

_RETRY_MAX = 5.0


def passthrough_serializer(serializer: Serializer | None) -> Serializer:
    """aiokafka's value serializer: bytes as they are, anything else through ``serializer``
    (by default the JSON of ``to_dict()``/``model_dump()``)."""
    encode = serializer or default_serializer

    def serialize(value: Any) -> bytes:
        if isinstance(value, bytes | bytearray):
            return bytes(value)
        return encode(value)

    return serialize


Headers = Mapping[str, str | bytes] | list[tuple[str, bytes]]
"""Record headers: a dict of text or bytes values, or aiokafka's list of ``(name, bytes)``."""


class _Record(NamedTuple):
    topic: str
    value: Any
    key: bytes | None
    headers: list[tuple[str, bytes]]


def _key_bytes(key: str | bytes | None) -> bytes | None:
    return key.encode("utf-8") if isinstance(key, str) else key


def _header_list(headers: Headers | None) -> list[tuple[str, bytes]]:
    return headers if isinstance(headers, list) else encode_headers(headers)


class KafkaProducer:
    """Sends records and waits for Kafka's acknowledgement (4.x
    ``cqrs.adapters.kafka.KafkaProducer``).

    ``producer`` is an ``aiokafka.AIOKafkaProducer`` (started on first use if it is not), or
    ``None`` with ``client_options``: the producer is then made on first use from them (see
    :func:`kafka_producer_factory`). ``legacy_value_serializer`` (4.x) tells the broker to
    hand the message's payload dict, not its bytes, to the producer's own serializer.
    ``client_options`` (connection and security options of aiokafka) also let a broker open
    consumers on the same cluster. Raises ``ValueError`` for ``retry_count`` below 1 or a
    ``timeout`` that is not positive, ``TypeError`` when given neither a producer nor
    options.
    """

    def __init__(
        self,
        producer: Any = None,
        retry_count: int = 3,
        retry_delay: float = 1,
        legacy_value_serializer: bool = False,
        *,
        timeout: float = PUBLISH_TIMEOUT,
        client_options: Mapping[str, Any] | None = None,
        producer_options: Mapping[str, Any] | None = None,
    ) -> None:
        if producer is None and client_options is None:
            raise TypeError(
                "KafkaProducer needs an aiokafka.AIOKafkaProducer or client_options; "
                "build it with kafka_producer_factory(dsn)"
            )
        if retry_count < 1:
            raise ValueError(f"retry_count must be at least 1, got {retry_count}")
        if not timeout > 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        self.producer: Any = producer
        self.retry_count = retry_count
        self.retry_delay = retry_delay
        self.legacy_value_serializer = legacy_value_serializer
        self.timeout = timeout
        self.client_options: dict[str, Any] | None = (
            None if client_options is None else dict(client_options)
        )
        self._producer_options = dict(producer_options or {})
        self._owns_client = producer is None
        self._started = False
        self._starting: asyncio.Lock | None = None

    async def start(self) -> None:
        """Connect now (``produce`` does it on first use), retrying like ``produce``;
        raises :class:`KafkaPublishError` when Kafka cannot be reached in time."""
        loop = asyncio.get_running_loop()
        await self._with_retries(loop.time() + self.timeout, "the connection", self._ensure_started)

    async def produce(
        self,
        topic: str,
        message: Any,
        headers: Headers | None = None,
        *,
        key: str | bytes | None = None,
    ) -> None:
        """Send ``message`` to ``topic`` with ``headers`` (and ``key``) and wait until Kafka
        acknowledged it. Headers are a dict of text or bytes values, or aiokafka's list of
        ``(name, bytes)``.

        Raises :class:`KafkaPublishError` when the record was refused (too large, not
        authorized, ...) or not acknowledged within ``timeout`` seconds.
        """
        record_key = key.encode("utf-8") if isinstance(key, str) else key
        record_headers = headers if isinstance(headers, list) else encode_headers(headers)
        deadline = asyncio.get_running_loop().time() + self.timeout
        failure: BaseException | None = None
        if self._started:  # the fast path: one try, bounded by aiokafka's request timeout
            try:
                await (
                    await self.producer.send(topic, message, key=record_key, headers=record_headers)
                )
                return
            except KafkaError as exc:
                failure = exc
        await self._retry(_Record(topic, message, record_key, record_headers), deadline, failure)

    async def produce_many(self, records: Iterable[tuple[str, Any, Any, Headers | None]]) -> None:
        """Send every ``(topic, value, key, headers)`` record, then wait for all their
        acknowledgements: many records in flight without a task each. Records that failed
        are tried again one by one (like :meth:`produce`); raises
        :class:`KafkaPublishError` naming how many were not acknowledged, after every other
        one was."""
        batch = [
            _Record(topic, value, _key_bytes(key), _header_list(headers))
            for topic, value, key, headers in records
        ]
        if not batch:
            return
        deadline = asyncio.get_running_loop().time() + self.timeout
        pending: list[tuple[_Record, Any]] = []
        failed: list[tuple[_Record, BaseException | None]] = []
        if self._started:
            for record in batch:
                try:
                    pending.append((record, await self._send(record)))
                except KafkaError as exc:
                    failed.append((record, exc))
        else:
            failed = [(record, None) for record in batch]
        if pending:
            outcomes = await asyncio.gather(*(f for _, f in pending), return_exceptions=True)
            for (record, _), outcome in zip(pending, outcomes, strict=True):
                if isinstance(outcome, BaseException):
                    if not isinstance(outcome, KafkaError):
                        raise outcome
                    failed.append((record, outcome))
        if not failed:
            return
        retried = await asyncio.gather(
            *(self._retry(record, deadline, first) for record, first in failed),
            return_exceptions=True,
        )
        errors = [e for e in retried if isinstance(e, BaseException)]
        if errors:
            raise KafkaPublishError(
                f"{len(errors)} of {len(batch)} records were not acknowledged; the first: "
                f"{errors[0]}"
            ) from errors[0]

    async def _send(self, record: _Record) -> Any:
        """Hand ``record`` to aiokafka; the future of its acknowledgement."""
        return await self.producer.send(
            record.topic, record.value, key=record.key, headers=record.headers
        )

    async def _retry(self, record: _Record, deadline: float, failure: BaseException | None) -> None:
        """The slow path: connect if needed and try ``record`` until it is acknowledged,
        ``retry_count`` tries failed, or ``deadline`` passed."""

        async def attempt() -> None:
            await self._ensure_started()
            await (await self._send(record))

        await self._with_retries(
            deadline, f"a record for {record.topic!r}", attempt, failed=failure
        )

    async def close(self) -> None:
        """Flush what is in flight and disconnect. A producer made from options is made
        again by the next ``produce``."""
        producer = self.producer
        self._started = False
        if producer is None:
            return
        if self._owns_client:
            self.producer = None
        await producer.stop()

    async def _with_retries(
        self,
        deadline: float,
        what: str,
        attempt: Callable[[], Awaitable[object]],
        *,
        failed: BaseException | None = None,
    ) -> None:
        """Await ``attempt()`` until it succeeds; retriable Kafka errors are tried again
        after a backoff while tries and time remain. ``failed``: the error of a first try
        made already (it counts)."""
        delay = min(self.retry_delay, _RETRY_MAX)
        tries = 0
        if failed is not None:
            tries = 1
            if not self._retriable(failed, deadline) or tries >= self.retry_count:
                raise self._failure(what, failed, tries) from failed
            await self._backoff(what, failed, delay, deadline)
            delay = min(delay * 2, max(self.retry_delay, _RETRY_MAX))
        while True:
            tries += 1
            try:
                async with asyncio.timeout_at(deadline):
                    await attempt()
                return
            except TimeoutError as exc:
                raise KafkaPublishError(
                    f"Kafka ({self._servers()}) did not acknowledge {what} within "
                    f"{self.timeout:g} s ({tries} tries); a record may not have been stored."
                ) from exc
            except KafkaError as exc:
                if not self._retriable(exc, deadline) or tries >= self.retry_count:
                    raise self._failure(what, exc, tries) from exc
                await self._backoff(what, exc, delay, deadline)
                delay = min(delay * 2, max(self.retry_delay, _RETRY_MAX))

    def _retriable(self, exc: BaseException, deadline: float) -> bool:
        """A connection loss, a leader change, a timed-out request, ... while time is left."""
        if asyncio.get_running_loop().time() >= deadline:
            return False
        return bool(getattr(exc, "retriable", False)) or isinstance(exc, KafkaTimeoutError)

    def _failure(self, what: str, exc: BaseException, tries: int) -> KafkaPublishError:
        return KafkaPublishError(
            f"Kafka ({self._servers()}) did not acknowledge {what} ({type(exc).__name__}: "
            f"{exc}; {tries} tries); a record may not have been stored."
        )

    async def _backoff(self, what: str, exc: BaseException, delay: float, deadline: float) -> None:
        remaining = deadline - asyncio.get_running_loop().time()
        logger.warning(
            "Sending %s failed (%s: %s); trying again in %.2g s.",
            what,
            type(exc).__name__,
            exc,
            min(delay, remaining),
        )
        await asyncio.sleep(max(0.0, min(delay, remaining)))

    def _servers(self) -> str:
        if self.client_options is not None:
            return str(self.client_options.get("bootstrap_servers", "?"))
        client = getattr(self.producer, "client", None)
        return str(getattr(client, "hosts", "?"))

    async def _ensure_started(self) -> Any:
        if self._started:
            return self.producer
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self._started:
                return self.producer
            producer = self.producer
            if producer is not None and not self._owns_client and _bootstrapped(producer):
                self._started = True  # the caller started it already
                return producer
            if producer is None:
                assert self.client_options is not None
                producer = self.producer = AIOKafkaProducer(
                    **self.client_options, **self._producer_options
                )
            try:
                await producer.start()
            except BaseException:
                if self._owns_client:  # a failed start leaves a half-made client: drop it
                    self.producer = None
                    await producer.stop()
                raise
            self._started = True
            return producer


def _bootstrapped(producer: Any) -> bool:
    """Whether an aiokafka producer handed in was started already (it knows brokers)."""
    try:
        return bool(producer.client.cluster.brokers())
    except AttributeError:
        return False


def kafka_producer_factory(
    dsn: str,
    security_protocol: SecurityProtocol = "PLAINTEXT",
    sasl_mechanism: SaslMechanism = "PLAIN",
    ssl_context: ssl.SSLContext | None = None,
    retry_count: int = 3,
    retry_delay: float = 1,
    user: str | None = None,
    password: str | None = None,
    value_serializer: Serializer | None = None,
    *,
    acks: int | Literal["all"] = "all",
    timeout: float = PUBLISH_TIMEOUT,
    **producer_options: Any,
) -> KafkaProducer:
    """A :class:`KafkaProducer` for the bootstrap servers ``dsn`` (``"host:port,..."``), with
    the 4.x parameters (the keyword-only ones are ours). Nothing connects until the first
    ``produce`` (or ``start``).

    ``acks`` is ``"all"`` by default (4.x: aiokafka's default, 1). ``producer_options`` go
    to ``aiokafka.AIOKafkaProducer`` as they are (``linger_ms``, ``compression_type``,
    ``enable_idempotence``, ...). Giving ``value_serializer`` makes the broker hand payload
    dicts to it, as 4.x did.
    """
    client_options: dict[str, Any] = {
        "bootstrap_servers": dsn,
        "security_protocol": security_protocol,
        "sasl_mechanism": sasl_mechanism,
    }
    if ssl_context is not None:
        client_options["ssl_context"] = ssl_context
    if user is not None:
        client_options["sasl_plain_username"] = user
    if password is not None:
        client_options["sasl_plain_password"] = password
    return KafkaProducer(
        None,
        retry_count=retry_count,
        retry_delay=retry_delay,
        legacy_value_serializer=value_serializer is not None,
        timeout=timeout,
        client_options=client_options,
        producer_options={
            "acks": acks,
            "value_serializer": passthrough_serializer(value_serializer),
            # one try (a request, or a batch waiting for a connection) gives up with the
            # publish timeout, so the fast path of produce needs no timer of its own
            "request_timeout_ms": max(1, int(timeout * 1000)),
            **producer_options,
        },
    )
