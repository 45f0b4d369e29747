import random
from typing import Any

from dupkv.duplication.pipeline import Entry
from dupkv.duplication.wire import (
    DupEntry,
    encode_duplicate_args,
    parse_duplicate_args,
    parse_put_args,
    parse_update_request,
)
from dupkv.rpc.codes import lookup
from dupkv.rpc.thrift import encode_blob, rrdb, serialize
from dupkv.rpc.wire import split_args_in_place
from dupkv.storage.mutation import TaskCode
from dupkv.storage.schema import encode_key


def test_hand_written_duplicate_request_equals_the_general_encoder():
    put = serialize(rrdb.update_request(key=encode_key(b"h", b"s"), value=b"v" * 300))
    entries = [
        Entry(7, 1_700_000_000_000_123, TaskCode.PUT, put),
        Entry(8, 1_700_000_000_000_124, TaskCode.REMOVE, encode_blob(encode_key(b"h", b"s"))),
        Entry(9, 1_700_000_000_000_125, TaskCode.MULTI_PUT, b""),
    ]
    request = rrdb.duplicate_request(
        entries=[
            rrdb.duplicate_entry(
                timestamp=e.timestamp_us,
                task_code=e.code,
                raw_message=e.raw,
                cluster_id=5,
                verify_timetag=True,
            )
            for e in entries
        ]
    )
    method = lookup("RPC_RRDB_RRDB_DUPLICATE")
    assert encode_duplicate_args(entries, 5) == method.encode_arg(request)
    assert encode_duplicate_args([], 1) == method.encode_arg(rrdb.duplicate_request(entries=[]))


def general_split(body: bytes, code: str = "RPC_RRDB_RRDB_DUPLICATE") -> tuple[bytes, bytes, Any]:
    """The general path: walk the rDSN dialect in place, then thriftpy2."""
    method = lookup(code)
    buf = bytearray(body)
    span = split_args_in_place(buf, 0, len(buf), method.args_plan, method.arg_ttype)
    assert span is not None
    args, raw = bytes(buf), bytes(buf[span[0] : span[1]])
    return args, raw, method.decode_arg_raw(args, raw)


def test_the_duplicate_fast_path_reads_what_the_general_decoder_reads():
    rng = random.Random(7)
    for count in (0, 1, 3, 50):
        entries = [
            Entry(
                d,
                rng.randrange(1, 1 << 62),
                rng.choice([TaskCode.PUT, TaskCode.REMOVE, TaskCode.MULTI_PUT]),
                rng.randbytes(rng.randrange(0, 300)),
            )
            for d in range(count)
        ]
        for cluster_id in (1, 5, 127):
            body = encode_duplicate_args(entries, cluster_id)
            args, raw, expected = general_split(body)
            buf = bytearray(body)
            fast = parse_duplicate_args(buf, 0, len(buf))
            assert fast is not None
            request, start, end = fast
            assert bytes(buf) == args and bytes(buf[start:end]) == raw  # same in-place result
            assert len(request.entries) == len(expected.entries)
            for got, want in zip(request.entries, expected.entries, strict=True):
                for name in DupEntry._fields:
                    assert getattr(got, name) == getattr(want, name), name


def damaged(body: bytes) -> list[bytes]:
    """Every truncation of `body` and `body` with one byte flipped, at every offset."""
    variants = [body[:n] for n in range(len(body))]
    return variants + [body[:i] + bytes([body[i] ^ 0x41]) + body[i + 1 :] for i in range(len(body))]


def test_the_duplicate_fast_path_leaves_other_bytes_untouched_for_the_general_decoder():
    put = serialize(rrdb.update_request(key=encode_key(b"h", b"s"), value=b"v"))
    body = encode_duplicate_args([Entry(1, 99, TaskCode.PUT, put)] * 2, 3)
    # Every truncation, and a flipped byte anywhere, is refused without touching the buffer
    # (or, where the bytes still read as a request, read exactly as the general decoder does).
    for variant in damaged(body):
        buf = bytearray(variant)
        fast = parse_duplicate_args(buf, 0, len(buf))
        if fast is None:
            assert bytes(buf) == variant
            continue
        args, raw, expected = general_split(variant)
        assert bytes(buf) == args and bytes(buf[fast[1] : fast[2]]) == raw
        assert [tuple(e) for e in fast[0].entries] == [
            tuple(getattr(w, n) for n in DupEntry._fields) for w in expected.entries
        ]


def test_the_put_fast_path_reads_what_thriftpy2_reads_in_both_dialects():
    method = lookup("RPC_RRDB_RRDB_PUT")
    rng = random.Random(11)
    for _ in range(200):
        request = rrdb.update_request(
            key=rng.randbytes(rng.randrange(2, 40)),
            value=rng.randbytes(rng.randrange(0, 500)),
            expire_ts_seconds=rng.choice([0, 1, 2**31 - 1, rng.randrange(1, 1 << 30)]),
            type=rng.choice([None, 0, 1, 2]),
        )
        standard = serialize(request)
        for raw in (standard, method.arg_raw_to(standard, to_rdsn=True)):
            put = parse_update_request(raw)
            assert put is not None
            assert tuple(put) == (
                request.key,
                request.value,
                request.expire_ts_seconds,
                request.type,
            )
    # Not the canonical layout (a field missing, extra bytes, truncated): left to thriftpy2.
    standard = serialize(rrdb.update_request(key=b"\x00\x01k", value=b"v", expire_ts_seconds=3))
    assert parse_update_request(serialize(rrdb.update_request(key=b"k", value=b"v"))) is None
    assert parse_update_request(standard + b"\x00") is None
    assert all(parse_update_request(standard[:n]) is None for n in range(len(standard)))


def test_the_put_args_fast_path_does_what_the_general_walker_does():
    """A client's PUT args struct in either dialect: the same argument, the same standard
    bytes in the buffer and the same span; any other bytes are left alone."""
    method = lookup("RPC_RRDB_RRDB_PUT")
    rng = random.Random(12)
    bodies = []
    for _ in range(100):
        request = rrdb.update_request(
            key=rng.randbytes(rng.randrange(2, 40)),
            value=rng.randbytes(rng.randrange(0, 500)),
            expire_ts_seconds=rng.choice([0, rng.randrange(1, 1 << 30)]),
        )
        bodies.append(method.encode_arg(request))  # rDSN's dialect, as clients send
        bodies.append(serialize(method.args_cls(**{method.arg_name: request})))  # standard
    assert all(parse_put_args(bytearray(b), 0, len(b)) is not None for b in bodies)
    for body in [*bodies, *damaged(bodies[0]), bodies[0] + b"\x00"]:
        buf = bytearray(body)
        fast = parse_put_args(buf, 0, len(buf))
        if fast is None:
            assert bytes(buf) == body
            continue
        args, raw, expected = general_split(body, "RPC_RRDB_RRDB_PUT")
        assert bytes(buf) == args and bytes(buf[fast[1] : fast[2]]) == raw
        assert tuple(fast[0]) == (
            expected.key,
            expected.value,
            expected.expire_ts_seconds,
            expected.type,
        )
