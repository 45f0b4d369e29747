import pytest

from dupkv.storage.mutation import TaskCode, Update, decode_payload, encode_payload


def test_round_trip():
    updates = (Update(TaskCode.PUT, b"raw1"), Update(TaskCode.REMOVE, b""))
    m = decode_payload(7, encode_payload(123456, updates))
    assert m.decree == 7 and m.timestamp_us == 123456 and m.updates == updates


def test_empty_write_round_trip():
    assert decode_payload(1, encode_payload(5, ())).updates == ()


def test_malformed_payloads_are_rejected():
    good = encode_payload(1, (Update(TaskCode.PUT, b"abc"),))
    with pytest.raises(ValueError):
        decode_payload(1, good[:-1])
    with pytest.raises(ValueError):
        decode_payload(1, good + b"x")
    bad_code = good[:10] + b"\xee" + good[11:]
    with pytest.raises(ValueError, match="task code"):
        decode_payload(1, bad_code)
