"""Loads our Thrift IDL files and (de)serializes structs with thriftpy2's Cython binary
protocol (pure: no IO beyond reading the IDL files once at import).

`rrdb` is the module of every rrdb struct and enum. A request's "raw bytes" are the Thrift
binary encoding of the RPC's single argument: a struct's fields for most RPCs, and a Thrift
string (i32 length + bytes) for the RPCs whose argument is a bare blob (remove, get, ttl,
sortkey_count). Those raw bytes are what the mutation log stores and duplication ships.
"""

import struct
import threading
from pathlib import Path
from typing import Any, TypeVar

import thriftpy2
from thriftpy2.protocol import TCyBinaryProtocol, TCyBinaryProtocolFactory
from thriftpy2.transport import TCyMemoryBuffer
from thriftpy2.utils import deserialize as _deserialize

IDL_DIR = Path(__file__).parent / "idl"
PROTOCOL = TCyBinaryProtocolFactory()

rrdb: Any = thriftpy2.load(str(IDL_DIR / "rrdb.thrift"), module_name="rrdb_thrift")

T = TypeVar("T")
_I32 = struct.Struct(">i")


_KEEP_BUFFER_BYTES = 64 << 10  # a thread's buffer grows with its largest struct: cap it


class _Writer(threading.local):
    """One output buffer per thread, reused: thriftpy2's `serialize` allocates a 4 KiB
    buffer and a protocol object per call, which is half the cost of encoding a small
    struct. (A failed write cleans the buffer: TCyBinaryProtocol.write_struct does.)"""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.buffer = TCyMemoryBuffer()
        self.protocol = TCyBinaryProtocol(self.buffer)


_writer = _Writer()


def serialize(obj: Any) -> bytes:
    w = _writer
    w.protocol.write_struct(obj)
    data: bytes = w.buffer.getvalue()
    w.buffer.clean()
    if len(data) > _KEEP_BUFFER_BYTES:  # the buffer grew and never shrinks: let it go
        w.reset()
    return data


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
