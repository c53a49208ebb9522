"""A middleware that logs requests and responses at DEBUG."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from cqrs._internal.pipeline.middleware import HandleType

__all__ = ["LoggingMiddleware"]

logger = logging.getLogger("cqrs")


def _as_dict(value: Any) -> Any:
    to_dict = getattr(value, "to_dict", None)
    return to_dict() if callable(to_dict) else {}


class LoggingMiddleware:
    """Logs each request and its response on the ``cqrs`` logger at DEBUG.

    When DEBUG is off for that logger it costs one level check: nothing is serialized. On a
    stream it logs the start, each item, and the end. Bootstrap appends one to the chain unless
    the given middlewares already contain one. It never changes the request or the response.
    """

    @property
    def enabled(self) -> bool:
        """False while DEBUG is off for the ``cqrs`` logger: mediators then skip this layer."""
        return logger.isEnabledFor(logging.DEBUG)

    async def __call__(self, request: Any, handle: HandleType) -> Any:
        """Log ``request``, await ``handle(request)``, log the response, return it."""
        if not logger.isEnabledFor(logging.DEBUG):
            return await handle(request)
        name = type(request).__name__
        logger.debug(
            "Handle %s request",
            name,
            extra={"request_json_fields": {"request": _as_dict(request)}, "to_mask": True},
        )
        response = await handle(request)
        logger.debug(
            "Request %s handled",
            name,
            extra={"request_json_fields": {"response": _as_dict(response)}, "to_mask": True},
        )
        return response

    def stream(self, request: Any, items: AsyncIterator[Any]) -> AsyncIterator[Any]:
        """Log the stream's start, items and end; returns ``items`` untouched when DEBUG is off."""
        if not logger.isEnabledFor(logging.DEBUG):
            return items
        return self._logged(request, items)

    async def _logged(self, request: Any, items: AsyncIterator[Any]) -> AsyncIterator[Any]:
        name = type(request).__name__
        logger.debug(
            "Stream %s request",
            name,
            extra={"request_json_fields": {"request": _as_dict(request)}, "to_mask": True},
        )
        count = 0
        async for item in items:
            count += 1
            logger.debug(
                "Stream %s item %d",
                name,
                count,
                extra={"request_json_fields": {"response": _as_dict(item)}, "to_mask": True},
            )
            yield item
        logger.debug("Stream %s finished after %d items", name, count)
