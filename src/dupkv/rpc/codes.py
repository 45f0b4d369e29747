"""The RPCs we speak: task code name -> Thrift service method, in one table (pure).

A request names its RPC by rDSN task code (the Thrift message name, e.g.
`RPC_RRDB_RRDB_PUT`); the reply is named `<code>_ACK`. `TASK_CODES` below is the only
place that maps codes to methods. An `RpcMethod` knows how to turn the wire bytes of its
args and result into thriftpy2 values and back, converting between rDSN's Thrift dialect
and standard Thrift (see `dupkv.rpc.wire`).

An RPC's single argument is field 1 of its args struct; its result is field 0 ("success")
of its result struct. `clear_scanner` is oneway: no reply is ever sent.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dupkv.rpc import replies, wire
from dupkv.rpc.flat import FlatStruct
from dupkv.rpc.idl_meta import meta
from dupkv.rpc.thrift import IDL_DIR, deserialize, encode_blob, rrdb, serialize

ACK_SUFFIX = "_ACK"

# task code -> (service, method). The service is "rrdb" (replica servers) or "meta".
TASK_CODES: dict[str, tuple[str, str]] = {
    "RPC_RRDB_RRDB_PUT": ("rrdb", "put"),
    "RPC_RRDB_RRDB_MULTI_PUT": ("rrdb", "multi_put"),
    "RPC_RRDB_RRDB_REMOVE": ("rrdb", "remove"),
    "RPC_RRDB_RRDB_MULTI_REMOVE": ("rrdb", "multi_remove"),
    "RPC_RRDB_RRDB_INCR": ("rrdb", "incr"),
    "RPC_RRDB_RRDB_CHECK_AND_SET": ("rrdb", "check_and_set"),
    "RPC_RRDB_RRDB_CHECK_AND_MUTATE": ("rrdb", "check_and_mutate"),
    "RPC_RRDB_RRDB_GET": ("rrdb", "get"),
    "RPC_RRDB_RRDB_MULTI_GET": ("rrdb", "multi_get"),
    "RPC_RRDB_RRDB_BATCH_GET": ("rrdb", "batch_get"),
    "RPC_RRDB_RRDB_SORTKEY_COUNT": ("rrdb", "sortkey_count"),
    "RPC_RRDB_RRDB_TTL": ("rrdb", "ttl"),
    "RPC_RRDB_RRDB_GET_SCANNER": ("rrdb", "get_scanner"),
    "RPC_RRDB_RRDB_SCAN": ("rrdb", "scan"),
    "RPC_RRDB_RRDB_CLEAR_SCANNER": ("rrdb", "clear_scanner"),
    "RPC_RRDB_RRDB_DUPLICATE": ("rrdb", "duplicate"),
    "RPC_CM_QUERY_PARTITION_CONFIG_BY_INDEX": ("meta", "query_cfg"),
    "RPC_CM_CREATE_APP": ("meta", "create_app"),
    "RPC_CM_DROP_APP": ("meta", "drop_app"),
    "RPC_CM_LIST_APPS": ("meta", "list_apps"),
    "RPC_CM_LIST_NODES": ("meta", "list_nodes"),
    "RPC_CM_CLUSTER_INFO": ("meta", "query_cluster_info"),
    "RPC_CM_ADD_DUPLICATION": ("meta", "add_duplication"),
    "RPC_CM_MODIFY_DUPLICATION": ("meta", "modify_duplication"),
    "RPC_CM_QUERY_DUPLICATION": ("meta", "query_duplication"),
    "RPC_CM_LIST_DUPLICATION": ("meta", "list_duplication"),
    "RPC_CM_DUPLICATION_SYNC": ("meta", "duplication_sync"),
    "RPC_CM_CONFIG_SYNC": ("meta", "config_sync"),
}

_SERVICES: dict[str, Any] = {"rrdb": rrdb.rrdb, "meta": meta.meta}
SHAPES = wire.load_shapes(
    [IDL_DIR / "rrdb.thrift", IDL_DIR / "duplication.thrift", IDL_DIR / "meta.thrift"]
)


T_BINARY = 18  # thriftpy2's type id for `binary` (a Thrift string on the wire)
_RESULT_HEAD = b"\x0c\x00\x00"  # field 0 (success), a struct: every result is one
_ARG_HEAD = b"\x0c\x00\x01"  # field 1, a struct (or a blob, which rDSN types STRUCT)


@dataclass(frozen=True)
class RpcMethod:
    """One RPC: its task code, its thriftpy2 service method and its wire shapes.

    The plans (`wire.compile_fields`) are precomputed so that the hot paths convert only
    what has rDSN types inside, and decode the argument from its own bytes: a bare blob is
    sliced, a struct read by thriftpy2 without going through the args wrapper.
    """

    code: str
    service_name: str
    method: str
    oneway: bool
    args_cls: Any
    result_cls: Any  # None for oneway
    arg_name: str  # attribute of field 1 in args_cls
    arg_ttype: int  # standard Thrift type of field 1
    shape: wire.MethodShape
    arg_cls: Any = None  # field 1's struct class, if it is a struct
    arg_is_blob: bool = False  # field 1 is a `binary`: its value is its bytes after the length
    args_plan: wire.Plan = None
    arg_plan: wire.Plan = None  # field 1's own plan, if it is a struct
    result_plan: wire.Plan = None  # the result value's (field 0's) plan
    result_struct_plan: wire.Plan = None  # the result struct's plan
    result_value_cls: Any = None  # the result value's (field 0's) struct class
    reply_name: str = ""
    arg_flat: FlatStruct | None = None  # writes field 1's struct (see dupkv.rpc.flat)
    result_flat: FlatStruct | None = None  # writes the result value's struct
    result_reader: Callable[[bytes], Any] | None = None  # reads it by hand (rpc/replies)

    # -- server side ---------------------------------------------------------------------

    def split_args(self, body: bytes, start: int) -> tuple[bytes, bytes | None]:
        """(args struct in standard Thrift, field 1's bytes or None); raises WireError."""
        return wire.split_args(body, start, self.shape.args)

    def decode_args(self, args_struct: bytes) -> Any:
        """The argument (field 1) from a standard args struct; raises ValueError."""
        return getattr(deserialize(self.args_cls, args_struct), self.arg_name)

    def decode_arg_raw(self, args_struct: bytes, arg_raw: bytes) -> Any:
        """The argument from its own standard bytes as the request decoder sliced them
        (`arg_raw`, checked by the walker) or, for other types, from the args struct;
        raises ValueError."""
        if self.arg_is_blob:
            return arg_raw[4:]
        if self.arg_cls is not None:
            return deserialize(self.arg_cls, arg_raw)
        return self.decode_args(args_struct)

    def encode_result(self, value: Any) -> bytes:
        """The result struct carrying `value`, in rDSN's dialect.

        `value` is serialized by itself and wrapped as field 0 (every result is a struct);
        it is walked only if its shape holds rDSN types (not update_response, for one).
        """
        if self.result_cls is None:
            raise ValueError(f"{self.code} is oneway and has no result")
        if type(value) is replies.ReadResponse:
            return replies.write_read_response(value)
        if self.result_flat is not None:
            flat = self.result_flat.write(value)
            if flat is not None:
                return _RESULT_HEAD + flat + b"\x00"
        std = serialize(value)
        if self.result_plan is not None:
            std = wire.convert_plan(std, self.result_plan, to_rdsn=True)
        return _RESULT_HEAD + std + b"\x00"

    # -- client side ---------------------------------------------------------------------

    def encode_arg(self, arg: Any) -> bytes:
        """The args struct carrying `arg`, in rDSN's dialect."""
        if self.arg_is_blob and isinstance(arg, bytes):
            return _ARG_HEAD + encode_blob(arg) + b"\x00"
        if self.arg_flat is not None:
            flat = self.arg_flat.write(arg)
            if flat is not None:
                return _ARG_HEAD + flat + b"\x00"
        if self.arg_cls is not None and isinstance(arg, self.arg_cls):
            std = serialize(arg)
            if self.arg_plan is not None:
                std = wire.convert_plan(std, self.arg_plan, to_rdsn=True)
            return _ARG_HEAD + std + b"\x00"
        std = serialize(self.args_cls(**{self.arg_name: arg}))
        if self.args_plan is None:
            return std
        return wire.convert_plan(std, self.args_plan, to_rdsn=True)

    def encode_arg_raw(self, arg_raw: bytes) -> bytes:
        """The args struct around the standard encoding of its argument, in rDSN's dialect."""
        std = bytes([self.arg_ttype, 0, 1]) + arg_raw + b"\x00"
        return wire.convert_plan(std, self.args_plan, to_rdsn=True)

    def arg_raw_to(self, arg_raw: bytes, *, to_rdsn: bool) -> bytes:
        """Convert an argument's bytes (e.g. a shipped raw_message) to the other dialect.

        A raw_message from a Pegasus cluster is in rDSN's dialect; dupkv logs and ships
        standard Thrift. Raises WireError on malformed bytes.
        """
        node = self.shape.args.get(1)
        if node is None or node[0] != "s":
            return arg_raw  # a bare blob or integer: no type bytes inside
        return wire.convert_plan(arg_raw, self.arg_plan, to_rdsn=to_rdsn)

    def decode_result(self, result_struct: bytes) -> Any:
        """The result value (field 0) from a result struct in either dialect; None if absent.

        Raises ValueError (WireError included) on malformed bytes.
        """
        if self.result_cls is None:
            raise ValueError(f"{self.code} is oneway and has no result")
        if self.result_reader is not None:
            value = self.result_reader(result_struct)
            if value is not None:
                return value
        if result_struct.startswith(_RESULT_HEAD):  # field 0 alone, as every server sends
            buf = bytearray(result_struct)
            end = len(buf) - 1
            inner_end = wire.walk_plan(buf, 3, end, self.result_plan, to_rdsn=False)
            if inner_end == end and buf[end] == wire.T_STOP:
                return deserialize(self.result_value_cls, bytes(buf[3:end]))
        std = wire.convert_plan(result_struct, self.result_struct_plan, to_rdsn=False)
        return deserialize(self.result_cls, std).success


# Result value class -> its hand reader (dupkv.rpc.replies).
_READERS: dict[Any, Callable[[bytes], Any]] = {
    rrdb.read_response: replies.read_read_response,
    rrdb.update_response: replies.read_update_response,
}


def _build(code: str, service_name: str, method: str) -> RpcMethod:
    service = _SERVICES[service_name]
    args_cls = getattr(service, f"{method}_args")
    shape = SHAPES.methods[(service_name, method)]
    result_cls = None if shape.oneway else getattr(service, f"{method}_result")
    spec = args_cls.thrift_spec[1]
    ttype = spec[0]
    arg_node = shape.args.get(1)
    result_node = shape.result.get(0) if shape.result is not None else None
    return RpcMethod(
        code=code,
        service_name=service_name,
        method=method,
        oneway=shape.oneway,
        args_cls=args_cls,
        result_cls=result_cls,
        arg_name=spec[1],
        arg_ttype=wire.T_STRING if ttype == T_BINARY else ttype,  # BINARY is STRING on the wire
        shape=shape,
        arg_cls=spec[2] if ttype == wire.T_STRUCT else None,
        arg_is_blob=ttype == T_BINARY,
        args_plan=wire.compile_fields(shape.args),
        arg_plan=wire.compile_fields(arg_node[1]) if arg_node and arg_node[0] == "s" else None,
        result_plan=(
            wire.compile_fields(result_node[1])
            if result_node is not None and result_node[0] == "s"
            else None
        ),
        result_struct_plan=wire.compile_fields(shape.result),
        result_value_cls=result_cls.thrift_spec[0][2] if result_cls is not None else None,
        result_reader=(
            _READERS.get(result_cls.thrift_spec[0][2]) if result_cls is not None else None
        ),
        reply_name=code + ACK_SUFFIX,
        arg_flat=(
            FlatStruct.of(spec[2], arg_node[1])
            if ttype == wire.T_STRUCT and arg_node is not None and arg_node[0] == "s"
            else None
        ),
        result_flat=(
            FlatStruct.of(result_cls.thrift_spec[0][2], result_node[1])
            if result_cls is not None and result_node is not None and result_node[0] == "s"
            else None
        ),
    )


METHODS: dict[str, RpcMethod] = {
    code: _build(code, service, method) for code, (service, method) in TASK_CODES.items()
}


def lookup(code: str) -> RpcMethod | None:
    return METHODS.get(code)
