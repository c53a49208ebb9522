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

How: the items come from one async generator per stream (:func:`_items`), which
``__aiter__`` returns, so that ``async for`` steps it without a Python call per item. It keeps
the stream's state (:class:`_Run`), never the :class:`RequestStream` itself, and it is created
without the event loop's async-generator finalizer: when the last reference to it goes (a
``break``, an exception in the consumer, the stream dropped), Python closes it at once and it
releases the stream right there, as far as that goes without waiting (the rest in a task).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Sequence,
)
from types import AsyncGeneratorType
from typing import Any, Generic, TypeVar, cast

from cqrs._internal.coro import finish_soon
from cqrs._internal.di.scope import bound_scope
from cqrs._internal.dispatch.invokers import HandlerInvoker, note_resolve_failure
from cqrs._internal.errors import StreamStateError
from cqrs._internal.events.emitter import DONE
from cqrs._internal.events.fanout import YIELD_EVERY
from cqrs._internal.events.processor import EventProcessor, InlineEvents, StreamEventPipeline
from cqrs._internal.handlers.request import StreamingRequestHandler
from cqrs._internal.messages.events import IEvent
from cqrs._internal.pipeline.middleware import Middleware, wrap_stream
from cqrs._internal.settings import StreamEvents

__all__ = ["RequestStream", "StreamEvents"]

logger = logging.getLogger("cqrs")

T = TypeVar("T")

_NEW: int = 0
_OPEN: int = 1
_CLOSED: int = 2
_NO_EVENTS = StreamingRequestHandler.__dict__["events"]
_ALL_DONE: Any = object()

StreamOpener = Callable[[contextlib.AsyncExitStack], Awaitable[tuple[Any, Any, Any, bool]]]
"""Opens the handler inside the given exit stack: ``(handler, its async generator, the
scoped container its events resolve from or None, whether it put a scope in the stack)``."""


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


class _Run:
    """The state of one stream, shared by its :class:`RequestStream` and by the generator of
    its items (:func:`_items`); it refers to neither, so that dropping them closes the stream.
    """

    __slots__ = ("events", "inline", "layers", "middlewares", "open_handler", "outer",
                 "policy", "processor", "request", "source", "stack", "state")  # fmt: skip

    def __init__(
        self,
        request: Any,
        open_handler: StreamOpener,
        processor: EventProcessor,
        middlewares: Sequence[Middleware],
        policy: StreamEvents,
    ) -> None:
        self.request = request
        self.open_handler = open_handler
        self.processor = processor
        self.middlewares = middlewares
        self.policy = policy
        self.state = _NEW
        self.stack: contextlib.AsyncExitStack | None = None
        self.source: _Source | None = None
        self.outer: AsyncIterator[Any] | None = None
        self.layers: list[AsyncIterator[Any]] = []
        self.events: StreamEventPipeline | None = None
        self.inline = False
        """The events of an item run before it is delivered, without a DI scope."""

    async def open(self) -> _Source:
        """Resolve the handler, start its generator, wrap the middlewares; on failure, close
        what was opened and raise."""
        self.state = _OPEN
        stack = contextlib.AsyncExitStack()
        self.stack = stack
        try:
            handler, agen, container, _ = await self.open_handler(stack)
            events = self.events = self.processor.open_stream_pipeline(
                container, self.policy is StreamEvents.CONCURRENT
            )
            source = self.source = _Source(handler, agen, events.dispatch)
            if self.middlewares:
                self.layers = wrap_stream(self.middlewares, self.request, source)
            self.outer = self.layers[0] if self.layers else source
            self.inline = container is None and events.inline
        except BaseException as exc:
            self.state = _CLOSED
            await self.release_logged(exc)
            raise
        return source

    async def finish(self, exc: BaseException | None) -> None:
        """End of the stream: process what is left when that is right, then release."""
        self.state = _CLOSED
        source = self.source
        assert source is not None
        try:
            if exc is None or (source.failed and not isinstance(exc, asyncio.CancelledError)):
                await self.flush(source, exc)
        except BaseException as flush_error:
            await self.release_logged(flush_error)
            raise
        if exc is None:
            error = await self.release(cancelled=False)
            if error is not None:
                raise error
        else:
            await self.release_logged(exc)

    async def release_logged(self, exc: BaseException | None) -> None:
        """Release after ``exc`` (which the caller raises); a cleanup error is only logged."""
        error = await self.release(cancelled=isinstance(exc, asyncio.CancelledError))
        if error is not None and error is not exc and not isinstance(error, asyncio.CancelledError):
            logger.error(
                "Error while closing the stream of %s",
                type(self.request).__qualname__,
                exc_info=error,
            )

    async def flush(self, source: _Source, exc: BaseException | None) -> None:
        """Process the events emitted after the last yield (or before the handler failed)."""
        try:
            leftover = source.take_events()
            if leftover:
                await source.dispatch(leftover)
            if self.events is not None:
                await self.events.drain()
        except Exception as flush_error:
            if exc is None:
                raise
            exc.add_note(
                f"Processing the events emitted before this error also failed: {flush_error!r}"
            )

    async def release(
        self, *, cancelled: bool, items: AsyncGeneratorType[Any, None] | None = None
    ) -> BaseException | None:
        """Close the item generator ``items`` (when the stream is closed from outside it),
        the layers outermost first, the handler, the event pipeline, then the scope.

        Every step runs even if an earlier one fails; the first failure is returned.
        """
        first_error: BaseException | None = None
        if items is not None and not items.ag_running:
            # (While it runs, in the consumer's task, closing the handler ends it.)
            first_error = await _close(items, first_error)
        for layer in self.layers[:-1]:
            first_error = await _close(layer, first_error)
        source = self.source
        if source is not None:
            first_error = await _close(source.agen, first_error)
        events = self.events
        if events is not None:
            try:
                abandoned = await events.shutdown()
            except asyncio.CancelledError as exc:  # cancelled again: closing went on first
                first_error = first_error or exc
                abandoned = []
            if abandoned:
                logger.warning(
                    "Stream of %s closed early: %d events still being handled were cancelled: %s",
                    type(self.request).__qualname__,
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
        stack = self.stack
        if stack is not None:
            self.stack = None
            try:
                await stack.aclose()
            except BaseException as exc:
                first_error = first_error or exc
        return first_error


def _start(run: _Run) -> AsyncGeneratorType[Any, None]:
    """The item generator of ``run``, created without the loop's async-generator hooks.

    The hooks are read when a generator is first stepped; asyncio's finalizer would close an
    abandoned generator later, in a task. Without it, Python closes the generator as soon as
    it is dropped, and :func:`_items` releases the stream right then (as ``__del__`` would).
    Creating (and dropping) one ``asend`` reads the hooks; nothing runs before the first
    ``__anext__``.
    """
    items = cast("AsyncGeneratorType[Any, None]", _items(run))
    firstiter, finalizer = sys.get_asyncgen_hooks()
    sys.set_asyncgen_hooks(firstiter=None, finalizer=None)
    try:
        items.asend(None).close()
    finally:
        sys.set_asyncgen_hooks(firstiter=firstiter, finalizer=finalizer)
    return items


async def _items(run: _Run) -> AsyncGenerator[Any, None]:
    """The items of the stream ``run``: opens it on the first step, finishes it at the end or
    on an error, releases it when closed or dropped before its end (see :func:`_start`).

    Three loops, chosen when the stream opens: the handler's items as they are (a handler
    that cannot emit events, no middleware); each item after its events run here, as
    ``EventEmitter.run_events`` runs them (``before_item``, no middleware, no scope); every
    other stream through its outermost layer (middlewares, the ``concurrent`` policy, a scope).
    """
    try:
        if run.state != _NEW:
            return
        source = await run.open()
        agen = source.agen
        item: Any
        # Not narrowed by pyright through ``direct``: the handler's items are Any.
        direct = run.outer is source and type(cast(object, agen)) is AsyncGeneratorType
        if direct and source.silent:
            try:
                async for item in agen:
                    yield item
            except GeneratorExit:
                raise
            except BaseException as exc:
                source.failed = True
                await run.finish(exc)
                raise
            await run.finish(None)
            return
        if direct and run.inline:
            handler = source.handler
            processor = run.processor
            try:
                async for item in agen:
                    try:
                        emitted = handler.events
                        if emitted:
                            # Copied before clear_events(), see _Source.take_events.
                            events: list[IEvent] = [*emitted]
                            handler.clear_events()
                            inline = processor.inline
                            if (
                                inline is None
                                or "emit" in inline.attrs
                                or bound_scope() is not None
                                or (left := len(events)) >= YIELD_EVERY
                            ):
                                await processor.process(events)
                            else:
                                # EventEmitter.run_events, in this frame, while each event
                                # has one handler that does not wait, fail or emit.
                                compiled = inline.compiled
                                if compiled.version != compiled.counter["changes"]:
                                    compiled.forget()
                                solo = compiled.solo
                                by_hand = inline.limit > 1
                                rest: Any = _ALL_DONE
                                for event in events:
                                    left -= 1
                                    try:
                                        target = solo[type(event)]
                                    except KeyError:
                                        target = compiled.solo_for(event.__class__)
                                    if target is None:
                                        rest = None
                                        break
                                    try:
                                        try:
                                            job = target.build()  # pyright: ignore[reportOptionalCall]
                                        except Exception as exc:
                                            note_resolve_failure(exc, target, event)
                                            raise
                                        if left and by_hand:
                                            # Not the last job: started by hand (run_at_most).
                                            coro = job.handle(event)
                                            yielded = next(coro.__await__(), DONE)
                                            if yielded is not DONE:
                                                rest = (target, (job, coro, yielded), None)
                                                break
                                        else:
                                            await job.handle(event)
                                        if type(job).events is not target.no_events:  # pyright: ignore[reportUnknownMemberType]
                                            follow = job.events
                                            if follow:
                                                rest = (target, None, follow)
                                                break
                                    except BaseException as exc:
                                        await inline.emitter.resume_events(
                                            events, len(events) - left - 1, inline.limit,
                                            target, error=exc,
                                        )  # fmt: skip
                                        break
                                if rest is not _ALL_DONE:
                                    await _run_rest(inline, events, len(events) - left - 1, rest)
                    except BaseException as exc:
                        await run.finish(exc)
                        raise
                    yield item
            except GeneratorExit:
                raise
            except BaseException as exc:
                if run.state == _OPEN:  # the handler failed (not its events)
                    source.failed = True
                    await run.finish(exc)
                raise
            await run.finish(None)
            return
        outer = run.outer
        assert outer is not None
        anext = outer.__anext__
        while True:
            try:
                item = await anext()
            except StopAsyncIteration:
                await run.finish(None)
                return
            except GeneratorExit:
                raise
            except BaseException as exc:
                await run.finish(exc)
                raise
            yield item
    except GeneratorExit:
        if run.state == _OPEN:  # dropped, or closed by Python: not by RequestStream.aclose
            run.state = _CLOSED
            finish_soon(run.release_logged(None), "closing an abandoned stream")
        raise


def _run_rest(
    inline: InlineEvents,
    events: list[IEvent],
    index: int,
    rest: tuple[HandlerInvoker, tuple[Any, Coroutine[Any, Any, Any], Any] | None, object] | None,
) -> Awaitable[None]:
    """The rest of a batch that :func:`_items` began: all of it from ``events[index]`` on
    (``rest`` is ``None``: that event has not exactly one handler with a builder), or what
    follows the job of ``events[index]`` (``rest``: its target, then ``(handler, coroutine,
    yielded)`` when it waited, else its follow-up events)."""
    emitter = inline.emitter
    if rest is None:
        return emitter.run_events(events, inline.limit, index)
    target, waiting, follow = rest
    return emitter.resume_events(
        events, index, inline.limit, target, waiting=waiting, follow=follow
    )


class RequestStream(Generic[T]):
    """The results of a streaming handler, one per ``__anext__``; also an async context manager.

    Use it as 4.x code does (``async for item in mediator.stream(request)``); prefer
    ``async with mediator.stream(request) as items:`` or ``await items.aclose()`` where the
    consumer may stop early and the handler's cleanup awaits something, so that the cleanup
    has finished when you go on. Items may be ``None`` when the handler yields ``None``.

    ``async for`` iterates the stream's item generator (what ``__aiter__`` returns: the same
    one every time, so a second ``async for`` goes on where the first stopped while the
    stream is kept). After the stream ended or was closed, ``__anext__`` raises
    ``StopAsyncIteration``. Entering it with ``async with`` a second time raises
    ``StreamStateError``.
    """

    __slots__ = ("__weakref__", "_entered", "_items", "_run")

    def __init__(
        self,
        request: Any,
        open_handler: StreamOpener,
        processor: EventProcessor,
        middlewares: Sequence[Middleware],
        policy: StreamEvents,
    ) -> None:
        self._run = _Run(request, open_handler, processor, middlewares, policy)
        self._items: AsyncGeneratorType[Any, None] | None = None
        self._entered = False

    @property
    def request(self) -> Any:
        """The request being streamed."""
        return self._run.request

    @property
    def closed(self) -> bool:
        """True once the stream ended or was closed."""
        return self._run.state == _CLOSED

    def __aiter__(self) -> AsyncIterator[T]:
        items = self._items
        if items is None:
            items = self._items = _start(self._run)
        return items

    def __anext__(self) -> Awaitable[T]:
        items = self._items
        if items is None:
            items = self._items = _start(self._run)
        return items.__anext__()

    async def aclose(self) -> None:
        """Close the stream now: middlewares, then the handler, then in-flight events, then
        the DI scope. Safe to call more than once; the first error of a cleanup is raised."""
        run = self._run
        if run.state == _OPEN:
            run.state = _CLOSED
            error = await run.release(cancelled=False, items=self._items)
            if error is not None:
                raise error
        run.state = _CLOSED

    async def __aenter__(self) -> RequestStream[T]:
        if self._entered:
            raise StreamStateError(
                f"This stream of {type(self._run.request).__qualname__} was already entered "
                "with 'async with'; a stream is consumed once. Call mediator.stream() again for "
                "a new one."
            )
        self._entered = True
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


async def _close(layer: Any, first_error: BaseException | None) -> BaseException | None:
    aclose = getattr(layer, "aclose", None)
    if aclose is None:
        return first_error
    try:
        await aclose()
    except BaseException as exc:
        return first_error or exc
    return first_error
