"""CRC-32C (Castagnoli), the CRC that rDSN's `utils/crc.cpp` computes (pure).

rDSN's 32-bit table starts 0x00000000, 0xf26b8303, ... with 0x82f63b78 at index 128: the
reflected Castagnoli polynomial, initial value ~0, final xor ~0. We use it only for the
48-byte THFT request header, so a byte-at-a-time table loop is fast enough.
Check value: crc32c(b"123456789") == 0xE3069283.
"""

_POLY_REFLECTED = 0x82F63B78
_MASK = 0xFFFFFFFF


def _make_table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ _POLY_REFLECTED if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_TABLE = _make_table()


def crc32c(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """Return the CRC-32C of `data`; pass a previous result as `crc` to continue a stream."""
    table = _TABLE
    crc = ~crc & _MASK
    for b in bytes(data):
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return ~crc & _MASK
