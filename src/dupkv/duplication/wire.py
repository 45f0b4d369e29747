"""The DUPLICATE request written by hand, straight in rDSN's Thrift dialect, and the
shipped puts it carries read by hand (pure).

Building thriftpy2 structs for every shipped write and then converting their type bytes
costs more than the rest of the shipping path; this writes the exact same bytes in one
pass (the tests compare it with the general encoder). At the follower, the general decoder
(walk the rDSN dialect, then thriftpy2) spends ~5 us on each shipped put; a put in the
canonical layout is read in ~1.5 us, and anything else goes to the general decoder. The
same holds for the DUPLICATE args themselves (~5.5 us per entry in general, ~3.5 here), read in
the layout below and converted in place to standard Thrift like the general walker does:

    update_request { 1: blob key, 2: blob value, 3: i32 expire_ts_seconds,
                     4: optional i32 type }   (blob: type byte STRING or rDSN's STRUCT)

    args { 1: duplicate_request { 1: list<duplicate_entry> } }
    duplicate_entry { 1: i64 timestamp, 2: task_code, 3: blob raw_message,
                      4: byte cluster_id, 5: bool verify_timetag }

task_code and blob are rDSN types: type byte STRUCT, then an i32 length and the bytes.
"""

import struct
from collections.abc import Sequence
from typing import Any, NamedTuple

from dupkv.duplication.pipeline import Entry
from dupkv.storage.mutation import SHIPPABLE_CODES

_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")
_T_BOOL, _T_BYTE, _T_I32, _T_I64, _T_STRING, _T_STRUCT, _T_LIST = 2, 3, 8, 10, 11, 12, 15

_HEAD = bytes((_T_STRUCT, 0, 1, _T_LIST, 0, 1, _T_STRUCT))  # args.1, request.1, list of structs
_TIMESTAMP = bytes((_T_I64, 0, 1))
_CODES = {
    code: bytes((_T_STRUCT, 0, 2)) + _I32.pack(len(code)) + code.encode()
    for code in SHIPPABLE_CODES
}
_RAW = bytes((_T_STRUCT, 0, 3))
_TAIL = b"\x00\x00"  # end of duplicate_request, end of args


def encode_duplicate_args(entries: Sequence[Entry], cluster_id: int) -> bytes:
    """The args struct of RPC_RRDB_RRDB_DUPLICATE carrying `entries` from `cluster_id`."""
    assert 0 <= cluster_id <= 127, cluster_id
    entry_tail = bytes((_T_BYTE, 0, 4, cluster_id, _T_BOOL, 0, 5, 1, 0))
    parts = [_HEAD, _I32.pack(len(entries))]
    append = parts.append
    for e in entries:
        append(_TIMESTAMP)
        append(_I64.pack(e.timestamp_us))
        append(_CODES[e.code])
        append(_RAW)
        append(_I32.pack(len(e.raw)))
        append(e.raw)
        append(entry_tail)
    append(_TAIL)
    return b"".join(parts)


class ShippedPut(NamedTuple):
    """A shipped update_request, with the fields of thriftpy2's (type None when absent)."""

    key: bytes
    value: bytes
    expire_ts_seconds: int
    type: int | None


def parse_update_request(raw: bytes) -> ShippedPut | None:
    """The put in `raw` if it has the canonical layout (either dialect); None otherwise,
    including for any malformed bytes, so the caller falls back to the general decoder."""
    unpack = _I32.unpack_from
    end = len(raw)
    try:
        if raw[0] not in (_T_STRING, _T_STRUCT) or raw[1] or raw[2] != 1:
            return None
        n = unpack(raw, 3)[0]
        pos = 7 + n
        if n < 0 or pos > end:
            return None
        key = raw[7:pos]
        if raw[pos] not in (_T_STRING, _T_STRUCT) or raw[pos + 1] or raw[pos + 2] != 2:
            return None
        n = unpack(raw, pos + 3)[0]
        start, pos = pos + 7, pos + 7 + n
        if n < 0 or pos > end:
            return None
        value = raw[start:pos]
        if raw[pos] != _T_I32 or raw[pos + 1] or raw[pos + 2] != 3:
            return None
        expire = unpack(raw, pos + 3)[0]
        pos += 7
        kind = None
        if raw[pos] == _T_I32 and raw[pos + 1] == 0 and raw[pos + 2] == 4:
            kind = unpack(raw, pos + 3)[0]
            pos += 7
        if raw[pos] != 0 or pos + 1 != end:
            return None
    except (IndexError, struct.error):
        return None
    return ShippedPut(key, value, expire, kind)


_PUT_ARGS_HEAD = b"\x0c\x00\x01"  # field 1 of the args struct: the update_request


def parse_put_args(buf: bytearray, start: int, end: int) -> tuple[Any, int, int] | None:
    """The fast decoder (dupkv.rpc.framing.RequestDecoder) of a client's PUT: its args
    struct buf[start:end] in the canonical layout, either dialect. Converts the blobs'
    type bytes to standard Thrift in place, as the general walker would, and returns
    (the put, the span of its update_request); None for any other bytes, untouched."""
    if buf[start : start + 3] != _PUT_ARGS_HEAD or end - start < 5 or buf[end - 1] != 0:
        return None
    put = parse_update_request(bytes(buf[start + 3 : end - 1]))
    if put is None:
        return None
    buf[start + 3] = _T_STRING
    buf[start + 10 + len(put.key)] = _T_STRING  # the value's type byte
    return put, start + 3, end - 1


class DupEntry(NamedTuple):
    """A duplicate_entry, with the fields of thriftpy2's."""

    timestamp: int
    task_code: str
    raw_message: bytes
    cluster_id: int
    verify_timetag: bool


class DuplicateRequest(NamedTuple):
    entries: list[DupEntry]


# The fixed parts of an entry, each read with one unpack: the timestamp field and the head
# of the task code; the head of the raw message; the cluster id and verify_timetag fields
# and the entry's STOP.
_ENTRY_HEAD = struct.Struct(">3sqBHi")
_RAW_HEAD = struct.Struct(">BHi")
_ENTRY_TAIL = struct.Struct(">BHbBHBB")
_BLOB_TYPES = (_T_STRING, _T_STRUCT)


def parse_duplicate_args(buf: bytearray, start: int, end: int) -> tuple[Any, int, int] | None:
    """Read the args struct buf[start:end] of a DUPLICATE in the layout the encoder writes
    (blobs and task codes in either dialect). Returns (the request, the span of its bytes)
    after converting buf to standard Thrift in place, or None, with buf untouched, if the
    bytes have any other layout or are malformed (the general decoder then decides)."""
    entry_head, raw_head, entry_tail = (
        _ENTRY_HEAD.unpack_from,
        _RAW_HEAD.unpack_from,
        _ENTRY_TAIL.unpack_from,
    )
    patches: list[int] = []
    entries: list[DupEntry] = []
    codes: dict[bytes, str] = {}
    try:
        if buf[start : start + 7] != _HEAD:
            return None
        count = _I32.unpack_from(buf, start + 7)[0]
        pos = start + 11
        if not 0 <= count <= (end - pos) // 34:  # an entry takes 34 bytes at least
            return None
        for _ in range(count):
            ts_head, ts, code_type, code_id, n = entry_head(buf, pos)
            if ts_head != _TIMESTAMP or code_type not in _BLOB_TYPES or code_id != 2:
                return None
            if n < 0 or pos + 18 + n > end:
                return None
            patches.append(pos + 11)
            pos += 18
            code_bytes = bytes(buf[pos : pos + n])
            code = codes.get(code_bytes)
            if code is None:
                code = codes[code_bytes] = code_bytes.decode("ascii")
            pos += n
            raw_type, raw_id, n = raw_head(buf, pos)
            if raw_type not in _BLOB_TYPES or raw_id != 3 or n < 0 or pos + 7 + n > end:
                return None
            patches.append(pos)
            pos += 7
            raw = bytes(buf[pos : pos + n])
            pos += n
            cid_type, cid_id, cid, verify_type, verify_id, verify, stop = entry_tail(buf, pos)
            if (cid_type, cid_id, verify_type, verify_id, stop) != (_T_BYTE, 4, _T_BOOL, 5, 0):
                return None
            entries.append(DupEntry(ts, code, raw, cid, verify != 0))
            pos += 9
        if buf[pos : pos + 2] != _TAIL or pos + 2 != end:
            return None
    except (IndexError, struct.error, UnicodeDecodeError):
        return None
    for at in patches:
        buf[at] = _T_STRING
    return DuplicateRequest(entries), start + 3, end - 1
