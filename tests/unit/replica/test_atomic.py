import pytest

from dupkv.base.errors import RocksStatus
from dupkv.replica import atomic
from dupkv.replica.atomic import CheckType as CT


@pytest.mark.parametrize(
    "text,value",
    [
        (b"0", 0),
        (b"42", 42),
        (b"-42", -42),
        (b"+7", 7),
        (b"  12", 12),
        (b"\t\n-3", -3),
        (b"0x10", 16),
        (b"0X1f", 31),
        (b"010", 8),
        (b"-0x10", -16),
        (b"9223372036854775807", 2**63 - 1),
        (b"-9223372036854775808", -(2**63)),
    ],
)
def test_parse_int64_accepts_strtoll_base0(text, value):
    assert atomic.parse_int64(text) == value


@pytest.mark.parametrize(
    "text",
    [
        b"",
        b" ",
        b"-",
        b"12 ",
        b"1a",
        b"0x",
        b"08",
        b"9223372036854775808",
        b"1.5",
        b"1\x002",
        b"-9223372036854775809",
        b"abc",
    ],
)
def test_parse_int64_rejects(text):
    assert atomic.parse_int64(text) is None


def test_incr_on_absent_and_existing_values():
    r = atomic.evaluate_incr(None, 0, 5, 0)
    assert (r.error, r.new_value) == (RocksStatus.OK, 5)
    assert r.produced.puts == [(b"", b"5", 0)]
    r = atomic.evaluate_incr(b"0x10", 0, 1, 0)
    assert r.new_value == 17 and r.produced.puts[0][1] == b"17"
    r = atomic.evaluate_incr(b"", 0, -3, 0)
    assert r.new_value == -3


def test_incr_errors():
    r = atomic.evaluate_incr(b"abc", 0, 1, 0)
    assert (r.error, r.new_value, r.produced) == (RocksStatus.INVALID_ARGUMENT, 0, None)
    r = atomic.evaluate_incr(b"9223372036854775807", 0, 1, 0)
    assert r.error == RocksStatus.INVALID_ARGUMENT
    assert r.new_value == 2**63 - 1 and r.produced is None


def test_incr_ttl_rules():
    # 0 keeps the existing TTL, >0 sets, <0 clears; an absent value gets only a positive TTL.
    assert atomic.evaluate_incr(b"1", 500, 1, 0).produced.puts[0][2] == 500
    assert atomic.evaluate_incr(b"1", 500, 1, 900).produced.puts[0][2] == 900
    assert atomic.evaluate_incr(b"1", 500, 1, -1).produced.puts[0][2] == 0
    assert atomic.evaluate_incr(None, 0, 1, 0).produced.puts[0][2] == 0
    assert atomic.evaluate_incr(None, 0, 1, 700).produced.puts[0][2] == 700


CASES = [
    (CT.NO_CHECK, None, b"", True),
    (CT.NO_CHECK, b"v", b"", True),
    (CT.VALUE_NOT_EXIST, None, b"", True),
    (CT.VALUE_NOT_EXIST, b"", b"", False),
    (CT.VALUE_NOT_EXIST_OR_EMPTY, b"", b"", True),
    (CT.VALUE_NOT_EXIST_OR_EMPTY, b"x", b"", False),
    (CT.VALUE_NOT_EXIST_OR_EMPTY, None, b"", True),
    (CT.VALUE_EXIST, b"", b"", True),
    (CT.VALUE_EXIST, None, b"", False),
    (CT.VALUE_NOT_EMPTY, b"x", b"", True),
    (CT.VALUE_NOT_EMPTY, b"", b"", False),
    (CT.VALUE_NOT_EMPTY, None, b"", False),
    (CT.MATCH_ANYWHERE, b"hello", b"ell", True),
    (CT.MATCH_ANYWHERE, b"hello", b"", True),
    (CT.MATCH_ANYWHERE, None, b"", False),
    (CT.MATCH_ANYWHERE, b"hello", b"xyz", False),
    (CT.MATCH_PREFIX, b"hello", b"he", True),
    (CT.MATCH_PREFIX, b"hello", b"lo", False),
    (CT.MATCH_POSTFIX, b"hello", b"lo", True),
    (CT.MATCH_POSTFIX, b"hello", b"he", False),
    (CT.BYTES_LESS, b"a", b"b", True),
    (CT.BYTES_LESS, b"b", b"b", False),
    (CT.BYTES_LESS_OR_EQUAL, b"b", b"b", True),
    (CT.BYTES_EQUAL, b"b", b"b", True),
    (CT.BYTES_EQUAL, b"b", b"c", False),
    (CT.BYTES_GREATER_OR_EQUAL, b"c", b"b", True),
    (CT.BYTES_GREATER, b"b", b"b", False),
    (CT.BYTES_GREATER, None, b"", False),
    (CT.INT_LESS, b"9", b"10", True),
    (CT.INT_LESS_OR_EQUAL, b"10", b"0xa", True),
    (CT.INT_EQUAL, b"010", b"8", True),
    (CT.INT_GREATER_OR_EQUAL, b"-1", b"0", False),
    (CT.INT_GREATER, b"11", b"10", True),
    (CT.INT_GREATER, None, b"10", False),
]


@pytest.mark.parametrize("check_type,value,operand,expected", CASES)
def test_every_check_type(check_type, value, operand, expected):
    assert atomic.check_passes(check_type, value, operand) is expected


def test_all_18_check_types_are_covered():
    assert {c[0] for c in CASES} == set(range(18))


def test_int_check_on_non_integers_and_unknown_types():
    with pytest.raises(atomic.InvalidOperand):
        atomic.check_passes(CT.INT_EQUAL, b"abc", b"1")
    with pytest.raises(atomic.InvalidOperand):
        atomic.check_passes(CT.INT_EQUAL, b"1", b"x")
    with pytest.raises(ValueError, match="0..17"):
        atomic.check_passes(18, b"1", b"1")


def test_check_and_set_results():
    r = atomic.evaluate_check_and_set(None, CT.VALUE_NOT_EXIST, b"", b"sk", b"v", 0)
    assert r.error == RocksStatus.OK and r.produced.puts == [(b"sk", b"v", 0)]
    r = atomic.evaluate_check_and_set(b"old", CT.VALUE_NOT_EXIST, b"", b"sk", b"v", 0)
    assert (r.error, r.check_value_exist, r.check_value) == (RocksStatus.TRY_AGAIN, True, b"old")
    r = atomic.evaluate_check_and_set(b"x", CT.INT_LESS, b"1", b"sk", b"v", 0)
    assert r.error == RocksStatus.INVALID_ARGUMENT and r.produced is None
    r = atomic.evaluate_check_and_set(b"x", 99, b"", b"sk", b"v", 0)
    assert r.error == RocksStatus.INVALID_ARGUMENT


def test_check_and_mutate_results():
    muts = [(atomic.MO_PUT, b"a", b"1", 0), (atomic.MO_DELETE, b"b", b"", 0)]
    r = atomic.evaluate_check_and_mutate(None, CT.NO_CHECK, b"", muts)
    assert r.produced.puts == [(b"a", b"1", 0)] and r.produced.deletes == [b"b"]
    assert atomic.evaluate_check_and_mutate(None, CT.NO_CHECK, b"", []).error == 4
    assert atomic.evaluate_check_and_mutate(None, CT.NO_CHECK, b"", [(7, b"a", b"", 0)]).error == 4
