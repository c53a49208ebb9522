"""The compressor protocol and ZlibCompressor (4.x ``cqrs.compressors``)."""

from __future__ import annotations

import zlib

import pytest

from cqrs.compressors import Compressor, ZlibCompressor
from cqrs.compressors.protocol import Compressor as ProtocolCompressor
from cqrs.compressors.zlib import ZlibCompressor as ZlibAtItsPath


def test_garbage_is_a_zlib_error_not_silently_returned() -> None:
    with pytest.raises(zlib.error):
        ZlibCompressor().decompress(b"not zlib data")


def test_round_trip_and_same_bytes_as_plain_zlib() -> None:
    data = b'{"order_id": "A-1", "total": 12}' * 50
    packed = ZlibCompressor().compress(data)
    assert packed == zlib.compress(data)  # 4.x: zlib with default settings
    assert len(packed) < len(data)
    assert ZlibCompressor().decompress(packed) == data
    assert ZlibCompressor(level=9).decompress(ZlibCompressor(level=0).compress(data)) == data


@pytest.mark.parametrize("level", [-2, 10, 1.5])
def test_level_out_of_range_is_refused(level: float) -> None:
    with pytest.raises(ValueError, match="level"):
        ZlibCompressor(level=level)  # type: ignore[arg-type]


def test_protocol_is_runtime_checkable_and_paths_agree() -> None:
    class Identity:
        def compress(self, data: bytes) -> bytes:
            return data

        def decompress(self, data: bytes) -> bytes:
            return data

    assert isinstance(ZlibCompressor(), Compressor)
    assert isinstance(Identity(), Compressor)
    assert not isinstance(object(), Compressor)
    assert ProtocolCompressor is Compressor
    assert ZlibAtItsPath is ZlibCompressor
