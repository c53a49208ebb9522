"""The zlib compressor (4.x path)."""

from cqrs._internal.serialization.compress import ZlibCompressor as ZlibCompressor

__all__ = ["ZlibCompressor"]
