"""Which remote partition a shipped write belongs to (pure).

Every shipped write goes to the remote partition its own hash key selects — CRC-64 of the
hash key (of the sort key when the hash key is empty) modulo the remote partition count —
so any pair of partition counts works. Pegasus instead routes a whole batch by its last
entry and misroutes when the remote count does not divide the local one.

The hash key is read straight from the raw Thrift bytes (field 1 of the request, or the
bare blob of a remove) without decoding the whole request: this runs once per shipped write.
"""

import struct

from dupkv.base.crc64 import crc64
from dupkv.storage.mutation import TaskCode

_T_STRING = 11
_I32 = struct.Struct(">i")


def _field1_blob(raw: bytes) -> bytes | None:
    """Field 1 of a Thrift struct when it is the first field and a string; else None."""
    if len(raw) < 7 or raw[0] != _T_STRING or raw[1] != 0 or raw[2] != 1:
        return None
    n = _I32.unpack_from(raw, 3)[0]
    if n < 0 or 7 + n > len(raw):
        return None
    return raw[7 : 7 + n]


def _hash_of_key(key: bytes) -> int:
    if len(key) < 2:
        raise ValueError(f"encoded key of {len(key)} bytes")
    n = (key[0] << 8) | key[1]
    if 2 + n > len(key):
        raise ValueError("encoded key shorter than its hash key length")
    return crc64(key[2 : 2 + n] if n else key[2:])


def write_hash(code: str, raw: bytes) -> int:
    """The partition hash of a shipped write; raises ValueError on malformed bytes."""
    if code == TaskCode.REMOVE:
        if len(raw) < 4:
            raise ValueError("remove without its key")
        return _hash_of_key(raw[4:])
    field = _field1_blob(raw)
    if field is None:
        field = _decode_field1(code, raw)
    if code == TaskCode.PUT:
        return _hash_of_key(field)
    if code in (TaskCode.MULTI_PUT, TaskCode.MULTI_REMOVE):
        return crc64(field)
    raise ValueError(f"{code} is not a shippable write")


def _decode_field1(code: str, raw: bytes) -> bytes:
    """Slow path: field 1 is not first in the bytes (another encoder's field order)."""
    from dupkv.rpc.thrift import deserialize, rrdb

    cls = {
        TaskCode.PUT: rrdb.update_request,
        TaskCode.MULTI_PUT: rrdb.multi_put_request,
        TaskCode.MULTI_REMOVE: rrdb.multi_remove_request,
    }.get(code)
    if cls is None:
        raise ValueError(f"{code} is not a shippable write")
    req = deserialize(cls, raw)
    value = req.key if code == TaskCode.PUT else req.hash_key
    if value is None:
        raise ValueError(f"{code} without its key")
    return value


def remote_partition(code: str, raw: bytes, partition_count: int) -> int:
    return write_hash(code, raw) % partition_count
