"""Flat structs: written byte for byte as thriftpy2 plus the walker write them."""

import random

import pytest
from thriftpy2.thrift import TDecodeException

from dupkv.base.errors import RocksStatus
from dupkv.rpc import codes, wire
from dupkv.rpc.flat import T_BINARY, FlatStruct
from dupkv.rpc.thrift import rrdb, serialize

FLAT = {}
for _m in codes.METHODS.values():
    for _codec in (_m.arg_flat, _m.result_flat):
        if _codec is not None:
            FLAT[_codec.cls.__name__] = _codec


def _value(ttype: int, rng: random.Random):
    if rng.random() < 0.2:
        return None
    if ttype == wire.T_BOOL:
        return rng.random() < 0.5
    if ttype == wire.T_I32:
        return rng.randint(-(2**31), 2**31 - 1)
    if ttype == wire.T_I64:
        return rng.randint(-(2**63), 2**63 - 1)
    if ttype == T_BINARY:
        return rng.randbytes(rng.randint(0, 40))
    return "".join(rng.choice("aé✓z:1") for _ in range(rng.randint(0, 12)))


def _random(cls, rng: random.Random):
    return cls(**{spec[1]: _value(spec[0], rng) for spec in cls.thrift_spec.values()})


def _expected(obj) -> bytes:
    plan = wire.compile_fields(codes.SHAPES.structs[type(obj).__name__])
    return wire.convert_plan(serialize(obj), plan, to_rdsn=True)


def test_the_hot_structs_with_dsn_fields_are_written_flat():
    assert {"update_request", "read_response"} <= set(FLAT)
    assert "update_response" not in FLAT  # no dsn field: thriftpy2 alone is faster


@pytest.mark.parametrize("name", sorted(FLAT))
def test_written_as_thriftpy2_and_the_walker_write_it(name):
    codec = FLAT[name]
    rng = random.Random(name)
    for _ in range(200):
        obj = _random(codec.cls, rng)
        assert codec.write(obj) == _expected(obj)


def test_int_subclasses_are_written_like_thriftpy2_writes_them():
    codec = FLAT["read_response"]
    for error in (RocksStatus.NOT_FOUND, True):
        obj = rrdb.read_response(error=error, value=b"v", server="s")
        assert codec.write(obj) == _expected(obj)


def test_unusual_values_take_the_general_path():
    codec = FLAT["read_response"]
    assert codec.write(rrdb.read_response(error="0")) is None  # a string in an i32
    assert codec.write(rrdb.read_response(error=2**31)) is None  # out of range
    assert codec.write(rrdb.read_response(value=bytearray(b"v"))) is None
    assert codec.write(rrdb.update_response(error=0)) is None  # another struct
    get = codes.METHODS["RPC_RRDB_RRDB_GET"]
    with pytest.raises(TDecodeException):
        get.encode_result(rrdb.read_response(error=2**31))  # thriftpy2 refuses it too


def test_structs_with_containers_are_not_flat():
    shape = codes.SHAPES.structs["multi_put_request"]
    assert FlatStruct.of(rrdb.multi_put_request, shape) is None
