"""Base classes for command/query handlers and streaming handlers."""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Sequence
from typing import Generic

from cqrs._internal.messages.events import IEvent
from cqrs._internal.messages.requests import ReqT, ResT

__all__ = ["RequestHandler", "StreamingRequestHandler"]


class RequestHandler(abc.ABC, Generic[ReqT, ResT]):
    """Handles one command or query type and returns its result.

    Subclass it as ``RequestHandler[MyCommand, MyResult]`` (``MyResult`` may be ``None``) and
    implement ``async def handle(self, request)``. The declared request type may also be a base
    class of the bound one, ``Any``, a type variable, a union or ``Annotated``. Binding it in a
    ``RequestMap`` raises ``ConfigurationError`` when ``handle`` is a plain ``def`` or an async
    generator, or when the declared request type cannot take the bound one. The mediator
    creates a new handler through
    the DI container for every request, awaits ``handle``, then reads :attr:`events` and
    processes them (domain events in-process, notification events to the broker).

    If ``handle`` raises, the exception propagates out of ``send()`` and no event of this
    handler is processed.
    """

    @property
    def events(self) -> Sequence[IEvent]:
        """Events produced by the last ``handle`` call; read once after it returns.

        The default is an empty tuple. Override it (keep the list in a private attribute:
        the property has no setter) to emit events.
        """
        return ()

    @abc.abstractmethod
    async def handle(self, request: ReqT) -> ResT:
        """Handle ``request`` and return the result. Exceptions propagate to the caller."""
        raise NotImplementedError


class StreamingRequestHandler(abc.ABC, Generic[ReqT, ResT]):
    """Handles one request type by yielding results one at a time.

    Implement ``handle`` as an async generator (``async def handle(self, request): ...
    yield result``) and :meth:`clear_events`. Binding it raises ``ConfigurationError`` when
    ``handle`` is anything else (an ``async def`` without ``yield``, or a plain ``def``, even
    one that returns an async iterator: 4.x requires an async generator function too). After
    each ``yield`` the mediator reads
    :attr:`events`, calls :meth:`clear_events`, and processes those events; events emitted
    after the last ``yield`` are processed when the generator returns.

    The generator is closed as soon as the consumer stops (``break``, an exception,
    cancellation, a client disconnect), so a ``finally`` block in ``handle`` runs at once.
    An exception raised by ``handle`` propagates out of the consumer's ``async for`` after
    the events emitted before it are processed.
    """

    @property
    def events(self) -> Sequence[IEvent]:
        """Events emitted since the last :meth:`clear_events`; the default is empty."""
        return ()

    @abc.abstractmethod
    def handle(self, request: ReqT) -> AsyncIterator[ResT]:
        """Yield results for ``request``; write it as an ``async def`` with ``yield``."""
        raise NotImplementedError

    @abc.abstractmethod
    def clear_events(self) -> None:
        """Forget the events already collected; called by the mediator after each item."""
        raise NotImplementedError
