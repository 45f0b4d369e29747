"""A mutation: what one decree of a partition changed, as the plog stores it (pure).

A mutation is (decree, timestamp_us, updates), each update a (task code, raw request bytes)
pair. The raw bytes are the Thrift encoding of the RPC argument, exactly what a client sent
(or what the primary produced by evaluating an atomic write), so replay and duplication both
work from the same bytes.

Payload layout (the plog frames it with the decree, a length and a checksum):
    [timestamp_us: u64 BE][update count: u16 BE] then per update
    [task code id: u8][raw length: u32 BE][raw bytes]
"""

import struct
from collections.abc import Sequence
from typing import Any, NamedTuple


class TaskCode:
    """Task code names as Pegasus spells them on the wire."""

    PUT = "RPC_RRDB_RRDB_PUT"
    MULTI_PUT = "RPC_RRDB_RRDB_MULTI_PUT"
    REMOVE = "RPC_RRDB_RRDB_REMOVE"
    MULTI_REMOVE = "RPC_RRDB_RRDB_MULTI_REMOVE"
    INCR = "RPC_RRDB_RRDB_INCR"
    CHECK_AND_SET = "RPC_RRDB_RRDB_CHECK_AND_SET"
    CHECK_AND_MUTATE = "RPC_RRDB_RRDB_CHECK_AND_MUTATE"
    DUPLICATE = "RPC_RRDB_RRDB_DUPLICATE"
    WRITE_EMPTY = "RPC_REPLICATION_WRITE_EMPTY"


# Stable on-disk ids: never renumber, only append.
_CODE_IDS = {
    TaskCode.PUT: 1,
    TaskCode.MULTI_PUT: 2,
    TaskCode.REMOVE: 3,
    TaskCode.MULTI_REMOVE: 4,
    TaskCode.INCR: 5,
    TaskCode.CHECK_AND_SET: 6,
    TaskCode.CHECK_AND_MUTATE: 7,
    TaskCode.DUPLICATE: 8,
    TaskCode.WRITE_EMPTY: 9,
}
_CODE_NAMES = {v: k for k, v in _CODE_IDS.items()}

IDEMPOTENT_CODES = frozenset(
    {TaskCode.PUT, TaskCode.MULTI_PUT, TaskCode.REMOVE, TaskCode.MULTI_REMOVE, TaskCode.DUPLICATE}
)
ATOMIC_CODES = frozenset({TaskCode.INCR, TaskCode.CHECK_AND_SET, TaskCode.CHECK_AND_MUTATE})
# The user writes duplication ships; DUPLICATE itself is never shipped again (loop prevention).
SHIPPABLE_CODES = frozenset(
    {TaskCode.PUT, TaskCode.MULTI_PUT, TaskCode.REMOVE, TaskCode.MULTI_REMOVE}
)

_HEAD = struct.Struct(">QH")
_UPDATE = struct.Struct(">BI")
_SINGLE = struct.Struct(">QHBI")
MAX_UPDATES = 0xFFFF


class Update(NamedTuple):
    code: str
    raw: bytes


class Mutation(NamedTuple):
    decree: int
    timestamp_us: int
    updates: tuple[Update, ...]


def encode_payload(timestamp_us: int, updates: Sequence[Any]) -> bytes:
    """Encode updates: anything with `.code` and `.raw` (an `Update`, for one)."""
    assert len(updates) <= MAX_UPDATES, len(updates)
    if len(updates) == 1:  # the common case, kept cheap
        u = updates[0]
        return _SINGLE.pack(timestamp_us, 1, _CODE_IDS[u.code], len(u.raw)) + u.raw
    parts = [_HEAD.pack(timestamp_us, len(updates))]
    for u in updates:
        parts.append(_UPDATE.pack(_CODE_IDS[u.code], len(u.raw)))
        parts.append(u.raw)
    return b"".join(parts)


def decode_payload(decree: int, payload: bytes) -> Mutation:
    """Decode a plog payload; raises ValueError if it is not a well-formed mutation."""
    if len(payload) < _HEAD.size:
        raise ValueError(f"mutation {decree}: payload of {len(payload)} bytes is too short")
    timestamp_us, count = _HEAD.unpack_from(payload)
    pos = _HEAD.size
    updates = []
    for _ in range(count):
        if pos + _UPDATE.size > len(payload):
            raise ValueError(f"mutation {decree}: update header runs past the payload")
        code_id, n = _UPDATE.unpack_from(payload, pos)
        pos += _UPDATE.size
        code = _CODE_NAMES.get(code_id)
        if code is None:
            raise ValueError(f"mutation {decree}: unknown task code id {code_id}")
        if pos + n > len(payload):
            raise ValueError(f"mutation {decree}: update body runs past the payload")
        updates.append(Update(code, payload[pos : pos + n]))
        pos += n
    if pos != len(payload):
        raise ValueError(f"mutation {decree}: {len(payload) - pos} trailing bytes")
    return Mutation(decree, timestamp_us, tuple(updates))
