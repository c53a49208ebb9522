"""The frames of a mediator stream: ``start``, one frame per item, then ``complete`` or ``error``.

Framework-free: the ASGI response (``integrations/starlette.py``) and the jobs
(``sse/jobs.py``) both read these frames.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from typing import Any, overload

from cqrs._internal.sse.frames import Frame, SSESettings
from cqrs._internal.streaming import RequestStream

__all__ = ["frames_of"]

logger = logging.getLogger("cqrs")


@overload
def frames_of(stream: RequestStream[Any], settings: SSESettings) -> AsyncGenerator[Frame, None]: ...


@overload
def frames_of(
    stream: RequestStream[Any], settings: SSESettings, *, encoded: bool
) -> AsyncGenerator[Frame | bytes, None]: ...


def frames_of(
    stream: RequestStream[Any], settings: SSESettings, *, encoded: bool = False
) -> AsyncGenerator[Frame | bytes, None]:
    """The frames of a mediator stream: start, one per item (``None`` items are skipped),
    then ``complete``, or ``error`` with a safe message if the handler fails.

    With ``encoded`` the item frames come as their wire bytes (the fast path of
    :class:`SSEResponse`). The stream is closed when the returned generator is closed or
    cancelled (client disconnect).
    """
    return _frames(stream, settings, encoded=encoded)


async def _frames(
    stream: RequestStream[Any], settings: SSESettings, *, encoded: bool
) -> AsyncGenerator[Frame | bytes, None]:
    if settings.send_start:
        yield settings.start()
    event_id = 0
    async with stream:
        try:
            async for item in stream:
                if item is None:
                    continue
                event_id += 1
                yield (
                    settings.encoded_item(item, event_id)
                    if encoded
                    else settings.item(item, event_id)
                )
        except Exception as exc:
            if isinstance(exc, settings.safe_errors):
                # An error the application chose to show: an outcome, not a fault.
                logger.info(
                    "Stream of %s ended with %s: %s",
                    type(stream.request).__qualname__,
                    type(exc).__name__,
                    exc,
                )
            else:
                logger.error(
                    "Stream of %s failed; the client gets an error frame",
                    type(stream.request).__qualname__,
                    exc_info=exc,
                )
            yield settings.error(exc, event_id + 1)
            return
    yield settings.complete(event_id, event_id + 1)
