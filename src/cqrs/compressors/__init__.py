"""Outbox payload compressors (4.x package)."""

from cqrs._internal.serialization.compress import Compressor as Compressor
from cqrs._internal.serialization.compress import ZlibCompressor as ZlibCompressor

__all__ = ["ZlibCompressor", "Compressor"]
