"""Chain-of-responsibility handlers: several handlers tried in order for one request type."""

from __future__ import annotations

import abc
import functools
from collections.abc import Sequence
from typing import Any, Generic

from cqrs._internal.messages.events import IEvent
from cqrs._internal.messages.requests import ReqT, ResT

__all__ = ["CORRequestHandler", "CORRequestHandlerT", "build_chain"]


class CORRequestHandler(abc.ABC, Generic[ReqT, ResT]):
    """One link of a chain of handlers bound as a list: ``bind(Req, [A, B, C])``.

    ``handle`` either answers the request or passes it on with ``await self.next(request)``;
    it must be ``async def`` (a plain ``def`` is refused when the chain is bound).
    At the end of the chain ``next`` returns ``None``. The events of every link that ran are
    processed (4.x read only the head's).
    """

    _next_handler: CORRequestHandler[Any, Any] | None = None

    @property
    def events(self) -> Sequence[IEvent]:
        """Events produced by this link's last ``handle``; empty by default."""
        return ()

    def set_next(self, handler: CORRequestHandler[Any, Any]) -> CORRequestHandler[Any, Any]:
        """Link ``handler`` after this one and return it, for fluent chaining.

        As in 4.x, a link that already has a successor keeps it and returns that successor.
        """
        if self._next_handler is None:
            self._next_handler = handler
        return self._next_handler

    async def next(self, request: ReqT) -> ResT | None:
        """Pass ``request`` to the next link; ``None`` when this is the last one."""
        if self._next_handler is None:
            return None
        return await self._next_handler.handle(request)

    @abc.abstractmethod
    async def handle(self, request: ReqT) -> ResT | None:
        """Answer ``request`` or return ``await self.next(request)``."""
        raise NotImplementedError


CORRequestHandlerT = CORRequestHandler


def build_chain(handlers: Sequence[CORRequestHandler[Any, Any]]) -> CORRequestHandler[Any, Any]:
    """Link ``handlers`` in list order and return the first; ``ValueError`` if it is empty."""
    if not handlers:
        raise ValueError("build_chain() needs at least one handler.")
    functools.reduce(lambda left, right: left.set_next(right), handlers)
    return handlers[0]
