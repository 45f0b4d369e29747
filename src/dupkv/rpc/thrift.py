"""Loads our Thrift IDL files and (de)serializes structs with thriftpy2's Cython binary
protocol (pure: no IO beyond reading the IDL files once at import).

`rrdb` is the module of every rrdb struct and enum. A request's "raw bytes" are the Thrift
binary encoding of the RPC's single argument: a struct's fields for most RPCs, and a Thrift
string (i32 length + bytes) for the RPCs whose argument is a bare blob (remove, get, ttl,
sortkey_count). Those raw bytes are what the mutation log stores and duplication ships.
"""

import struct
from pathlib import Path
from typing import Any, TypeVar

import thriftpy2
from thriftpy2.protocol import TCyBinaryProtocolFactory
from thriftpy2.utils import deserialize as _deserialize
from thriftpy2.utils import serialize as _serialize

IDL_DIR = Path(__file__).parent / "idl"
PROTOCOL = TCyBinaryProtocolFactory()

rrdb: Any = thriftpy2.load(str(IDL_DIR / "rrdb.thrift"), module_name="rrdb_thrift")

T = TypeVar("T")
_I32 = struct.Struct(">i")


def serialize(obj: Any) -> bytes:
    return _serialize(obj, PROTOCOL)


def deserialize(cls: type[T], data: bytes) -> T:
    """Decode a struct; raises ValueError on malformed input."""
    try:
        return _deserialize(cls(), data, PROTOCOL)
    except Exception as e:  # thriftpy2 raises several unrelated types on bad bytes
        raise ValueError(f"malformed {cls.__name__}: {e}") from e


def encode_blob(data: bytes) -> bytes:
    return _I32.pack(len(data)) + data


def decode_blob(raw: bytes) -> bytes:
    if len(raw) < 4:
        raise ValueError(f"blob of {len(raw)} bytes is shorter than its length prefix")
    n = _I32.unpack_from(raw)[0]
    if n < 0 or 4 + n != len(raw):
        raise ValueError(f"blob length prefix {n} does not match {len(raw) - 4} bytes")
    return raw[4:]
