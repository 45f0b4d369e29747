"""Packed gpid / rpc_address and CRC-32C."""

import pytest

from dupkv.base.errors import BadInput
from dupkv.rpc import ids
from dupkv.rpc.crc32c import crc32c


def test_gpid_round_trip():
    v = ids.pack_gpid(2, 5)
    assert v == (5 << 32) | 2
    assert ids.unpack_gpid(v) == (2, 5)
    assert ids.format_gpid(v) == "2.5"
    assert ids.unpack_gpid(ids.pack_gpid(-1, -1)) == (-1, -1)


@pytest.mark.parametrize("addr", ["127.0.0.1:34601", "10.0.0.1:34801", "200.1.2.3:65535"])
def test_address_round_trip(addr):
    v = ids.pack_address(addr)
    assert -(2**63) <= v < 2**63  # fits a Thrift i64
    assert ids.unpack_address(v) == addr
    assert ids.unpack_address(v & (2**64 - 1)) == addr


def test_address_layout_matches_rdsn():
    assert ids.pack_address("127.0.0.1:34601") == (0x7F000001 << 32) | (34601 << 16) | 1
    assert ids.unpack_address(ids.INVALID_ADDRESS) is None


@pytest.mark.parametrize("bad", ["localhost:1", "1.2.3.4", "1.2.3.4:0", "1.2.3.4:x", ":80"])
def test_bad_addresses(bad):
    with pytest.raises(BadInput):
        ids.pack_address(bad)


def test_crc32c_check_value():
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"6789", crc32c(b"12345")) == 0xE3069283
