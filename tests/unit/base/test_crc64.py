import random

from dupkv.base.crc import reflected_crc
from dupkv.base.crc64 import POSITIONAL_MAX, crc64, key_hash, partition_index


def test_check_values_match_pegasus():
    assert crc64(b"123456789") == 0xAE8B14860A799888
    assert crc64(b"a") == 0x8C2F8445B4CBFC3C
    assert crc64(b"") == 0


def test_streaming_equals_one_shot():
    data = b"hash-key-0001:sort"
    assert crc64(data[7:], crc64(data[:7])) == crc64(data)


def test_empty_hash_key_routes_by_sort_key():
    assert key_hash(b"", b"sk") == crc64(b"sk")
    assert key_hash(b"hk", b"sk") == crc64(b"hk")


def test_partition_index_is_unsigned_modulo():
    h = crc64(b"123456789")
    assert partition_index(h, 8) == h % 8
    assert 0 <= partition_index(h, 7) < 7


def test_the_positional_path_equals_the_byte_loop_at_every_length():
    loop = reflected_crc(0x9A6C9329AC4BC9B5, 64)
    rng = random.Random(5)
    for n in range(POSITIONAL_MAX * 2 + 2):
        for _ in range(5):
            data = rng.randbytes(n)
            assert crc64(data) == loop(data), n
    assert crc64(bytearray(b"123456789")) == crc64(memoryview(b"123456789")) == 0xAE8B14860A799888
