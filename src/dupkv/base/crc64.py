"""CRC-64 as Pegasus computes it for partition routing (pure).

Reflected CRC-64 with polynomial 0x9a6c9329ac4bc9b5 (normal form 0xad93d23594c93659),
initial value ~0 and final xor ~0, processed a byte at a time through a 256-entry table.
Check value: crc64(b"123456789") == 0xae8b14860a799888.
"""

_POLY_REFLECTED = 0x9A6C9329AC4BC9B5
_MASK = 0xFFFFFFFFFFFFFFFF


def _make_table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ _POLY_REFLECTED if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_TABLE = _make_table()


def crc64(data: bytes, crc: int = 0) -> int:
    """Return the CRC-64 of `data`; pass a previous result as `crc` to continue a stream."""
    table = _TABLE
    crc = ~crc & _MASK
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return ~crc & _MASK


def key_hash(hash_key: bytes, sort_key: bytes) -> int:
    """The partition hash of a record: its hash key, or its sort key when the hash key is empty."""
    return crc64(hash_key if hash_key else sort_key)


def partition_index(hash_value: int, partition_count: int) -> int:
    """Client routing: unsigned 64-bit hash modulo the partition count."""
    return hash_value % partition_count
