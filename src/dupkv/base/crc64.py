"""CRC-64 as Pegasus computes it for partition routing (pure).

Reflected CRC-64 with polynomial 0x9a6c9329ac4bc9b5 (normal form 0xad93d23594c93659),
initial value ~0 and final xor ~0, processed a byte at a time through a 256-entry table.
Check value: crc64(b"123456789") == 0xae8b14860a799888.
"""

from dupkv.base.crc import reflected_crc

_crc64 = reflected_crc(0x9A6C9329AC4BC9B5, 64)


def crc64(data: bytes, crc: int = 0) -> int:
    """Return the CRC-64 of `data`; pass a previous result as `crc` to continue a stream."""
    return _crc64(data, crc)


def key_hash(hash_key: bytes, sort_key: bytes) -> int:
    """The partition hash of a record: its hash key, or its sort key when the hash key is empty."""
    return crc64(hash_key if hash_key else sort_key)


def partition_index(hash_value: int, partition_count: int) -> int:
    """Client routing: unsigned 64-bit hash modulo the partition count."""
    return hash_value % partition_count
