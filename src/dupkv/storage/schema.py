"""Pegasus's RocksDB key and value layouts (pure).

Key:   [hash_key length: u16 BE][hash_key][sort_key]
Value: [expire_ts: u32 BE][timetag: u64 BE][user data]       (data version 1)

A tombstone is a value with the delete flag set in its timetag and no user data; every read
treats it as absent. Tombstones exist only on duplicated tables, where they let a delete win
last-writer-wins against an older put that arrives later.
"""

import struct

from dupkv.base.timeutil import make_timetag

MAX_HASH_KEY_LEN = 0xFFFF - 1  # a hash key must be shorter than 65535 bytes
VALUE_HEADER_LEN = 12
DATA_VERSION = 1

_U16 = struct.Struct(">H")
_HEADER = struct.Struct(">IQ")


class FilterType:
    """`filter_type` of multi_get and scanners."""

    NO_FILTER = 0
    MATCH_ANYWHERE = 1
    MATCH_PREFIX = 2
    MATCH_POSTFIX = 3
    ALL = (0, 1, 2, 3)


def encode_key(hash_key: bytes, sort_key: bytes) -> bytes:
    if len(hash_key) > MAX_HASH_KEY_LEN:
        raise ValueError(f"hash key is {len(hash_key)} bytes; it must be under 65535")
    return _U16.pack(len(hash_key)) + hash_key + sort_key


def decode_key(key: bytes) -> tuple[bytes, bytes]:
    """Split an encoded key into (hash_key, sort_key); raises ValueError if malformed."""
    if len(key) < 2:
        raise ValueError(f"encoded key of {len(key)} bytes is shorter than its 2-byte header")
    n = _U16.unpack_from(key)[0]
    if 2 + n > len(key):
        raise ValueError(f"encoded key says hash key is {n} bytes but only {len(key) - 2} follow")
    return key[2 : 2 + n], key[2 + n :]


def hash_key_of(key: bytes) -> bytes:
    n = _U16.unpack_from(key)[0]
    return key[2 : 2 + n]


def next_blob(prefix: bytes) -> bytes:
    """The smallest key greater than every key that starts with `prefix` (b"" if none)."""
    i = len(prefix) - 1
    while i >= 0 and prefix[i] == 0xFF:
        i -= 1
    if i < 0:
        return b""
    return prefix[:i] + bytes((prefix[i] + 1,))


def hash_key_prefix(hash_key: bytes) -> bytes:
    return _U16.pack(len(hash_key)) + hash_key


def encode_value(expire_ts: int, timetag: int, data: bytes) -> bytes:
    return _HEADER.pack(expire_ts, timetag) + data


def encode_tombstone(timetag: int) -> bytes:
    assert timetag & 1, "a tombstone's timetag carries the delete flag"
    return _HEADER.pack(0, timetag)


def local_timetag(timestamp_us: int, cluster_id: int) -> int:
    return make_timetag(timestamp_us, cluster_id, False)


def decode_header(value: bytes) -> tuple[int, int]:
    """(expire_ts, timetag) of a stored value."""
    return _HEADER.unpack_from(value)


def value_expire_ts(value: bytes) -> int:
    return int.from_bytes(value[0:4], "big")


def value_timetag(value: bytes) -> int:
    return int.from_bytes(value[4:12], "big")


def value_data(value: bytes) -> bytes:
    return value[VALUE_HEADER_LEN:]


def is_tombstone(value: bytes) -> bool:
    return bool(value[11] & 1)


def is_live(value: bytes, epoch_now: int) -> bool:
    """A stored value is visible iff it is not a tombstone and has not expired."""
    if value[11] & 1:
        return False
    expire_ts = int.from_bytes(value[0:4], "big")
    return expire_ts == 0 or expire_ts > epoch_now


def filter_valid(filter_type: int) -> bool:
    return filter_type in FilterType.ALL


def filter_match(filter_type: int, pattern: bytes, data: bytes) -> bool:
    """Whether `data` passes a multi_get/scan key filter; an empty pattern matches all."""
    if filter_type == FilterType.NO_FILTER or not pattern:
        return True
    if filter_type == FilterType.MATCH_ANYWHERE:
        return pattern in data
    if filter_type == FilterType.MATCH_PREFIX:
        return data.startswith(pattern)
    if filter_type == FilterType.MATCH_POSTFIX:
        return data.endswith(pattern)
    raise ValueError(f"unknown filter type {filter_type}; accepted: 0..3")
