import pytest

from dupkv.base.timeutil import make_timetag
from dupkv.storage import schema


def test_key_layout():
    assert schema.encode_key(b"hk", b"sk") == b"\x00\x02hksk"
    assert schema.decode_key(b"\x00\x02hksk") == (b"hk", b"sk")
    assert schema.decode_key(schema.encode_key(b"", b"")) == (b"", b"")


def test_key_rejects_long_hash_key_and_malformed_keys():
    schema.encode_key(b"x" * 65534, b"")
    with pytest.raises(ValueError, match="65535"):
        schema.encode_key(b"x" * 65535, b"")
    with pytest.raises(ValueError):
        schema.decode_key(b"\x00")
    with pytest.raises(ValueError):
        schema.decode_key(b"\x00\x05ab")


def test_keys_sort_by_hash_key_length_first():
    assert schema.encode_key(b"b", b"") < schema.encode_key(b"aa", b"")


def test_next_blob():
    assert schema.next_blob(b"\x00\x02ab") == b"\x00\x02ac"
    assert schema.next_blob(b"\x00\x02a\xff") == b"\x00\x02b"
    assert schema.next_blob(b"\xff\xff") == b""
    prefix = schema.hash_key_prefix(b"hk")
    assert schema.encode_key(b"hk", b"\xff" * 10) < schema.next_blob(prefix)


def test_value_layout():
    tag = make_timetag(123, 3, False)
    v = schema.encode_value(77, tag, b"data")
    assert v == (77).to_bytes(4, "big") + tag.to_bytes(8, "big") + b"data"
    assert schema.decode_header(v) == (77, tag)
    assert schema.value_data(v) == b"data"
    assert schema.value_timetag(v) == tag


def test_liveness_of_values_and_tombstones():
    live = schema.encode_value(0, make_timetag(1, 0, False), b"x")
    expired = schema.encode_value(100, make_timetag(1, 0, False), b"x")
    tomb = schema.encode_tombstone(make_timetag(1, 0, True))
    assert schema.is_live(live, 10**6)
    assert not schema.is_live(expired, 100)
    assert schema.is_live(expired, 99)
    assert schema.is_tombstone(tomb) and not schema.is_live(tomb, 0)
    assert len(tomb) == schema.VALUE_HEADER_LEN


def test_filters():
    m = schema.filter_match
    assert m(0, b"zz", b"abc")
    assert m(1, b"b", b"abc") and not m(1, b"z", b"abc")
    assert m(2, b"ab", b"abc") and not m(2, b"bc", b"abc")
    assert m(3, b"bc", b"abc") and not m(3, b"ab", b"abc")
    assert m(2, b"", b"abc")
    with pytest.raises(ValueError):
        m(9, b"a", b"abc")
