"""Payload compression for the outbox (4.x ``cqrs.compressors``)."""

from __future__ import annotations

import zlib
from typing import Protocol, runtime_checkable

__all__ = ["Compressor", "ZlibCompressor"]


@runtime_checkable
class Compressor(Protocol):
    """Compresses outbox payloads on write and restores them on read.

    ``decompress(compress(data)) == data`` must hold. ``decompress`` raises when its input
    was not produced by ``compress``; the outbox logs such a row and marks it failed.
    """

    def compress(self, data: bytes) -> bytes:
        """The compressed form of ``data``."""
        ...

    def decompress(self, data: bytes) -> bytes:
        """The original bytes of ``data`` (output of :meth:`compress`)."""
        ...


class ZlibCompressor:
    """zlib (DEFLATE with a zlib header), by default at zlib's default level, as 4.x.

    ``level`` is -1 (zlib's default, 6) or 0 to 9; another value raises ``ValueError``.
    :meth:`decompress` raises ``zlib.error`` for bytes that are not a zlib stream.
    """

    __slots__ = ("level",)

    def __init__(self, level: int = zlib.Z_DEFAULT_COMPRESSION) -> None:
        if level not in range(-1, 10):
            raise ValueError(
                f"ZlibCompressor level must be -1 (zlib's default) or 0 to 9, got {level!r}"
            )
        self.level = level

    def compress(self, data: bytes) -> bytes:
        """``data`` compressed with zlib at :attr:`level`."""
        return zlib.compress(data, self.level)

    def decompress(self, data: bytes) -> bytes:
        """The bytes ``data`` was compressed from; ``zlib.error`` if it is not zlib data."""
        return zlib.decompress(data)
