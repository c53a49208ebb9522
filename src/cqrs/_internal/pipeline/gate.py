"""Which middlewares take part in a call, decided as cheaply as the chain allows.

A middleware may define ``enabled`` to be skipped while it has nothing to do; the stock
``LoggingMiddleware`` is enabled only while DEBUG is on for the ``cqrs`` logger. Reading that
property on every call costs more than a whole handler call, so :func:`middleware_gate`
compiles the check once per chain: a constant for a chain without switches, one level check
for the stock logging middleware, the general property walk otherwise.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from cqrs._internal.pipeline.logging import LoggingMiddleware
from cqrs._internal.pipeline.logging import logger as logging_logger
from cqrs._internal.pipeline.middleware import HandleType, Middleware, active, fold, switchable

__all__ = ["Gate", "gated_call", "middleware_gate", "plain_call"]

Gate = Callable[[], Sequence[Middleware]]
"""Returns the middlewares active for this call, outermost first."""


def middleware_gate(middlewares: Sequence[Middleware]) -> Gate | None:
    """The gate of a chain, or ``None`` for an empty chain (no middleware ever runs)."""
    chain = tuple(middlewares)
    if not chain:
        return None
    if len(chain) == 1 and type(chain[0]) is LoggingMiddleware:  # what bootstrap builds
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
