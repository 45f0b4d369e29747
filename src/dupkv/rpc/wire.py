"""rDSN's Thrift dialect and a bounded walker that validates and converts it (pure).

Pegasus declares blob, error_code, task_code, gpid, rpc_address (and host_port) as empty
Thrift structs with hand-written (de)serializers. Every Pegasus client and server therefore
writes a field of such a type with the field type byte STRUCT (12) followed by the raw
primitive payload: i32 length + bytes for blob/error_code/task_code, a bare i64 for
gpid/rpc_address. The same goes for the element type byte of a list/set and the key/value
type bytes of a map. Their generated readers only accept STRUCT there and skip anything
else; thriftpy2, given our IDL (where these are typedefs of binary/string/i64), expects
the standard type bytes and would misparse the rDSN form.

So the byte stream is converted at the wire boundary, in place (only type bytes change;
lengths and offsets do not): incoming bodies to standard Thrift (both forms accepted),
outgoing bodies to the rDSN form. Everything inside dupkv (thriftpy2, the mutation log)
sees standard Thrift.

Which fields are rDSN-typed is read from our IDL text: a field, element, key or value
declared with a `dsn.` type. The walker is also our bounds check: thriftpy2's Cython
reader does not check lengths against the buffer (it reads zeros past the end and loops
over any list size it is given), so a body is walked here, with every length checked
against the bytes present and a depth limit, before thriftpy2 ever sees it.
"""

import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Thrift binary type ids.
T_STOP, T_BOOL, T_BYTE, T_DOUBLE, T_I16, T_I32, T_I64 = 0, 2, 3, 4, 6, 8, 10
T_STRING, T_STRUCT, T_MAP, T_SET, T_LIST = 11, 12, 13, 14, 15

MAX_DEPTH = 64

_FIXED_WIDTH = {T_BOOL: 1, T_BYTE: 1, T_DOUBLE: 8, T_I16: 2, T_I32: 4, T_I64: 8}
# Fewest bytes one value of a type takes: bounds a container's element count up front.
_MIN_WIDTH = {**_FIXED_WIDTH, T_STRING: 4, T_STRUCT: 1, T_MAP: 6, T_SET: 5, T_LIST: 5}

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")

# Shape nodes are tuples, tagged by their first item:
#   ("p", ttype)          a standard type (enums are i32)
#   ("c", ttype)          an rDSN custom type; ttype is its payload's standard type
#   ("s", fields)         a struct; fields: dict[field id, node]
#   ("l", elem)           list or set
#   ("m", key, value)     map
Node = tuple
Fields = dict[int, Node]

_BASE_TYPES = {
    "bool": T_BOOL,
    "byte": T_BYTE,
    "i8": T_BYTE,
    "i16": T_I16,
    "i32": T_I32,
    "i64": T_I64,
    "double": T_DOUBLE,
    "string": T_STRING,
    "binary": T_STRING,
}
_RDSN_TYPES = {
    "dsn.blob": T_STRING,
    "dsn.error_code": T_STRING,
    "dsn.task_code": T_STRING,
    "dsn.gpid": T_I64,
    "dsn.rpc_address": T_I64,
}


class WireError(ValueError):
    """Bytes that are not a well-formed Thrift binary value of the expected shape."""


# ---------------------------------------------------------------------------------------
# IDL scan: just enough of the Thrift IDL grammar for our own files.

_TOKEN = re.compile(r'"[^"]*"|[A-Za-z_][\w.]*|-?\d+|[{}()<>,:;=\[\]]')
_COMMENT = re.compile(r"//[^\n]*|#[^\n]*|/\*.*?\*/", re.S)


@dataclass(frozen=True)
class MethodShape:
    args: Fields
    result: Fields | None  # None for oneway methods
    oneway: bool


@dataclass
class Shapes:
    structs: dict[str, Fields]
    methods: dict[tuple[str, str], MethodShape]  # (service, method)


class _Parser:
    def __init__(self, text: str, where: str) -> None:
        self.tokens = _TOKEN.findall(_COMMENT.sub(" ", text))
        self.i = 0
        self.where = where

    def peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (expected is not None and tok != expected):
            raise ValueError(f"{self.where}: expected {expected or 'a token'}, got {tok!r}")
        self.i += 1
        return tok

    def skip_block(self) -> None:
        self.take("{")
        depth = 1
        while depth:
            tok = self.take()
            depth += {"{": 1, "}": -1}.get(tok, 0)

    def type_expr(self) -> Any:
        name = self.take()
        if name in ("list", "set"):
            self.take("<")
            elem = self.type_expr()
            self.take(">")
            return ("list", elem)
        if name == "map":
            self.take("<")
            key = self.type_expr()
            self.take(",")
            value = self.type_expr()
            self.take(">")
            return ("map", key, value)
        return name

    def fields(self, close: str) -> dict[int, Any]:
        out: dict[int, Any] = {}
        while self.peek() != close:
            fid = int(self.take())
            self.take(":")
            if self.peek() in ("optional", "required"):
                self.take()
            ftype = self.type_expr()
            self.take()  # field name
            if self.peek() == "=":
                self.take("=")
                self.take()  # a single-token default value
            if self.peek() in (",", ";"):
                self.take()
            out[fid] = ftype
        self.take(close)
        return out

    def parse(self, structs: dict[str, Any], enums: set[str], services: dict[str, Any]) -> None:
        while (tok := self.peek()) is not None:
            self.take()
            if tok == "include":
                self.take()
            elif tok == "namespace":
                self.take()
                self.take()
            elif tok == "typedef":
                self.type_expr()
                self.take()
            elif tok == "enum":
                enums.add(self.take())
                self.skip_block()
            elif tok in ("struct", "union", "exception"):
                name = self.take()
                self.take("{")
                structs[name] = self.fields("}")
            elif tok == "service":
                name = self.take()
                self.take("{")
                methods = {}
                while self.peek() != "}":
                    oneway = self.peek() == "oneway"
                    if oneway:
                        self.take()
                    rtype = self.type_expr()
                    mname = self.take()
                    self.take("(")
                    params = self.fields(")")
                    if self.peek() in (",", ";"):
                        self.take()
                    methods[mname] = (rtype, params, oneway)
                self.take("}")
                services[name] = methods
            else:
                raise ValueError(f"{self.where}: unsupported IDL construct {tok!r}")


def load_shapes(paths: list[Path]) -> Shapes:
    """Scan IDL files (not dsn.thrift: its types are the rDSN custom types) into shapes."""
    raw_structs: dict[str, Any] = {}
    enums: set[str] = set()
    services: dict[str, Any] = {}
    for path in paths:
        _Parser(path.read_text(), str(path)).parse(raw_structs, enums, services)

    resolved: dict[str, Fields] = {name: {} for name in raw_structs}

    def node(t: Any) -> Node:
        if isinstance(t, tuple):
            if t[0] == "list":
                return ("l", node(t[1]))
            return ("m", node(t[1]), node(t[2]))
        if t in _RDSN_TYPES:
            return ("c", _RDSN_TYPES[t])
        if t in _BASE_TYPES:
            return ("p", _BASE_TYPES[t])
        short = t.rsplit(".", 1)[-1]
        if short in enums:
            return ("p", T_I32)
        if short in resolved:
            return ("s", resolved[short])
        raise ValueError(f"IDL type {t!r} is not known")

    for name, fields in raw_structs.items():
        resolved[name].update({fid: node(t) for fid, t in fields.items()})
    methods = {}
    for sname, ms in services.items():
        for mname, (rtype, params, oneway) in ms.items():
            args = {fid: node(t) for fid, t in params.items()}
            result = None if oneway or rtype == "void" else {0: node(rtype)}
            methods[(sname, mname)] = MethodShape(args, result, oneway)
    return Shapes(resolved, methods)


# ---------------------------------------------------------------------------------------
# Plans: the shapes compiled for the walker.
#
# The walker needs a shape only to find the rDSN-typed values whose type bytes it rewrites;
# everything else it walks as the wire says (and checks all the same). So a plan keeps only
# what leads to an rDSN type: a struct's plan maps field id -> entry for those fields alone,
# and is None when nothing inside the struct needs converting. Then a field missing from
# the plan costs one dict lookup, a struct whose plan is None costs none, and encoding a
# result without rDSN types inside (update_response, say) needs no walk at all.
#
# Entries are tuples tagged by their first item:
#   (K_CUSTOM, std)            an rDSN custom type whose payload's standard type is std
#   (K_STRUCT, plan)           a struct with rDSN types inside
#   (K_LIST, elem_entry)       a list or set whose elements hold rDSN types
#   (K_MAP, key_entry, value_entry)   (either may be None)

K_CUSTOM, K_STRUCT, K_LIST, K_MAP = 0, 1, 2, 3
Plan = dict[int, tuple] | None

_WIDTH = bytes(
    _FIXED_WIDTH.get(t, 0) for t in range(256)
)  # type byte -> width of a fixed-width value, 0 for the others
_MIN = tuple(_MIN_WIDTH.get(t, 0) for t in range(256))  # 0: not a Thrift type

_plans: dict[int, tuple[Fields, Plan]] = {}  # id(fields) -> (fields kept alive, its plan)


def compile_fields(fields: Fields | None) -> Plan:
    """The plan of a struct shape (memoized; shapes are long-lived)."""
    if fields is None:
        return None
    hit = _plans.get(id(fields))
    if hit is not None:
        return hit[1]
    plan: dict[int, tuple] = {}
    _plans[id(fields)] = (fields, plan)  # a recursive shape finds itself here
    for fid, node in fields.items():
        entry = _entry(node)
        if entry is not None:
            plan[fid] = entry
    if not plan:
        _plans[id(fields)] = (fields, None)
        return None
    return plan


def _entry(node: Node) -> tuple | None:
    kind = node[0]
    if kind == "c":
        return (K_CUSTOM, node[1])
    if kind == "s":
        plan = compile_fields(node[1])
        return None if plan is None else (K_STRUCT, plan)
    if kind == "l":
        elem = _entry(node[1])
        return None if elem is None else (K_LIST, elem)
    if kind == "m":
        key, value = _entry(node[1]), _entry(node[2])
        return None if key is None and value is None else (K_MAP, key, value)
    return None


# ---------------------------------------------------------------------------------------
# The walker.


def expected_type(node: Node | None) -> int | None:
    """The standard wire type of a value of this shape (None: no shape)."""
    if node is None:
        return None
    kind = node[0]
    if kind in ("p", "c"):
        return node[1]
    return {"s": T_STRUCT, "l": T_LIST, "m": T_MAP}[kind]


def _past_end(pos: int, end: int) -> WireError:
    return WireError(f"value at offset {pos} runs past the end ({end})")


def _walk_struct(buf: bytearray, pos: int, end: int, plan: Plan, to_rdsn: bool, depth: int) -> int:
    """Walk the fields of a struct from `pos` to its STOP byte; return the offset after it.

    The hot loop of every request and reply: fixed-width and string fields are handled
    inline, rDSN fields are rewritten here, and only nested values cost a call.
    """
    width = _WIDTH
    unpack = _I32.unpack_from
    while True:
        if pos >= end:
            raise WireError(f"struct at offset {pos} runs past the end ({end})")
        t = buf[pos]
        if t == T_STOP:
            return pos + 1
        if pos + 3 > end:
            raise _past_end(pos, end)
        entry = None
        if plan is not None:
            entry = plan.get((buf[pos + 1] << 8) | buf[pos + 2])
            if entry is not None and entry[0] == K_CUSTOM:
                std = entry[1]
                if t in (T_STRUCT, std):
                    buf[pos] = T_STRUCT if to_rdsn else std
                    t = std
                entry = None
        pos += 3
        w = width[t]
        if w:
            pos += w
            if pos > end:
                raise _past_end(pos - w, end)
        elif t == T_STRING:
            if pos + 4 > end:
                raise _past_end(pos, end)
            n = unpack(buf, pos)[0]
            pos += 4 + n
            if n < 0 or pos > end:
                raise WireError(f"string of {n} bytes at offset {pos - 4 - n} runs past {end}")
        else:
            pos = _walk_value(buf, pos, end, t, entry, to_rdsn, depth)


def _walk_value(
    buf: bytearray, pos: int, end: int, t: int, entry: tuple | None, to_rdsn: bool, depth: int
) -> int:
    """Walk one value of wire type `t` (its shape `entry` applies only if `t` matches)."""
    w = _WIDTH[t]
    if w:
        if pos + w > end:
            raise _past_end(pos, end)
        return pos + w
    if t == T_STRING:
        if pos + 4 > end:
            raise _past_end(pos, end)
        n = _I32.unpack_from(buf, pos)[0]
        if n < 0 or pos + 4 + n > end:
            raise WireError(f"string of {n} bytes at offset {pos} runs past the end ({end})")
        return pos + 4 + n
    if depth >= MAX_DEPTH:
        raise WireError(f"nesting deeper than {MAX_DEPTH}")
    if t == T_STRUCT:
        plan = entry[1] if entry is not None and entry[0] == K_STRUCT else None
        return _walk_struct(buf, pos, end, plan, to_rdsn, depth + 1)
    if t in (T_LIST, T_SET):
        if pos + 5 > end:
            raise _past_end(pos, end)
        elem = entry[1] if entry is not None and entry[0] == K_LIST else None
        et, elem = _retype(buf, pos, elem, to_rdsn)
        n = _I32.unpack_from(buf, pos + 1)[0]
        pos += 5
        if not _MIN[et]:
            raise WireError(f"unknown element type {et} at offset {pos - 5}")
        if n < 0 or pos + n * _MIN[et] > end:
            raise WireError(f"list of {n} items at offset {pos - 5} runs past the end ({end})")
        if _WIDTH[et]:
            return pos + n * _WIDTH[et]
        for _ in range(n):
            pos = _walk_value(buf, pos, end, et, elem, to_rdsn, depth + 1)
        return pos
    if t == T_MAP:
        if pos + 6 > end:
            raise _past_end(pos, end)
        kentry = ventry = None
        if entry is not None and entry[0] == K_MAP:
            kentry, ventry = entry[1], entry[2]
        kt, kentry = _retype(buf, pos, kentry, to_rdsn)
        vt, ventry = _retype(buf, pos + 1, ventry, to_rdsn)
        n = _I32.unpack_from(buf, pos + 2)[0]
        pos += 6
        if not _MIN[kt] or not _MIN[vt]:
            raise WireError(f"unknown map key/value type {kt}/{vt} at offset {pos - 6}")
        if n < 0 or pos + n * (_MIN[kt] + _MIN[vt]) > end:
            raise WireError(f"map of {n} items at offset {pos - 6} runs past the end ({end})")
        for _ in range(n):
            pos = _walk_value(buf, pos, end, kt, kentry, to_rdsn, depth + 1)
            pos = _walk_value(buf, pos, end, vt, ventry, to_rdsn, depth + 1)
        return pos
    raise WireError(f"unknown Thrift type {t} at offset {pos}")


def _retype(buf: bytearray, tpos: int, entry: tuple | None, to_rdsn: bool) -> tuple:
    """A container's element (or key, value) type byte at `tpos` against its shape.

    Returns (standard type to walk, entry for the elements or None). An rDSN custom type is
    accepted in both forms and its type byte rewritten; a type that matches nothing is
    walked as what the wire says (Thrift skips mismatched fields, and so will thriftpy2).
    """
    t = buf[tpos]
    if entry is None:
        return t, None
    kind = entry[0]
    if kind == K_CUSTOM:
        std = entry[1]
        if t in (T_STRUCT, std):
            buf[tpos] = T_STRUCT if to_rdsn else std
            return std, None
        return t, None
    if kind == K_STRUCT:
        return t, (entry if t == T_STRUCT else None)
    if kind == K_LIST:
        return t, (entry if t in (T_LIST, T_SET) else None)
    return t, (entry if t == T_MAP else None)


def walk_struct(
    buf: bytearray, pos: int, end: int, fields: Fields | None, to_rdsn: bool, depth: int = 0
) -> int:
    """Walk one struct starting at `pos`, converting type bytes in place; return its end."""
    return _walk_struct(buf, pos, end, compile_fields(fields), to_rdsn, depth)


def walk_plan(buf: bytearray, pos: int, end: int, plan: Plan, *, to_rdsn: bool) -> int:
    """`walk_struct` with a compiled plan (see `compile_fields`)."""
    return _walk_struct(buf, pos, end, plan, to_rdsn, 0)


def convert_plan(data: bytes, plan: Plan, *, to_rdsn: bool) -> bytes:
    """`convert_struct` with a compiled plan (see `compile_fields`)."""
    buf = bytearray(data)
    end = _walk_struct(buf, 0, len(buf), plan, to_rdsn, 0)
    if end != len(buf):
        raise WireError(f"{len(buf) - end} bytes follow the struct")
    return bytes(buf)


def convert_struct(data: bytes, fields: Fields | None, *, to_rdsn: bool) -> bytes:
    """Convert a whole struct (nothing may follow its STOP byte) to the other dialect."""
    return convert_plan(data, compile_fields(fields), to_rdsn=to_rdsn)


def split_args_in_place(
    buf: bytearray, start: int, end: int, plan: Plan, arg_type: int | None
) -> tuple[int, int] | None:
    """Normalize the args struct buf[start:end] (it must end there) to standard Thrift.

    Returns the span of its field 1's value, or None if there is no field 1 of the expected
    wire type `arg_type`. Field 1 is walked here, the fields after it by the struct walker.
    """
    pos = start
    field1: tuple[int, int] | None = None
    while True:
        if pos >= end:
            raise WireError(f"args struct at offset {pos} runs past the end ({end})")
        t = buf[pos]
        if t == T_STOP:
            pos += 1
            break
        if pos + 3 > end:
            raise _past_end(pos, end)
        fid = (buf[pos + 1] << 8) | buf[pos + 2]
        entry = plan.get(fid) if plan is not None else None
        if entry is not None and entry[0] == K_CUSTOM:
            std = entry[1]
            if t in (T_STRUCT, std):
                buf[pos] = t = std
            entry = None
        value_start = pos + 3
        pos = _walk_value(buf, value_start, end, t, entry, False, 1)
        if fid == 1 and field1 is None and t == arg_type:
            field1 = (value_start, pos)
    if pos != end:
        raise WireError(f"{end - pos} bytes follow the args struct")
    return field1


def split_args(body: bytes, start: int, args: Fields) -> tuple[bytes, bytes | None]:
    """Normalize a request's args struct (body[start:], ending the body) to standard Thrift.

    Returns (the args struct, the value of its field 1 or None if absent).
    """
    buf = bytearray(body)
    span = split_args_in_place(
        buf, start, len(buf), compile_fields(args), expected_type(args.get(1))
    )
    raw = bytes(buf[span[0] : span[1]]) if span else None
    return bytes(buf[start:]), raw
