"""The DUPLICATE request written by hand, straight in rDSN's Thrift dialect (pure).

Building thriftpy2 structs for every shipped write and then converting their type bytes
costs more than the rest of the shipping path; this writes the exact same bytes in one
pass (the tests compare it with the general encoder):

    args { 1: duplicate_request { 1: list<duplicate_entry> } }
    duplicate_entry { 1: i64 timestamp, 2: task_code, 3: blob raw_message,
                      4: byte cluster_id, 5: bool verify_timetag }

task_code and blob are rDSN types: type byte STRUCT, then an i32 length and the bytes.
"""

import struct
from collections.abc import Sequence

from dupkv.duplication.pipeline import Entry
from dupkv.storage.mutation import SHIPPABLE_CODES

_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")
_T_BOOL, _T_BYTE, _T_I64, _T_STRUCT, _T_LIST = 2, 3, 10, 12, 15

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
