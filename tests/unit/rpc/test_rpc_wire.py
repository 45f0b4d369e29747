"""rDSN's Thrift dialect: the shapes read from our IDL and the in-place conversion."""

import struct

import pytest

from dupkv.rpc import codes, wire
from dupkv.rpc.idl_meta import dup, meta
from dupkv.rpc.thrift import rrdb, serialize

THRIFTPY_BINARY = 18


def _spec_type(spec_item) -> int:
    return wire.T_STRING if spec_item == THRIFTPY_BINARY else spec_item


def _check(node, ttype, sub) -> None:
    """The scanned node has the ttype thriftpy2 computed from the same IDL."""
    assert wire.expected_type(node) == _spec_type(ttype)
    if node[0] == "s":
        _check_struct(node[1], sub.thrift_spec)
    elif node[0] == "l" and sub is not None:
        et, esub = sub if isinstance(sub, tuple) else (sub, None)
        _check(node[1], et, esub)
    elif node[0] == "m":
        (kt, ksub), (vt, vsub) = (x if isinstance(x, tuple) else (x, None) for x in sub)
        _check(node[1], kt, ksub)
        _check(node[2], vt, vsub)


def _check_struct(fields, spec) -> None:
    assert set(fields) == set(spec)
    for fid, item in spec.items():
        sub = item[2] if len(item) > 3 else None
        if isinstance(sub, type) and not hasattr(sub, "thrift_spec"):
            sub = None  # an enum class
        _check(fields[fid], item[0], sub)


@pytest.mark.parametrize("code", sorted(codes.METHODS))
def test_scanned_shapes_agree_with_thriftpy2(code):
    m = codes.METHODS[code]
    _check_struct(m.shape.args, m.args_cls.thrift_spec)
    if not m.oneway:
        _check_struct(m.shape.result, m.result_cls.thrift_spec)


def test_only_dsn_typed_fields_are_custom():
    s = codes.SHAPES.structs
    assert s["update_request"][1] == ("c", wire.T_STRING)
    assert s["update_response"][5] == ("p", wire.T_STRING)  # server: a plain string
    assert s["duplicate_entry"][2] == ("c", wire.T_STRING)  # task_code
    assert s["partition_configuration"][1] == ("c", wire.T_I64)
    assert s["partition_configuration"][5] == ("l", ("c", wire.T_I64))
    assert s["partition_configuration"][2] == ("p", wire.T_I64)  # ballot


def test_partition_configuration_in_rdsn_dialect_byte_for_byte():
    cfg = meta.partition_configuration(
        pid=(3 << 32) | 2,
        ballot=1,
        max_replica_count=1,
        primary=7,
        secondaries=[8],
        last_drops=[],
        last_committed_decree=0,
        partition_flags=0,
    )
    fields = codes.SHAPES.structs["partition_configuration"]
    rdsn = wire.convert_struct(serialize(cfg), fields, to_rdsn=True)
    i64 = struct.Struct(">q").pack
    assert rdsn.startswith(b"\x0c\x00\x01" + i64((3 << 32) | 2))  # pid: STRUCT + raw i64
    assert b"\x0c\x00\x04" + i64(7) in rdsn  # primary
    assert b"\x0f\x00\x05\x0c\x00\x00\x00\x01" + i64(8) in rdsn  # list<rpc_address>
    assert b"\x0a\x00\x02" + i64(1) in rdsn  # ballot stays an i64 field
    assert wire.convert_struct(rdsn, fields, to_rdsn=False) == serialize(cfg)


def test_map_keys_and_nested_containers_are_converted():
    req = dup.duplication_sync_request(
        node=5,
        confirm_list={9: [dup.duplication_confirm_entry(dupid=1, confirmed_decree=10)]},
    )
    fields = codes.SHAPES.structs["duplication_sync_request"]
    std = serialize(req)
    rdsn = wire.convert_struct(std, fields, to_rdsn=True)
    assert b"\x0d\x00\x02\x0c\x0f\x00\x00\x00\x01" in rdsn  # map<gpid(STRUCT), list>
    assert wire.convert_struct(rdsn, fields, to_rdsn=False) == std


def test_standard_form_is_accepted_where_rdsn_form_is_expected():
    fields = codes.SHAPES.structs["update_request"]
    std = serialize(rrdb.update_request(key=b"a", value=b"b", expire_ts_seconds=1))
    assert wire.convert_struct(std, fields, to_rdsn=False) == std


def test_arg_raw_conversion_for_shipped_raw_messages():
    put = codes.METHODS["RPC_RRDB_RRDB_PUT"]
    std = serialize(rrdb.update_request(key=b"a", value=b"b", expire_ts_seconds=1))
    rdsn = put.arg_raw_to(std, to_rdsn=True)
    assert rdsn != std and len(rdsn) == len(std)
    assert put.arg_raw_to(rdsn, to_rdsn=False) == std
    remove = codes.METHODS["RPC_RRDB_RRDB_REMOVE"]
    assert remove.arg_raw_to(b"\x00\x00\x00\x01k", to_rdsn=True) == b"\x00\x00\x00\x01k"


@pytest.mark.parametrize(
    "data",
    [b"", b"\x0b\x00\x01\x00\x00", b"\x0b\x00\x01\xff\xff\xff\xff\x00", b"\x0d\x00\x01\x0b"],
)
def test_truncated_or_negative_lengths_are_refused(data):
    with pytest.raises(wire.WireError):
        wire.convert_struct(data, None, to_rdsn=False)


def test_encode_arg_raw_builds_the_same_args_as_encode_arg():
    put = codes.METHODS["RPC_RRDB_RRDB_PUT"]
    req = rrdb.update_request(key=b"a", value=b"b", expire_ts_seconds=1)
    assert put.encode_arg_raw(serialize(req)) == put.encode_arg(req)
    get = codes.METHODS["RPC_RRDB_RRDB_GET"]
    assert get.encode_arg_raw(b"\x00\x00\x00\x01k") == get.encode_arg(b"k")
