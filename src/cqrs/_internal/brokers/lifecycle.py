"""The life of a broker connection: unopened -> open -> closed, once.

A broker starts unopened. ``open()`` (or ``async with broker:``) connects; ``close()`` (or
leaving the ``async with``) disconnects and is final: a closed broker cannot be reopened, as
an ``httpx.AsyncClient`` cannot. Publishing or subscribing on an unopened broker opens it
first, so 4.x code that calls ``send_message`` on a broker it never opened keeps working.
Misuse raises :class:`BrokerStateError` with one sentence saying what to do instead.
"""

from __future__ import annotations

import asyncio
import enum
from types import TracebackType
from typing import Self

from cqrs._internal.errors import CQRSError

__all__ = ["BrokerLifecycle", "BrokerState", "BrokerStateError"]


class BrokerStateError(CQRSError, RuntimeError):
    """A broker (or a subscription) was used in a state that does not allow it: opened
    twice, reopened after ``close()``, or used after ``close()``."""


class BrokerState(enum.Enum):
    """Where a broker is in its life."""

    UNOPENED = "unopened"
    OPEN = "open"
    CLOSED = "closed"


class BrokerLifecycle:
    """Base class of brokers with a connection: the state machine and the context manager.

    Subclasses implement :meth:`_connect` and :meth:`_disconnect`; call :meth:`_ensure_open`
    (await it) at the start of every operation that needs the connection, with the verb for
    the error message (``"publish"``, ``"subscribe"``). Concurrent callers of the first
    operation share one ``_connect``; a failed ``_connect`` leaves the broker unopened, so the
    next call tries again.
    """

    _state: BrokerState = BrokerState.UNOPENED
    _opening: asyncio.Future[None] | None = None

    @property
    def state(self) -> BrokerState:
        """``UNOPENED``, ``OPEN`` or ``CLOSED``."""
        return self._state

    async def open(self) -> None:
        """Connect. Raises :class:`BrokerStateError` if the broker is already open or was
        closed, and whatever the connection raises (the broker then stays unopened)."""
        if self._state is BrokerState.OPEN:
            raise BrokerStateError(f"Cannot open {type(self).__name__} twice; it is already open.")
        if self._state is BrokerState.CLOSED:
            raise BrokerStateError(
                f"Cannot reopen a closed {type(self).__name__}; create a new one."
            )
        await self._ensure_open("open")

    async def close(self) -> None:
        """Disconnect (idempotent). Afterwards every operation raises
        :class:`BrokerStateError`; undelivered work is returned to the broker."""
        if self._state is BrokerState.CLOSED:
            return
        was_open = self._state is BrokerState.OPEN
        self._state = BrokerState.CLOSED
        if was_open:
            await self._disconnect()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _ensure_open(self, action: str) -> None:
        """Open the broker on first use; raise :class:`BrokerStateError` once it is closed."""
        if self._state is BrokerState.OPEN:
            return
        if self._state is BrokerState.CLOSED:
            raise BrokerStateError(
                f"Cannot {action} on a closed {type(self).__name__}; open a new one."
            )
        if self._opening is not None:
            await asyncio.shield(self._opening)
            return
        opening = asyncio.get_running_loop().create_future()
        self._opening = opening
        try:
            await self._connect()
        except BaseException as exc:
            opening.set_exception(exc)
            opening.exception()  # retrieved: only waiters re-raise it
            raise
        else:
            if self.state is BrokerState.CLOSED:  # closed while connecting
                await self._disconnect()
                raise BrokerStateError(
                    f"Cannot {action} on a closed {type(self).__name__}; open a new one."
                )
            self._state = BrokerState.OPEN
            opening.set_result(None)
        finally:
            self._opening = None

    async def _connect(self) -> None:
        """Open the connection (nothing for a broker without one)."""

    async def _disconnect(self) -> None:
        """Close the connection and return undelivered work (nothing by default)."""
