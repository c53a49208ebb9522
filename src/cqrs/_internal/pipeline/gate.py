"""Which middlewares take part in a call, decided as cheaply as the chain allows.

A middleware may define ``enabled`` to be skipped while it has nothing to do; the stock
``LoggingMiddleware`` is enabled only while DEBUG is on for the ``cqrs`` logger. Reading that
property on every call costs more than a whole handler call, so :func:`middleware_gate`
compiles the check once per chain: a constant for a chain without switches, one level check
for the stock logging middleware, the general property walk otherwise. :func:`quiet_probe`
is cheaper still where it can be: no Python call at all.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NamedTuple, cast

from cqrs._internal.pipeline.logging import LoggingMiddleware
from cqrs._internal.pipeline.logging import logger as logging_logger
from cqrs._internal.pipeline.middleware import HandleType, Middleware, active, fold, switchable

__all__ = [
    "ChainPlan",
    "Gate",
    "chain_plan",
    "gated_call",
    "middleware_gate",
    "plain_call",
    "quiet_probe",
]

Gate = Callable[[], Sequence[Middleware]]
"""Returns the middlewares active for this call, outermost first."""


def middleware_gate(middlewares: Sequence[Middleware]) -> Gate | None:
    """The gate of a chain, or ``None`` for an empty chain (no middleware ever runs)."""
    chain = tuple(middlewares)
    if not chain:
        return None
    if len(chain) == 1 and type(chain[0]) is LoggingMiddleware:  # what bootstrap builds
        return _logging_only(chain[0]).gate
    return _gate_of(chain)


def _gate_of(chain: tuple[Middleware, ...]) -> Gate:
    if len(chain) == 1 and type(chain[0]) is LoggingMiddleware:
        debug_on = logging_logger.isEnabledFor
        return lambda: chain if debug_on(logging.DEBUG) else ()
    if not switchable(chain):
        return lambda: chain
    if all(type(m) is LoggingMiddleware or not hasattr(m, "enabled") for m in chain):
        without_logging = tuple(m for m in chain if type(m) is not LoggingMiddleware)
        debug_on = logging_logger.isEnabledFor
        debug = logging.DEBUG
        return lambda: chain if debug_on(debug) else without_logging
    return lambda: active(chain)


class ChainPlan(NamedTuple):
    """What a mediator needs of its middleware chain, compiled once (see the module doc)."""

    gate: Gate | None
    """The middlewares active for a call (:func:`middleware_gate`)."""
    quiet: Callable[[], object]
    """``quiet() is False``: no middleware takes part in this call, without a Python frame
    (:func:`quiet_probe`); any other result means "ask the gate"."""
    call: Callable[[HandleType, Any], Awaitable[Any]]
    """``call(handle, message)`` through the active middlewares (:func:`gated_call`)."""


def chain_plan(middlewares: Sequence[Middleware]) -> ChainPlan:
    """The :class:`ChainPlan` of a chain; shared by every mediator over the same stock chain
    (bootstrap builds one per call in the seed's FastAPI pattern)."""
    if not middlewares:
        return _EMPTY_PLAN
    if len(middlewares) == 1 and type(middlewares[0]) is LoggingMiddleware:
        return _logging_only(middlewares[0])
    gate = _gate_of(tuple(middlewares))
    return ChainPlan(gate, object, gated_call(gate))


@functools.lru_cache(maxsize=8)
def _logging_only(middleware: LoggingMiddleware) -> ChainPlan:
    gate = _gate_of((middleware,))
    return ChainPlan(gate, quiet_probe((middleware,)), gated_call(gate))


def quiet_probe(middlewares: Sequence[Middleware]) -> Callable[[], object]:
    """A check without a Python frame: ``probe() is False`` means that no middleware of the
    chain takes part in this call; any other result means "ask the gate".

    For an empty chain it is always ``False``. For the stock ``LoggingMiddleware`` alone it
    reads the ``cqrs`` logger's own record of whether DEBUG is on (the cache behind
    ``Logger.isEnabledFor``, which the logging module clears on every level change, so it is
    exactly as current as ``isEnabledFor``; before it is filled, the gate asks the logger).
    """
    if not middlewares:
        return bool
    cache: object = getattr(logging_logger, "_cache", None)
    if (
        len(middlewares) == 1
        and type(middlewares[0]) is LoggingMiddleware
        and type(logging_logger).isEnabledFor is logging.Logger.isEnabledFor
        and isinstance(cache, dict)
    ):
        return functools.partial(cast(dict[int, bool], cache).get, logging.DEBUG)
    return object


def gated_call(gate: Gate | None) -> Callable[[HandleType, Any], Awaitable[Any]]:
    """``call(handle, message)``: ``handle(message)`` through the middlewares that ``gate``
    (from :func:`middleware_gate`) says are active for this call, without a coroutine of its
    own."""
    if gate is None:
        return plain_call

    def call(handle: HandleType, message: Any) -> Awaitable[Any]:
        now = gate()
        return fold(now, handle)(message) if now else handle(message)

    return call


def plain_call(handle: HandleType, message: Any) -> Awaitable[Any]:
    """``handle(message)`` with no middleware."""
    return handle(message)


_EMPTY_PLAN = ChainPlan(None, bool, plain_call)
