"""The stream bridge: runs a streaming handler, its events and its middlewares per item.

:class:`RequestStream` is what ``StreamingRequestMediator.stream()`` returns. Nothing runs
until the first ``__anext__``. Per item: the handler yields, its events are taken and
processed under the stream's events policy, the item passes through the stream middlewares
and reaches the consumer.

Closing is deterministic: exhaustion, an error, cancellation, ``aclose()``, ``async with``
exit, or simply dropping the stream (a ``break`` out of ``async for``) closes every
middleware layer, then the handler's generator (its ``finally`` runs), cancels event work
still in flight under the ``concurrent`` policy (each abandoned event is logged at WARNING),
and releases the DI scope.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from types import AsyncGeneratorType
from typing import Any, Generic, TypeVar

from cqrs._internal.coro import finish_soon
from cqrs._internal.errors import StreamStateError
from cqrs._internal.events.processor import EventProcessor, StreamEventPipeline
from cqrs._internal.handlers.request import StreamingRequestHandler
from cqrs._internal.messages.events import IEvent
from cqrs._internal.pipeline.middleware import Middleware, wrap_stream
from cqrs._internal.settings import StreamEvents

__all__ = ["RequestStream", "StreamEvents"]

logger = logging.getLogger("cqrs")

T = TypeVar("T")

_NEW, _OPEN, _CLOSED = 0, 1, 2
_NO_EVENTS = StreamingRequestHandler.__dict__["events"]


class _Source:
    """The innermost layer: pulls one item from the handler and dispatches its events."""

    __slots__ = ("agen", "dispatch", "failed", "handler", "silent")

    def __init__(
        self,
        handler: Any,
        agen: AsyncIterator[Any],
        dispatch: Callable[[Sequence[IEvent]], Awaitable[object]],
    ) -> None:
        self.handler = handler
        self.agen = agen
        self.dispatch = dispatch
        self.failed = False
        # A handler that keeps the base class's ``events`` (always empty) cannot emit events:
        # a property cannot be shadowed on the instance, so its items skip the events check.
        handler_type: type[Any] = handler.__class__
        self.silent = getattr(handler_type, "events", None) is _NO_EVENTS

    def __aiter__(self) -> _Source:
        return self

    async def __anext__(self) -> Any:
        try:
            item = await self.agen.__anext__()
        except BaseException:
            self.failed = True
            raise
        if self.silent:
            return item
        handler = self.handler
        events = handler.events
        if events:
            events = list(events)  # copied before clear_events(), as 4.x: see take_events
            handler.clear_events()
            await self.dispatch(events)
        return item

    def take_events(self) -> Sequence[IEvent]:
        """Take the events the handler holds now (emitted after its last yield).

        They are copied before ``clear_events()``, as 4.x does: a handler whose ``events``
        returns its own list would otherwise see them cleared before they are processed.
        """
        events = self.handler.events
        if not events:
            return ()
        events = list(events)
        self.handler.clear_events()
        return events


class _NotOpen:
    """Stands in for the outermost layer until the stream is opened."""

    def __aiter__(self) -> _NotOpen:
        return self

    async def __anext__(self) -> Any:
        raise StopAsyncIteration


_NOT_OPEN = _NotOpen()

StreamOpener = Callable[[contextlib.AsyncExitStack], Awaitable[tuple[Any, Any, Any, bool]]]
"""Opens the handler inside the given exit stack: ``(handler, its async generator, the
scoped container its events resolve from or None, whether it put a scope in the stack)``."""


class RequestStream(Generic[T]):
    """The results of a streaming handler, one per ``__anext__``; also an async context manager.

    Use it as 4.x code does (``async for item in mediator.stream(request)``); prefer
    ``async with mediator.stream(request) as items:`` or ``await items.aclose()`` where the
    consumer may stop early and the handler's cleanup awaits something, so that the cleanup
    has finished when you go on. Items may be ``None`` when the handler yields ``None``.

    After the stream ended or was closed, ``__anext__`` raises ``StopAsyncIteration``.
    Entering it with ``async with`` a second time raises ``StreamStateError``.
    """

    __slots__ = (
        "__weakref__",
        "_direct",
        "_entered",
        "_events",
        "_layers",
        "_middlewares",
        "_open_handler",
        "_outer",
        "_policy",
        "_processor",
        "_request",
        "_source",
        "_stack",
        "_state",
        "_through",
    )

    def __init__(
        self,
        request: Any,
        open_handler: StreamOpener,
        processor: EventProcessor,
        middlewares: Sequence[Middleware],
        policy: StreamEvents,
    ) -> None:
        self._request = request
        self._open_handler = open_handler
        self._processor = processor
        self._middlewares = middlewares
        self._policy = policy
        self._state = _NEW
        self._stack: contextlib.AsyncExitStack | None = None
        self._source: _Source | None = None
        self._outer: AsyncIterator[Any] = _NOT_OPEN
        self._direct: _Source | None = None
        self._layers: list[AsyncIterator[Any]] = []
        self._events: StreamEventPipeline | None = None
        self._entered = False
        self._through: AsyncGeneratorType[Any, Any] | None = None

    @property
    def request(self) -> Any:
        """The request being streamed."""
        return self._request

    @property
    def closed(self) -> bool:
        """True once the stream ended or was closed."""
        through = self._through
        return self._state == _CLOSED or (through is not None and through.ag_frame is None)

    def __aiter__(self) -> RequestStream[T]:
        return self

    def __anext__(self) -> Awaitable[T]:
        through = self._through
        if through is not None:
            # Items that need no work (no events, middleware or scope): the handler's own.
            return through.__anext__()
        return self._next()

    async def _next(self) -> T:
        if self._state != _OPEN:
            if self._state == _CLOSED:
                raise StopAsyncIteration
            await self._open()
        source = self._direct
        try:
            if source is None:
                return await self._outer.__anext__()
            # _Source.__anext__ inlined: without middleware layers this saves a coroutine
            # frame per item.
            try:
                item = await source.agen.__anext__()
            except BaseException:
                source.failed = True
                raise
            if source.silent:
                return item
            handler = source.handler
            events = handler.events
            if events:
                events = list(events)  # copied before clear_events(), see take_events
                handler.clear_events()
                await source.dispatch(events)
            return item
        except StopAsyncIteration:
            await self._finish(None)
            raise
        except BaseException as exc:
            await self._finish(exc)
            raise

    async def aclose(self) -> None:
        """Close the stream now: middlewares, then the handler, then in-flight events, then
        the DI scope. Safe to call more than once; the first error of a cleanup is raised."""
        if self._state == _OPEN:
            self._state = _CLOSED
            error = await self._release(cancelled=False)
            if error is not None:
                raise error
        self._state = _CLOSED

    async def __aenter__(self) -> RequestStream[T]:
        if self._entered:
            raise StreamStateError(
                f"This stream of {type(self._request).__qualname__} was already entered with "
                "'async with'; a stream is consumed once. Call mediator.stream() again for a "
                "new one."
            )
        self._entered = True
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __del__(self) -> None:
        if self._state == _OPEN:
            self._state = _CLOSED
            finish_soon(self._release_logged(None), "closing an abandoned stream")

    async def _open(self) -> None:
        self._state = _OPEN
        stack = contextlib.AsyncExitStack()
        self._stack = stack
        try:
            handler, agen, container, holds_scope = await self._open_handler(stack)
            events = self._events = self._processor.open_stream_pipeline(
                container, self._policy is StreamEvents.CONCURRENT
            )
            dispatch = events.dispatch
            source = self._source = _Source(handler, agen, dispatch)
            if self._middlewares:
                self._layers = wrap_stream(self._middlewares, self._request, source)
            self._outer = self._layers[0] if self._layers else source
            self._direct = source if self._outer is source else None
            if (
                self._direct is not None
                and source.silent
                and not holds_scope
                and type(agen) is AsyncGeneratorType
            ):
                # Nothing to do per item nor at the end: once the handler is done, releasing
                # the stream (async with, aclose or collection) has nothing left to close.
                self._through = agen
        except BaseException as exc:
            self._state = _CLOSED
            await self._release_logged(exc)
            raise

    async def _finish(self, exc: BaseException | None) -> None:
        """End of the stream: process what is left when that is right, then release."""
        self._state = _CLOSED
        source = self._source
        assert source is not None
        try:
            if exc is None or (source.failed and not isinstance(exc, asyncio.CancelledError)):
                await self._flush(source, exc)
        except BaseException as flush_error:
            await self._release_logged(flush_error)
            raise
        if exc is None:
            error = await self._release(cancelled=False)
            if error is not None:
                raise error
        else:
            await self._release_logged(exc)

    async def _release_logged(self, exc: BaseException | None) -> None:
        """Release after ``exc`` (which the caller raises); a cleanup error is only logged."""
        error = await self._release(cancelled=isinstance(exc, asyncio.CancelledError))
        if error is not None and error is not exc and not isinstance(error, asyncio.CancelledError):
            logger.error(
                "Error while closing the stream of %s",
                type(self._request).__qualname__,
                exc_info=error,
            )

    async def _flush(self, source: _Source, exc: BaseException | None) -> None:
        """Process the events emitted after the last yield (or before the handler failed)."""
        try:
            leftover = source.take_events()
            if leftover:
                await source.dispatch(leftover)
            if self._events is not None:
                await self._events.drain()
        except Exception as flush_error:
            if exc is None:
                raise
            exc.add_note(
                f"Processing the events emitted before this error also failed: {flush_error!r}"
            )

    async def _release(self, *, cancelled: bool) -> BaseException | None:
        """Close layers outermost first, the handler, the event pipeline, then the scope.

        Every step runs even if an earlier one fails; the first failure is returned.
        """
        first_error: BaseException | None = None
        for layer in self._layers[:-1]:
            first_error = await _close(layer, first_error)
        source = self._source
        if source is not None:
            first_error = await _close(source.agen, first_error)
        events = self._events
        if events is not None:
            try:
                abandoned = await events.shutdown()
            except asyncio.CancelledError as exc:  # cancelled again: closing went on first
                first_error = first_error or exc
                abandoned = []
            if abandoned:
                logger.warning(
                    "Stream of %s closed early: %d events still being handled were cancelled: %s",
                    type(self._request).__qualname__,
                    len(abandoned),
                    ", ".join(type(job[0]).__qualname__ for job in abandoned),
                )
        if source is not None and not cancelled:
            late = source.handler.events
            if late:
                logger.warning(
                    "%s emitted %d events while its stream was being closed; they were not "
                    "processed: %s",
                    type(source.handler).__qualname__,
                    len(late),
                    ", ".join(type(event).__qualname__ for event in late),
                )
        stack = self._stack
        if stack is not None:
            self._stack = None
            try:
                await stack.aclose()
            except BaseException as exc:
                first_error = first_error or exc
        return first_error


async def _close(layer: Any, first_error: BaseException | None) -> BaseException | None:
    aclose = getattr(layer, "aclose", None)
    if aclose is None:
        return first_error
    try:
        await aclose()
    except BaseException as exc:
        return first_error or exc
    return first_error
