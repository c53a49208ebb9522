"""The compressor protocol (4.x path)."""

from cqrs._internal.serialization.compress import Compressor as Compressor

__all__ = ["Compressor"]
