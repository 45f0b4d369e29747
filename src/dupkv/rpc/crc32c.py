"""CRC-32C (Castagnoli), the CRC that rDSN's `utils/crc.cpp` computes (pure).

rDSN's 32-bit table starts 0x00000000, 0xf26b8303, ... with 0x82f63b78 at index 128: the
reflected Castagnoli polynomial, initial value ~0, final xor ~0. We use it only for the
48-byte THFT request header, and only when a client sets header_crc32 (ours and Pegasus's
send 0 by default), so a byte-at-a-time table loop is fast enough.
Check value: crc32c(b"123456789") == 0xE3069283.
"""

from dupkv.base.crc import reflected_crc

_crc32c = reflected_crc(0x82F63B78, 32)


def crc32c(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """Return the CRC-32C of `data`; pass a previous result as `crc` to continue a stream."""
    return _crc32c(bytes(data), crc)
