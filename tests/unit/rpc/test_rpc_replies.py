"""The hand readers of read_response and update_response against the general decoder:
the same values in both dialects, and None (never a wrong value) for any other bytes."""

import dataclasses
import random
import struct
from typing import Any

import pytest

from dupkv.rpc.codes import METHODS, RpcMethod
from dupkv.rpc.replies import ReadResponse, UpdateResponse
from dupkv.rpc.thrift import rrdb, serialize

GET = METHODS["RPC_RRDB_RRDB_GET"]
PUT = METHODS["RPC_RRDB_RRDB_PUT"]


def general(method: RpcMethod) -> RpcMethod:
    return dataclasses.replace(method, result_reader=None)


def fields(value: Any, names: tuple[str, ...]) -> tuple[Any, ...]:
    return tuple(getattr(value, name) for name in names)


def random_read(rng: random.Random) -> Any:
    return rrdb.read_response(
        error=rng.choice([0, 1, 4]),
        value=rng.randbytes(rng.choice([0, 1, 100, 5000])),
        app_id=rng.randrange(1, 1 << 31),
        partition_index=rng.randrange(0, 256),
        server=rng.choice(["", "127.0.0.1:34801", "réplica:1"]),
    )


def random_update(rng: random.Random) -> Any:
    return rrdb.update_response(
        error=rng.choice([0, 1, 4]),
        app_id=rng.randrange(1, 1 << 31),
        partition_index=rng.randrange(0, 256),
        decree=rng.randrange(0, 1 << 62),
        server=rng.choice(["", "127.0.0.1:34801", "réplica:1"]),
    )


CASES = [
    (GET, random_read, ReadResponse._fields),
    (PUT, random_update, UpdateResponse._fields),
]


def encodings(method: RpcMethod, value: Any) -> list[bytes]:
    """The result struct as our server writes it (rDSN's dialect) and in standard Thrift."""
    return [method.encode_result(value), serialize(method.result_cls(success=value))]


@pytest.mark.parametrize(("method", "make", "names"), CASES)
def test_the_readers_read_what_the_general_decoder_reads(method, make, names) -> None:
    rng = random.Random(1)
    for _ in range(200):
        value = make(rng)
        for raw in encodings(method, value):
            fast = method.result_reader(raw)
            assert fast is not None, raw
            assert fields(fast, names) == fields(value, names)
            assert fields(general(method).decode_result(raw), names) == fields(fast, names)


@pytest.mark.parametrize(("method", "make", "names"), CASES)
def test_other_bytes_are_left_to_the_general_decoder(method, make, names) -> None:
    """Every truncation, every flipped byte and every extension of a reply: the reader
    either gives up or agrees with the general decoder; it never reads a wrong value."""
    rng = random.Random(2)
    slow = general(method)
    for _ in range(10):
        raw = encodings(method, make(rng))[0]
        variants = [raw[:n] for n in range(len(raw))] + [raw + b"\x00", raw[:-1] + b"\x01"]
        for i in range(len(raw)):
            flipped = bytearray(raw)
            flipped[i] ^= 1 << rng.randrange(8)
            variants.append(bytes(flipped))
        for variant in variants:
            fast = method.result_reader(variant)
            if fast is None:
                continue
            assert fields(fast, names) == fields(slow.decode_result(variant), names), variant


def test_the_read_response_writer_writes_what_the_general_encoder_writes() -> None:
    rng = random.Random(3)
    for _ in range(200):
        value = random_read(rng)
        fast = GET.encode_result(ReadResponse(*fields(value, ReadResponse._fields)))
        assert fast == GET.encode_result(value)  # the thriftpy2 struct: the general writer
        assert GET.result_reader(fast) == ReadResponse(*fields(value, ReadResponse._fields))
    with pytest.raises(struct.error):
        GET.encode_result(ReadResponse(0, b"", 1 << 40, 0, ""))
