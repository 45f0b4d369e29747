"""The THFT framing of Pegasus RPCs, both directions, without IO (pure).

Request (client -> server), everything big-endian:

    "THFT" | header_version u32 = 0 | header_length u32 = 48 | header_crc32 u32
    | body_length u32 | body_crc32 u32 | app_id i32 | partition_index i32
    | client_timeout u32 (ms) | thread_hash i32 | partition_hash u64       (48 bytes)
    then the body: Thrift writeMessageBegin(task code, CALL, seqid) + args struct.

Response (server -> client):

    total_length u32 (counting itself) | error code (Thrift string, e.g. "ERR_OK")
    | writeMessageBegin(task code + "_ACK", REPLY, seqid) | result struct if ERR_OK

What we verified in Pegasus's sources:
- For a non-OK error code the frame ends right after the message begin: rDSN replies
  with an empty body (create_response() zeroes body_length; thrift_message_parser writes
  length, error name and message begin, then the body). The Go client and pypegasus read
  the error code and the message begin, then stop when the code is not ERR_OK.
- An unknown task code is answered as "<name>_ACK" too (create_response appends "_ACK").
- Pegasus's THFT parser reads header_crc32 and body_crc32 and never checks them; the Go
  client and pypegasus always send 0. rDSN's CRC is CRC-32C. We define header_crc32 as
  CRC-32C of the 48 header bytes with the CRC field zeroed: 0 is accepted, any other value
  must match or the connection is broken. body_crc32 is not checked (no client sets it,
  and a pure-Python CRC over a 16 MiB body would stall the event loop).
- Only header version 0 is accepted (version 1 has no known client).
- Message begins may be strict (version word) or old-style; we write strict.

The request decoder also converts the args struct from rDSN's dialect to standard Thrift
(dupkv.rpc.wire) and slices out `args_raw`, the bytes of the argument (field 1). A frame
whose header is bad, which is too big, or whose message begin cannot be read yields a
`FrameError`, after which the decoder is dead and the connection must be closed (without
a seqid there is nobody to answer). A frame that is fine but whose args are malformed
yields a `Request` with `bad_args` set, to be answered with an error.
"""

import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from dupkv.base.errors import ErrorCode
from dupkv.rpc import codes, wire
from dupkv.rpc.crc32c import crc32c
from dupkv.rpc.wire import WireError

MAGIC = b"THFT"
HEADER_LEN = 48
DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024
MAX_NAME_BYTES = 256

MSG_CALL, MSG_REPLY, MSG_EXCEPTION, MSG_ONEWAY = 1, 2, 3, 4
_VERSION_1 = 0x80010000
_VERSION_MASK = 0xFFFF0000

_HEADER = struct.Struct(">4sIIIIIiiIiQ")
_U32 = struct.Struct(">I")
_I32 = struct.Struct(">i")
_OK_STRING = _I32.pack(len(ErrorCode.OK)) + ErrorCode.OK.encode("ascii")

HTTP_METHOD_PREFIXES = (b"GET ", b"POST", b"PUT ", b"HEAD", b"DELE", b"OPTI")
SNIFF_THFT, SNIFF_HTTP, SNIFF_UNKNOWN, SNIFF_MORE = "thft", "http", "unknown", "more"


def sniff(first: bytes) -> str:
    """Tell a THFT connection from an HTTP one by its first 4 bytes."""
    candidates = (MAGIC, *HTTP_METHOD_PREFIXES)
    if len(first) < 4:
        return SNIFF_MORE if any(c.startswith(first) for c in candidates) else SNIFF_UNKNOWN
    head = first[:4]
    if head == MAGIC:
        return SNIFF_THFT
    if head in HTTP_METHOD_PREFIXES:
        return SNIFF_HTTP
    return SNIFF_UNKNOWN


class RequestHeader(NamedTuple):
    """The header fields a handler may use (a tuple: built once per request, cheaply)."""

    app_id: int = 0
    partition_index: int = 0
    client_timeout_ms: int = 0
    thread_hash: int = 0
    partition_hash: int = 0
    header_crc32: int = 0
    body_crc32: int = 0


class Request(NamedTuple):
    """One decoded request frame.

    `args` (the args struct) and `args_raw` (its field 1) are in standard Thrift and set
    when the task code is known and the args are well formed. (The body as received is not
    kept: the args are converted in the receive buffer, in place.)
    """

    name: str
    seqid: int
    msg_type: int
    header: RequestHeader
    method: codes.RpcMethod | None
    args: bytes | None = None
    args_raw: bytes | None = None
    bad_args: str | None = None
    arg: Any = None  # the argument, when a fast decoder (see RequestDecoder) read it


class Response(NamedTuple):
    """One decoded response frame; `result` is the result struct (empty unless ERR_OK)."""

    name: str
    seqid: int
    error_code: str
    msg_type: int
    result: bytes


@dataclass(frozen=True)
class FrameError:
    """The stream is broken: close the connection. `reason` is for the log."""

    reason: str


def _read_string(
    buf: bytes | bytearray, pos: int, end: int, limit: int, what: str
) -> tuple[str, int]:
    if pos + 4 > end:
        raise ValueError(f"{what}: truncated length")
    n = _I32.unpack_from(buf, pos)[0]
    if n < 0 or n > limit or pos + 4 + n > end:
        raise ValueError(f"{what}: bad length {n}")
    try:
        return buf[pos + 4 : pos + 4 + n].decode("utf-8"), pos + 4 + n
    except UnicodeDecodeError as e:
        raise ValueError(f"{what}: not UTF-8") from e


def _message_begin(buf: bytes | bytearray, pos: int, end: int) -> tuple[str, int, int, int]:
    word = _U32.unpack_from(buf, pos)[0] if pos + 4 <= end else None
    if word is None:
        raise ValueError("message begin: truncated")
    if word & 0x80000000:
        if word & _VERSION_MASK != _VERSION_1:
            raise ValueError(f"message begin: bad version word {word:#x}")
        msg_type = word & 0xFF
        name, pos = _read_string(buf, pos + 4, end, MAX_NAME_BYTES, "message name")
    else:
        name, pos = _read_string(buf, pos, end, MAX_NAME_BYTES, "message name")
        if pos >= end:
            raise ValueError("message begin: truncated type")
        msg_type = buf[pos]
        pos += 1
    if pos + 4 > end:
        raise ValueError("message begin: truncated seqid")
    return name, msg_type, _I32.unpack_from(buf, pos)[0], pos + 4


def read_message_begin(buf: bytes, pos: int = 0) -> tuple[str, int, int, int]:
    """Parse a Thrift message begin (strict or old-style): (name, type, seqid, end)."""
    return _message_begin(buf, pos, len(buf))


def write_message_begin(name: str, msg_type: int, seqid: int) -> bytes:
    raw = name.encode("utf-8")
    return _U32.pack(_VERSION_1 | msg_type) + _I32.pack(len(raw)) + raw + _I32.pack(seqid)


def header_crc(header: bytes) -> int:
    """CRC-32C of a 48-byte header with its header_crc32 field taken as zero."""
    return crc32c(header[:12] + b"\x00\x00\x00\x00" + header[16:HEADER_LEN])


class _Decoder:
    """Shared buffering; a decoder that has reported a FrameError stays dead.

    Frames are parsed where they lie in the receive buffer (`_pos` marks what has been
    consumed); the consumed prefix is dropped when more data comes in.
    """

    def __init__(self, max_frame_bytes: int) -> None:
        self._max = max_frame_bytes
        self._buf = bytearray()
        self._pos = 0
        self._dead = False

    @property
    def buffered_bytes(self) -> int:
        return len(self._buf) - self._pos

    def receive_data(self, data: bytes) -> None:
        if self._dead:
            return
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    def feed(self, data: bytes) -> list:
        """Take bytes and return every event they complete."""
        self.receive_data(data)
        events = []
        while (event := self.next_event()) is not None:
            events.append(event)
        return events

    def next_event(self) -> Any:
        raise NotImplementedError

    def _fail(self, reason: str) -> FrameError:
        self._dead = True
        self._buf.clear()
        self._pos = 0
        return FrameError(reason)


# (receive buffer, args start, args end) -> (argument, field 1 start, field 1 end) or None
FastArgs = Callable[[bytearray, int, int], "tuple[Any, int, int] | None"]


class RequestDecoder(_Decoder):
    """Server side: bytes in, `Request` / `FrameError` events out (pull or batch)."""

    def __init__(
        self,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        methods: dict[str, codes.RpcMethod] = codes.METHODS,
        fast_args: Mapping[str, FastArgs] | None = None,
    ) -> None:
        """`fast_args`: per task code, a decoder that reads the args struct (converting it
        in place to standard Thrift) and returns (argument, span of its bytes), or None to
        leave the request to the general walker and thriftpy2."""
        if max_frame_bytes < HEADER_LEN:
            raise ValueError(f"max_frame_bytes must be at least {HEADER_LEN}")
        super().__init__(max_frame_bytes)
        self._methods = methods
        self._fast = dict(fast_args or {})
        self._header: RequestHeader | None = None  # of a frame whose body is still coming
        self._body_len = 0

    def next_event(self) -> Request | FrameError | None:
        if self._dead:
            return None
        buf = self._buf
        pos = self._pos
        header = self._header
        if header is None:
            avail = len(buf) - pos
            if avail < HEADER_LEN:
                n = min(4, avail)
                if buf[pos : pos + n] != MAGIC[:n]:
                    return self._fail(f"not a THFT frame: {bytes(buf[pos : pos + 4])!r}")
                return None
            magic, version, hlen, hcrc, blen, bcrc, app, pidx, tmo, thash, phash = (
                _HEADER.unpack_from(buf, pos)
            )
            if magic != MAGIC:
                return self._fail(f"not a THFT frame: {magic!r}")
            if version != 0:
                return self._fail(f"unsupported THFT header version {version}")
            if hlen != HEADER_LEN:
                return self._fail(f"THFT header length {hlen}, expected {HEADER_LEN}")
            if hcrc != 0 and hcrc != header_crc(bytes(buf[pos : pos + HEADER_LEN])):
                return self._fail(f"THFT header CRC mismatch ({hcrc:#010x})")
            if blen > self._max - HEADER_LEN:
                return self._fail(f"frame of {HEADER_LEN + blen} bytes exceeds {self._max}")
            header = RequestHeader(app, pidx, tmo, thash, phash, hcrc, bcrc)
            pos += HEADER_LEN
            self._pos = pos
            self._body_len = blen
        end = pos + self._body_len
        if len(buf) < end:
            self._header = header
            return None
        self._header = None
        self._pos = end
        try:
            name, msg_type, seqid, args_start = _message_begin(buf, pos, end)
        except ValueError as e:
            return self._fail(f"unreadable request: {e}")
        if msg_type not in (MSG_CALL, MSG_ONEWAY):
            return self._fail(f"message type {msg_type} is not a request")
        method = self._methods.get(name)
        if method is None:
            return Request(name, seqid, msg_type, header, None)
        fast = self._fast.get(name)
        if fast is None and method.arg_is_blob:
            fast = blob_args
        if fast is not None:
            done = fast(buf, args_start, end)
            if done is not None:
                arg, raw_start, raw_end = done
                args = bytes(buf[args_start:end])
                return Request(
                    name,
                    seqid,
                    msg_type,
                    header,
                    method,
                    args,
                    bytes(buf[raw_start:raw_end]),
                    arg=arg,
                )
        try:
            span = wire.split_args_in_place(
                buf, args_start, end, method.args_plan, method.arg_ttype
            )
        except WireError as e:
            return Request(name, seqid, msg_type, header, method, bad_args=str(e))
        if span is None:
            return Request(
                name, seqid, msg_type, header, method, bad_args="argument (field 1) missing"
            )
        args = bytes(buf[args_start:end])
        args_raw = bytes(buf[span[0] : span[1]])
        return Request(name, seqid, msg_type, header, method, args, args_raw)


def blob_args(buf: bytearray, start: int, end: int) -> tuple[bytes, int, int] | None:
    """The fast decoder (see RequestDecoder) of an args struct that is its blob argument
    alone, field 1, in either dialect: (the blob, the span of its Thrift string); None for
    any other layout, left to the general walker."""
    n = end - start - 8  # type, field id, length, STOP around the blob
    if (
        n < 0
        or buf[start] not in (wire.T_STRING, wire.T_STRUCT)
        or buf[start + 1] != 0
        or buf[start + 2] != 1
        or _I32.unpack_from(buf, start + 3)[0] != n
        or buf[end - 1] != wire.T_STOP
    ):
        return None
    buf[start] = wire.T_STRING  # rDSN writes a blob as a STRUCT
    return bytes(buf[start + 7 : end - 1]), start + 3, end - 1


def _ok_head(code: str) -> bytes:
    ok = ErrorCode.OK.encode("ascii")
    begin = write_message_begin(code + codes.ACK_SUFFIX, MSG_REPLY, 0)[:-4]  # no seqid
    return _I32.pack(len(ok)) + ok + begin


# What precedes the seqid in an ERR_OK reply to each known task code, and in a call of it.
_OK_HEADS = {code: _ok_head(code) for code in codes.METHODS}
_CALL_HEADS = {code: write_message_begin(code, MSG_CALL, 0)[:-4] for code in codes.METHODS}


def encode_response(name: str, seqid: int, error_code: str, result: bytes | None) -> bytes:
    """A response frame; `name` is the request's task code ("_ACK" is appended here).

    `result` (the result struct) is sent only with ERR_OK, where it is required.
    """
    if error_code == ErrorCode.OK:
        head = _OK_HEADS.get(name)
        if head is not None and result is not None:
            total = 4 + len(head) + 4 + len(result)
            return b"".join((_U32.pack(total), head, _I32.pack(seqid), result))
    parts = [_I32.pack(len(error_code)), error_code.encode("ascii")]
    parts.append(write_message_begin(name + codes.ACK_SUFFIX, MSG_REPLY, seqid))
    if error_code == ErrorCode.OK:
        if result is None:
            raise ValueError("an ERR_OK response needs a result struct")
        parts.append(result)
    payload = b"".join(parts)
    return _U32.pack(4 + len(payload)) + payload


def thread_hash_of(app_id: int, partition_index: int) -> int:
    """rDSN's client thread hash: app_id * 7919 + partition_index, as an i32."""
    v = (app_id * 7919 + partition_index) & 0xFFFFFFFF
    return v - (1 << 32) if v >> 31 else v


def encode_request(
    name: str,
    seqid: int,
    args: bytes,
    *,
    app_id: int = 0,
    partition_index: int = 0,
    client_timeout_ms: int = 0,
    partition_hash: int = 0,
    thread_hash: int | None = None,
    msg_type: int = MSG_CALL,
    with_header_crc: bool = False,
) -> bytes:
    """A request frame around an args struct (already in the dialect to send).

    Like Pegasus's clients we send header_crc32 = 0 unless asked: our CRC-32C is pure
    Python and costs about 15 us per header on each side.
    """
    head = _CALL_HEADS.get(name) if msg_type == MSG_CALL else None
    if head is None:
        head = write_message_begin(name, msg_type, 0)[:-4]
    if thread_hash is None:
        thread_hash = thread_hash_of(app_id, partition_index)
    header = _HEADER.pack(
        MAGIC,
        0,
        HEADER_LEN,
        0,
        len(head) + 4 + len(args),
        0,
        app_id,
        partition_index,
        client_timeout_ms,
        thread_hash,
        partition_hash & 0xFFFFFFFFFFFFFFFF,
    )
    if with_header_crc:
        crc = _U32.pack(header_crc(header))
        header = header[:12] + crc + header[16:]
    return b"".join((header, head, _I32.pack(seqid), args))


class ResponseDecoder(_Decoder):
    """Client side: bytes in, `Response` / `FrameError` events out."""

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        super().__init__(max_frame_bytes)

    def next_event(self) -> Response | FrameError | None:
        buf = self._buf
        pos = self._pos
        if self._dead or len(buf) - pos < 4:
            return None
        total = _U32.unpack_from(buf, pos)[0]
        if total < 4 + 4 + 12:  # length, empty error string, shortest message begin
            return self._fail(f"response length {total} is too short")
        if total > self._max:
            return self._fail(f"response of {total} bytes exceeds {self._max}")
        end = pos + total
        if len(buf) < end:
            return None
        self._pos = end
        try:
            if buf[pos + 4 : pos + 14] == _OK_STRING:
                error_code, p = ErrorCode.OK, pos + 14
            else:
                error_code, p = _read_string(buf, pos + 4, end, MAX_NAME_BYTES, "error code")
            name, msg_type, seqid, p = _message_begin(buf, p, end)
        except ValueError as e:
            return self._fail(f"unreadable response: {e}")
        return Response(name, seqid, error_code, msg_type, bytes(buf[p:end]))
