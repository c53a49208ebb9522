"""The outbox relay: moves outbox rows to a message broker, several relays at once if need be.

One batch (:meth:`OutboxRelay.run_once`):

1. **Claim** up to ``batch_size`` rows in one short transaction, under a lease
   (``cqrs._internal.sql.locking``: ``FOR UPDATE SKIP LOCKED`` on PostgreSQL and MariaDB,
   SQLite's single writer elsewhere). Relays running at once never get the same row while its
   lease runs.
2. **Publish** every row concurrently (at most ``concurrency`` in flight) as the 4.x
   ``EventProducer`` builds its message: ``message_name`` is the row's ``event_name``,
   ``message_id`` its ``event_id``, ``topic`` its topic, ``payload_bytes`` the stored payload
   (decompressed with ``compressor`` if given) and ``payload`` that payload decoded from JSON
   (the bytes themselves when they are not JSON, or for an event name in ``content_types``).
   Publishing stops at three quarters of the lease: what is not confirmed by then counts as
   failed, so the batch is settled before the lease runs out.
3. **Settle** the batch in one transaction: confirmed rows become ``PRODUCED``; failed rows
   become ``NOT_PRODUCED`` with one more attempt counted (``flush_counter``) and their next
   try after ``backoff(attempt)`` seconds; a row that failed ``max_attempts`` times is
   *given up* (no relay claims it again; :meth:`OutboxRelay.lag` counts it, and
   :meth:`OutboxRelay.requeue_given_up` gives it new attempts). A row is ``PRODUCED`` only
   after the broker confirmed it.

:meth:`OutboxRelay.run` and :meth:`OutboxRelay.drain` claim the next batch while the current
one is published, so the database's round trips overlap the broker's (not on SQLite, whose
single write lock would only make the claim and the settle queue for each other); a batch
claimed ahead that is not needed (the relay stops, the broker is out) is put back at once.

**A broker outage** is told apart from rows that fail: when no row of a batch was confirmed
and every failure is a connection-type error (``PublishError``, ``ConnectionError``,
``OSError``, ``TimeoutError``), the rows are put back without counting an attempt and the
relay pauses (jittered, doubling up to 5 s) before it tries again; an outage of any length
therefore gives up no row. **A crashed relay** (killed, machine lost) leaves its claimed rows
leased: they are claimed again once the lease ran out, so delivery is at least once: the rows
that were in flight may be published twice (deduplicate on the message id, the event id; the
inbox does).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import logging
import random
import uuid
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self

import pydantic_core

from cqrs._internal.backoff import Backoff
from cqrs._internal.brokers.message import EVENT_NAME_HEADER, MESSAGE_ID_HEADER
from cqrs._internal.brokers.protocol import Message, MessageBroker, PublishError
from cqrs._internal.errors import CQRSError
from cqrs._internal.outbox.models import MAX_FLUSH_COUNTER_VALUE

if TYPE_CHECKING:
    from cqrs._internal.sql.locking import ClaimedRow, Database, OutboxClaims, Retry

__all__ = [
    "Decompressor",
    "OutboxLag",
    "OutboxRelay",
    "RelayCounts",
    "RelayStateError",
    "default_backoff",
]

logger = logging.getLogger("cqrs.outbox")

PUBLISH_SHARE_OF_LEASE = 0.75
"""Publishing a batch stops at this share of the lease; the rest is for settling it."""

SETTLE_TIMEOUT_AFTER_CANCEL = 10.0
"""Seconds a cancelled relay spends settling what it had confirmed before it gives up."""

_OUTAGE_ERRORS = (PublishError, ConnectionError, OSError, TimeoutError)


class RelayStateError(CQRSError, RuntimeError):
    """A relay was started while it was already running."""


class Decompressor(Protocol):
    """What the relay needs of a ``Compressor``: ``decompress``."""

    def decompress(self, data: bytes, /) -> bytes:
        """The original bytes of ``data``."""
        ...


def default_backoff(attempt: int) -> float:
    """Seconds before the next try of a row whose attempt number ``attempt`` failed: 1 s,
    then doubling up to 60 s, each between half and all of that (jitter, so rows that
    failed together do not come back together)."""
    return min(60.0, 2.0 ** max(0, attempt - 1)) * (0.5 + random.random() / 2)


@dataclasses.dataclass(frozen=True, slots=True)
class RelayCounts:
    """What one batch (or, summed with ``+``, a whole run) did with the rows it claimed."""

    claimed: int = 0
    produced: int = 0
    """Confirmed by the broker and marked ``PRODUCED``."""
    retried: int = 0
    """Failed; claimable again after their backoff."""
    given_up: int = 0
    """Failed for the ``max_attempts``-th time; no relay claims them again."""
    deferred: int = 0
    """Put back without an attempt counted (a broker outage, or the relay cancelled)."""
    lost_leases: int = 0
    """Rows another relay had claimed again before this one settled them (its lease ran
    out first): they may be published twice."""

    def __add__(self, other: RelayCounts) -> RelayCounts:
        return RelayCounts(*(a + b for a, b in zip(_counts(self), _counts(other), strict=True)))


@dataclasses.dataclass(frozen=True, slots=True)
class OutboxLag:
    """How far the relays are behind, read from the table."""

    pending: int
    """Rows not produced yet that a relay will still publish (leased ones included)."""
    retrying: int
    """Of those, rows that failed before and wait for their next try."""
    oldest_pending_age: float | None
    """Seconds since the oldest pending row was written (its ``created_at``); ``None``
    when nothing is pending."""
    given_up: int
    """Rows that failed ``max_attempts`` times: no relay takes them any more (see
    :meth:`OutboxRelay.requeue_given_up`)."""


class OutboxRelay:
    """Publishes the rows of an outbox table through a :class:`MessageBroker`.

    ``database`` is an ``AsyncEngine`` or an ``async_sessionmaker``; ``broker`` any
    ``MessageBroker`` (the relay neither opens nor closes it, nor the engine). ``model`` is
    the outbox model (default ``OutboxModel``, table ``outbox``; a table of another name:
    ``rebind_outbox_model``). Per batch (see the module docstring): claim ``batch_size``
    rows for ``lease`` seconds, publish them ``concurrency`` at a time, settle them; a
    failed row is tried again after ``backoff(attempt)`` seconds (:func:`default_backoff`;
    ``cqrs.consumers.Backoff(...)`` fits too) and given up after ``max_attempts`` failures.

    Run it with ``await relay.run()`` until :meth:`stop`, or as ``async with relay:`` (it
    runs in a background task and stops, finishing its batch, on leaving the block), or one
    batch at a time with :meth:`run_once`. When a claim finds nothing the relay waits
    ``poll_interval`` seconds, or until :meth:`wake`. Any number of relays, in one process
    or many, may serve the same table.

    ``compressor`` (anything with ``decompress``, e.g. ``ZlibCompressor``) undoes the
    repository's compression. ``content_types`` maps an event name to the content type of
    its stored payload (a protobuf codec's ``"application/x-protobuf"``): such messages carry
    it and the 4.x ``event_name``/``message_id`` headers. Raises ``ValueError`` for a
    non-positive size or time, ``TypeError`` for a model without the relay's columns or a
    database that is neither an engine nor a session factory, and ``MissingExtraError`` when
    SQLAlchemy is not installed.
    """

    def __init__(
        self,
        database: Database,
        broker: MessageBroker,
        *,
        model: type[Any] | None = None,
        batch_size: int = 100,
        lease: float = 30.0,
        max_attempts: int = MAX_FLUSH_COUNTER_VALUE,
        backoff: Callable[[int], float] = default_backoff,
        poll_interval: float = 1.0,
        concurrency: int | None = None,
        compressor: Decompressor | None = None,
        content_types: Mapping[str, str] | None = None,
    ) -> None:
        for name, value in (
            ("batch_size", batch_size),
            ("max_attempts", max_attempts),
            ("concurrency", 1 if concurrency is None else concurrency),
        ):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value!r}")
        for name, seconds in (("lease", lease), ("poll_interval", poll_interval)):
            if not seconds > 0:
                raise ValueError(f"{name} must be a positive number of seconds, got {seconds!r}")
        from cqrs._internal.sql import locking

        if model is None:
            from cqrs._internal.outbox.sqlalchemy import OutboxModel

            model = OutboxModel
        self.claims: OutboxClaims = locking.OutboxClaims(database, model, max_attempts=max_attempts)
        self._is_transient = locking.is_transient
        self._now = locking.utc_now
        self._retry = locking.Retry
        self.broker = broker
        self.model = model
        self.batch_size = batch_size
        self.lease = lease
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.poll_interval = poll_interval
        self.concurrency = batch_size if concurrency is None else concurrency
        self.compressor = compressor
        self.content_types = dict(content_types or {})
        self.totals = RelayCounts()
        """Everything this relay did since it was made."""
        self._outage = Backoff(first=0.1, maximum=5.0)
        self._pause = 0.0
        self._running = False
        self._stop_requested = False
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[RelayCounts] | None = None

    # -- one batch -------------------------------------------------------------------------

    async def run_once(self) -> RelayCounts:
        """Claim, publish and settle one batch; return what happened to its rows (all zero
        when nothing was claimable). Database errors propagate (the rows of a claim that
        could not be settled come back after the lease); broker errors never do: they are
        counted per row."""
        claim = await self._claim()
        if not claim.rows:
            return RelayCounts()
        return await self._relay(claim)

    async def _claim(self) -> _Claim:
        started = asyncio.get_running_loop().time()
        now = self._now()
        token = str(uuid.uuid4())
        rows = await self.claims.claim(
            self.batch_size, now=now, until=now + _seconds(self.lease), token=token
        )
        return _Claim(token, rows, started)

    async def _relay(self, claim: _Claim) -> RelayCounts:
        """Publish and settle the rows of ``claim``; add the counts to :attr:`totals`."""
        token, rows = claim.token, claim.rows
        outcomes: list[BaseException | _Pending | None] = [_PENDING] * len(rows)
        try:
            async with asyncio.timeout_at(claim.started + self.lease * PUBLISH_SHARE_OF_LEASE):
                await self._publish(rows, outcomes)
        except TimeoutError:
            pass  # the unconfirmed rows keep _PENDING: failed, see _settle
        except asyncio.CancelledError:
            try:
                async with asyncio.timeout(SETTLE_TIMEOUT_AFTER_CANCEL):
                    self.totals += await self._settle(token, rows, outcomes, cancelled=True)
            except Exception as exc:  # the cancellation matters more; the lease returns the rows
                logger.warning(
                    "Outbox relay: cancelled, and settling the batch failed (%s: %s); its rows "
                    "come back when their lease runs out.",
                    type(exc).__name__,
                    exc,
                )
            raise
        counts = await self._settle(token, rows, outcomes, cancelled=False)
        self.totals += counts
        return counts

    async def _put_back(self, ahead: asyncio.Task[_Claim]) -> None:
        """Give the rows of a claim made ahead back at once (the relay stops, or the broker
        is out); they count as claimed and deferred."""
        try:
            async with asyncio.timeout(SETTLE_TIMEOUT_AFTER_CANCEL):
                claim = await ahead
                if claim.rows:
                    ids = [row.id for row in claim.rows]
                    released = self._retry(ids, self._now() + _seconds(self._pause))
                    await self._write(claim.token, [], [], released)
                    self.totals += RelayCounts(claimed=len(ids), deferred=len(ids))
        except Exception as exc:  # the lease returns the rows anyway
            logger.warning(
                "Outbox relay: putting back a claim made ahead failed (%s: %s); its rows come "
                "back when their lease runs out.",
                type(exc).__name__,
                exc,
            )

    async def _publish(
        self, rows: Sequence[ClaimedRow], outcomes: list[BaseException | _Pending | None]
    ) -> None:
        """Send every row, ``concurrency`` at a time; ``outcomes[i]`` becomes ``None`` when
        row ``i`` was confirmed, else the error its send raised."""
        broker = self.broker
        pending = iter(range(len(rows)))

        async def worker() -> None:
            for index in pending:
                try:
                    await broker.send_message(self._message(rows[index]))
                except Exception as exc:  # counted per row; a failed publish is a result
                    outcomes[index] = exc
                else:
                    outcomes[index] = None

        workers = min(self.concurrency, len(rows))
        if workers == 1:
            await worker()
            return
        async with asyncio.TaskGroup() as group:
            for _ in range(workers):
                group.create_task(worker())

    def _message(self, row: ClaimedRow) -> Message:
        payload_bytes = row.payload
        if self.compressor is not None:
            payload_bytes = self.compressor.decompress(payload_bytes)
        content_type = self.content_types.get(row.event_name) if self.content_types else None
        headers: dict[str, str] | None = None
        payload: Any = payload_bytes
        if content_type is None:
            # not JSON (a codec without a content type): the bytes go as they are
            with contextlib.suppress(ValueError):
                payload = pydantic_core.from_json(payload_bytes)
        else:
            headers = {EVENT_NAME_HEADER: row.event_name, MESSAGE_ID_HEADER: str(row.event_id)}
        return Message(
            message_name=row.event_name,
            topic=row.topic,
            payload=payload,
            message_id=row.event_id,
            payload_bytes=payload_bytes,
            content_type=content_type,
            headers=headers,
        )

    async def _settle(
        self,
        token: str,
        rows: Sequence[ClaimedRow],
        outcomes: Sequence[BaseException | _Pending | None],
        *,
        cancelled: bool,
    ) -> RelayCounts:
        """Write the batch's outcome (one transaction, retried on transient errors until the
        lease runs out) and return its counts."""
        now = self._now()
        produced: list[int] = []
        failed: list[tuple[ClaimedRow, BaseException]] = []
        unsent: list[int] = []
        for row, outcome in zip(rows, outcomes, strict=True):
            if outcome is None:
                produced.append(row.id)
            elif isinstance(outcome, _Pending):
                if cancelled:
                    unsent.append(row.id)
                else:
                    failed.append((row, TimeoutError("not confirmed within the publish window")))
            else:
                failed.append((row, outcome))
        retries: list[Retry] = []
        given_up = 0
        released: Retry | None = None
        if cancelled:
            released = self._retry(unsent + [row.id for row, _ in failed], now)
        elif failed and not produced and all(isinstance(e, _OUTAGE_ERRORS) for _, e in failed):
            self._pause = self._outage.next()
            released = self._retry([row.id for row, _ in failed], now + _seconds(self._pause))
            logger.warning(
                "Outbox relay: the broker took none of %d rows (%s: %s); they are put back "
                "without counting an attempt, next try in %.2g s.",
                len(failed),
                type(failed[0][1]).__name__,
                failed[0][1],
                self._pause,
            )
        else:
            if produced:
                self._outage.reset()
            self._pause = 0.0
            retries, given_up = self._retries(failed, now)
        changed = await self._write(token, produced, retries, released)
        deferred = 0 if released is None else len(released.ids)
        expected = len(produced) + len(failed) + (len(unsent) if cancelled else 0)
        lost = expected - changed
        if lost > 0:
            logger.warning(
                "Outbox relay: %d rows of a batch were claimed again by another relay before "
                "this one settled them (its %.3g s lease ran out); they may be published "
                "twice. Raise the lease above the time a batch takes.",
                lost,
                self.lease,
            )
        return RelayCounts(
            claimed=len(rows),
            produced=len(produced),
            retried=0 if released is not None else len(failed) - given_up,
            given_up=given_up,
            deferred=deferred,
            lost_leases=max(0, lost),
        )

    def _retries(
        self, failed: Sequence[tuple[ClaimedRow, BaseException]], now: datetime.datetime
    ) -> tuple[list[Retry], int]:
        """The failed rows grouped by their next try (one group per attempt number), and how
        many of them are given up."""
        by_attempt: dict[int, list[int]] = {}
        given_up = 0
        for row, error in failed:
            attempt = row.flush_counter + 1
            by_attempt.setdefault(attempt, []).append(row.id)
            if attempt >= self.max_attempts:
                given_up += 1
                logger.error(
                    "Outbox relay: giving up event %s (%s, outbox row %d) after %d failed "
                    "publishes; last error %s: %s",
                    row.event_id,
                    row.event_name,
                    row.id,
                    attempt,
                    type(error).__name__,
                    error,
                )
            else:
                logger.warning(
                    "Outbox relay: publishing event %s (%s) failed (attempt %d of %d, %s: %s)",
                    row.event_id,
                    row.event_name,
                    attempt,
                    self.max_attempts,
                    type(error).__name__,
                    error,
                )
        retries = [
            self._retry(ids, now + _seconds(self.backoff(attempt)))
            for attempt, ids in sorted(by_attempt.items())
        ]
        return retries, given_up

    async def _write(
        self, token: str, produced: list[int], retries: list[Retry], released: Retry | None
    ) -> int:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.lease
        pause = Backoff(first=0.05, maximum=1.0)
        while True:
            try:
                return await self.claims.settle(
                    token, produced=produced, retries=retries, released=released
                )
            except Exception as exc:
                if not self._is_transient(exc) or loop.time() >= deadline:
                    raise
                logger.warning(
                    "Outbox relay: settling a batch failed (%s: %s); retrying.",
                    type(exc).__name__,
                    exc,
                )
                await pause.sleep(deadline)

    # -- running ---------------------------------------------------------------------------

    async def run(self) -> RelayCounts:
        """Relay batches until :meth:`stop`; return the counts of this run.

        A batch that claims nothing is followed by a wait of ``poll_interval`` (cut short by
        :meth:`wake` or :meth:`stop`); a broker outage by a growing pause. A transient
        database error (connection lost, deadlock, busy) is logged and retried with
        backoff; any other error propagates. Raises :class:`RelayStateError` when this relay
        is already running.
        """
        self._begin()
        return await self._loop()

    def _begin(self) -> None:
        if self._running:
            raise RelayStateError(
                "This OutboxRelay is already running; stop() it first or make another one "
                "(several relays may serve the same table)."
            )
        self._running = True
        self._stop_requested = False
        self._wakeup = asyncio.Event()

    async def _loop(self, *, until_idle: bool = False) -> RelayCounts:
        start = self.totals
        try:
            async with self.claims.holding():
                await self._batches(until_idle=until_idle)
        finally:
            self._running = False
            self._wakeup = None
        return _difference(self.totals, start)

    async def _batches(self, *, until_idle: bool) -> None:
        """Relay batches, claiming the next one while the current one is published (so the
        claim's round trips overlap the broker's), until :meth:`stop` or, with
        ``until_idle``, until a claim finds nothing or the broker is out. A claim made
        ahead that is not needed any more is put back at once."""
        errors = Backoff(first=0.05, maximum=max(2.0, self.poll_interval))
        ahead: asyncio.Task[_Claim] | None = None
        try:
            while not self._stop_requested:
                try:
                    if ahead is None:
                        claim = await self._claim()
                    else:
                        task, ahead = ahead, None
                        claim = await task
                    if not claim.rows:
                        if until_idle:
                            return
                        await self._sleep(self.poll_interval)
                        continue
                    if not self._stop_requested and self.claims.concurrent_writers:
                        ahead = asyncio.create_task(self._claim())
                    counts = await self._relay(claim)
                except Exception as exc:
                    if until_idle or not self._is_transient(exc):
                        raise
                    logger.warning(
                        "Outbox relay: database error (%s: %s); retrying.",
                        type(exc).__name__,
                        exc,
                    )
                    await self._sleep(errors.next())
                    continue
                errors.reset()
                if counts.deferred and self._pause:  # the broker is out
                    if ahead is not None:
                        await self._put_back(ahead)
                        ahead = None
                    if until_idle:
                        return
                    await self._sleep(self._pause)
        finally:
            if ahead is not None:
                await self._put_back(ahead)

    async def drain(self) -> RelayCounts:
        """Relay batches until a claim finds nothing claimable, or the broker is out, then
        return their counts: for a relay run from a scheduler, a script or a test. Rows
        leased by another relay or waiting for their next try are left; errors propagate.
        Raises :class:`RelayStateError` while :meth:`run` is in progress."""
        self._begin()
        return await self._loop(until_idle=True)

    async def _sleep(self, seconds: float) -> None:
        wakeup = self._wakeup
        if wakeup is None or self._stop_requested:
            return
        try:
            async with asyncio.timeout(seconds):
                await wakeup.wait()
        except TimeoutError:
            pass
        wakeup.clear()

    def stop(self) -> None:
        """Ask a running relay to stop: it finishes the batch in hand (publishes and settles
        it), then :meth:`run` returns. Nothing happens when it is not running."""
        if self._running:
            self._stop_requested = True
            if self._wakeup is not None:
                self._wakeup.set()

    def wake(self) -> None:
        """Cut the relay's current wait short (new rows were just committed, say)."""
        if self._wakeup is not None:
            self._wakeup.set()

    @property
    def running(self) -> bool:
        """Whether :meth:`run` (or the ``async with`` block) is in progress."""
        return self._running

    async def __aenter__(self) -> Self:
        """Start :meth:`run` in a background task."""
        self._begin()
        self._task = asyncio.create_task(self._loop(), name="cqrs-outbox-relay")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the background run (finishing its batch) and wait for it; its error, if it
        failed, is raised here."""
        task, self._task = self._task, None
        if task is None:
            return
        self.stop()
        await task

    # -- measuring -------------------------------------------------------------------------

    async def lag(self) -> OutboxLag:
        """Rows waiting to be published, the age of the oldest, and rows given up (one
        query; see :class:`OutboxLag`)."""
        figures = await self.claims.lag()
        oldest = figures.oldest_created_at
        age = None if oldest is None else max(0.0, (self._now() - oldest).total_seconds())
        return OutboxLag(figures.pending, figures.retrying, age, figures.given_up)

    async def requeue_given_up(self) -> int:
        """Give every given-up row ``max_attempts`` new attempts, claimable now; return how
        many rows. Call it once the cause of the failures is fixed."""
        return await self.claims.requeue_given_up()


@dataclasses.dataclass(frozen=True, slots=True)
class _Claim:
    """A claimed batch: its token, its rows, and when the claim started (loop time)."""

    token: str
    rows: list[ClaimedRow]
    started: float


class _Pending:
    """Marks a row whose publish has not finished."""

    __slots__ = ()


_PENDING = _Pending()


def _seconds(value: float) -> datetime.timedelta:
    return datetime.timedelta(seconds=value)


def _counts(counts: RelayCounts) -> tuple[int, ...]:
    return tuple(getattr(counts, field.name) for field in dataclasses.fields(counts))


def _difference(after: RelayCounts, before: RelayCounts) -> RelayCounts:
    return RelayCounts(*(a - b for a, b in zip(_counts(after), _counts(before), strict=True)))
