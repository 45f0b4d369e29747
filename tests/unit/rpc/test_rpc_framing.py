"""THFT framing: requests and responses in both directions, fed whole and byte by byte."""

import struct

import pytest

from dupkv.base.errors import ErrorCode
from dupkv.rpc import codes, framing
from dupkv.rpc.framing import FrameError, Request, RequestDecoder, Response, ResponseDecoder
from dupkv.rpc.idl_meta import meta
from dupkv.rpc.thrift import encode_blob, rrdb, serialize

PUT = codes.METHODS["RPC_RRDB_RRDB_PUT"]
GET = codes.METHODS["RPC_RRDB_RRDB_GET"]
QUERY_CFG = codes.METHODS["RPC_CM_QUERY_PARTITION_CONFIG_BY_INDEX"]


def put_frame(seqid: int = 1, key: bytes = b"k", **kw) -> bytes:
    req = rrdb.update_request(key=key, value=b"value", expire_ts_seconds=0)
    kw.setdefault("with_header_crc", True)
    return framing.encode_request(PUT.code, seqid, PUT.encode_arg(req), **kw)


def feed_bytewise(decoder, data: bytes) -> list:
    events = []
    for i in range(len(data)):
        events += decoder.feed(data[i : i + 1])
    return events


def test_request_round_trip_whole_and_byte_at_a_time():
    frame = put_frame(
        seqid=42, app_id=3, partition_index=5, client_timeout_ms=1500, partition_hash=2**64 - 7
    )
    for events in (RequestDecoder().feed(frame), feed_bytewise(RequestDecoder(), frame)):
        assert len(events) == 1
        req = events[0]
        assert isinstance(req, Request)
        assert (req.name, req.seqid, req.msg_type) == (PUT.code, 42, framing.MSG_CALL)
        h = req.header
        assert (h.app_id, h.partition_index, h.client_timeout_ms) == (3, 5, 1500)
        assert h.partition_hash == 2**64 - 7
        assert h.thread_hash == 3 * 7919 + 5
        assert h.header_crc32 != 0 and h.body_crc32 == 0
        assert req.method is PUT and req.bad_args is None
        arg = PUT.decode_args(req.args)
        assert arg == rrdb.update_request(key=b"k", value=b"value", expire_ts_seconds=0)


def test_args_raw_is_the_standard_encoding_of_the_argument():
    req = rrdb.update_request(key=b"hk", value=b"v" * 300, expire_ts_seconds=9)
    frame = framing.encode_request(PUT.code, 1, PUT.encode_arg(req))
    (event,) = RequestDecoder().feed(frame)
    assert event.args_raw == serialize(req)
    frame = framing.encode_request(GET.code, 2, GET.encode_arg(b"\x00\x02hksort"))
    (event,) = RequestDecoder().feed(frame)
    assert event.args_raw == encode_blob(b"\x00\x02hksort")
    assert GET.decode_args(event.args) == b"\x00\x02hksort"


def test_args_raw_of_a_request_in_rdsn_dialect():
    # What Pegasus clients send: blob fields carry the STRUCT type byte (12).
    key, value = b"\x00\x01ab", b"xyz"
    update = (
        b"\x0c\x00\x01"
        + encode_blob(key)
        + b"\x0c\x00\x02"
        + encode_blob(value)
        + b"\x08\x00\x03"
        + struct.pack(">i", 0)
        + b"\x00"
    )
    args = b"\x0c\x00\x01" + update + b"\x00"
    frame = framing.encode_request(PUT.code, 9, args)
    (event,) = RequestDecoder().feed(frame)
    expected = rrdb.update_request(key=key, value=value, expire_ts_seconds=0)
    assert event.args_raw == serialize(expected)
    assert PUT.decode_args(event.args) == expected
    assert event.header.header_crc32 == 0


def test_several_frames_in_one_read_and_split_across_reads():
    data = b"".join(put_frame(seqid=i) for i in range(5))
    dec = RequestDecoder()
    events = dec.feed(data[:100]) + dec.feed(data[100:])
    assert [e.seqid for e in events] == [0, 1, 2, 3, 4]
    assert dec.buffered_bytes == 0


def test_old_style_message_begin_is_accepted():
    name = PUT.code.encode()
    body = struct.pack(">i", len(name)) + name + b"\x01" + struct.pack(">i", 77)
    req = rrdb.update_request(key=b"k", value=b"v", expire_ts_seconds=0)
    body += PUT.encode_arg(req)
    header = framing.encode_request(PUT.code, 0, b"")[:48]
    header = header[:16] + struct.pack(">I", len(body)) + header[20:]
    (event,) = RequestDecoder().feed(header + body)
    assert (event.name, event.seqid, event.bad_args) == (PUT.code, 77, None)


def test_wrong_header_crc_breaks_the_stream():
    frame = bytearray(put_frame())
    frame[12:16] = struct.pack(">I", 0xDEADBEEF)
    dec = RequestDecoder()
    (event,) = dec.feed(bytes(frame))
    assert isinstance(event, FrameError) and "CRC" in event.reason
    assert dec.feed(put_frame()) == []  # a broken decoder stays broken


def test_corrupted_header_field_is_caught_by_the_crc():
    frame = bytearray(put_frame(app_id=1))
    frame[27] ^= 0x01  # app_id's low byte
    (event,) = RequestDecoder().feed(bytes(frame))
    assert isinstance(event, FrameError)


def test_oversized_frame_is_refused_before_its_body_arrives():
    frame = put_frame(key=b"k" * 1000)
    dec = RequestDecoder(max_frame_bytes=512)
    (event,) = dec.feed(frame[:48])
    assert isinstance(event, FrameError) and "exceeds" in event.reason


@pytest.mark.parametrize(
    "mutate",
    [
        lambda f: b"XHFT" + f[4:],
        lambda f: f[:4] + struct.pack(">I", 1) + f[8:],
        lambda f: f[:8] + struct.pack(">I", 40) + f[12:],
    ],
    ids=["magic", "version", "header_length"],
)
def test_malformed_header(mutate):
    frame = framing.encode_request(PUT.code, 1, b"\x00")
    (event,) = RequestDecoder().feed(mutate(frame))
    assert isinstance(event, FrameError)


def test_garbage_is_refused_on_the_first_byte():
    (event,) = RequestDecoder().feed(b"G")
    assert isinstance(event, FrameError)


def test_unreadable_message_begin_and_non_request_types_break_the_stream():
    frame = framing.encode_request(PUT.code, 1, b"\x00")
    bad_name = frame[:48] + struct.pack(">I", 0x80010001) + struct.pack(">i", 10**6)
    bad_name = bad_name[:16] + struct.pack(">I", len(bad_name) - 48) + bad_name[20:]
    assert isinstance(RequestDecoder().feed(bad_name)[0], FrameError)
    reply = framing.encode_request(PUT.code, 1, b"\x00", msg_type=framing.MSG_REPLY)
    assert isinstance(RequestDecoder().feed(reply)[0], FrameError)


def test_unknown_rpc_name_is_a_request_without_method():
    (event,) = RequestDecoder().feed(framing.encode_request("RPC_NO_SUCH", 5, b"\x00"))
    assert isinstance(event, Request)
    assert (event.name, event.seqid, event.method, event.args_raw) == ("RPC_NO_SUCH", 5, None, None)


@pytest.mark.parametrize(
    "args",
    [
        b"\x0c\x00\x01\x0b\x00\x01\x00\x00\x00\x09ab\x00\x00",  # binary longer than the body
        b"\x0c\x00\x01\x00\x00" + b"junk",  # bytes after the args struct
        b"\x0c\x00\x01" + b"\x0c\x00\x01" * 70 + b"\x00" * 71 + b"\x00",  # nesting too deep
        b"\x0c\x00\x01\x0f\x00\x02\x0c\x7f\xff\xff\xff\x00\x00",  # a list claiming 2^31-1 items
        b"\x0c\x00\x01\x07\x00\x01\x00\x00",  # unknown type id
        b"\x00",  # no argument at all
    ],
    ids=["overrun", "trailing", "deep", "huge_list", "bad_type", "missing"],
)
def test_malformed_args_are_reported_and_the_stream_goes_on(args):
    dec = RequestDecoder()
    events = dec.feed(framing.encode_request(PUT.code, 1, args) + put_frame(seqid=2))
    assert len(events) == 2
    assert events[0].bad_args and events[0].args_raw is None
    assert events[1].bad_args is None and events[1].seqid == 2


def test_ok_response_layout_and_round_trip():
    result = PUT.encode_result(rrdb.update_response(error=0, app_id=1, partition_index=2))
    frame = framing.encode_response(PUT.code, 11, ErrorCode.OK, result)
    assert struct.unpack(">I", frame[:4])[0] == len(frame)
    assert frame[4:14] == b"\x00\x00\x00\x06ERR_OK"
    for events in (ResponseDecoder().feed(frame), feed_bytewise(ResponseDecoder(), frame)):
        (resp,) = events
        assert isinstance(resp, Response)
        assert (resp.name, resp.seqid, resp.msg_type) == (PUT.code + "_ACK", 11, framing.MSG_REPLY)
        assert PUT.decode_result(resp.result).partition_index == 2


def test_error_response_ends_after_the_message_begin():
    frame = framing.encode_response("RPC_X", 3, ErrorCode.HANDLER_NOT_FOUND, None)
    name = b"RPC_X_ACK"
    expected_payload = (
        struct.pack(">i", 21)
        + b"ERR_HANDLER_NOT_FOUND"
        + struct.pack(">I", 0x80010002)
        + struct.pack(">i", len(name))
        + name
        + struct.pack(">i", 3)
    )
    assert frame == struct.pack(">I", 4 + len(expected_payload)) + expected_payload
    (resp,) = ResponseDecoder().feed(frame)
    assert (resp.error_code, resp.result) == (ErrorCode.HANDLER_NOT_FOUND, b"")


def test_ok_response_requires_a_result():
    with pytest.raises(ValueError):
        framing.encode_response(PUT.code, 1, ErrorCode.OK, None)


@pytest.mark.parametrize("total", [3, 10, 10**9])
def test_response_decoder_refuses_bad_lengths(total):
    (event,) = ResponseDecoder(max_frame_bytes=1 << 20).feed(struct.pack(">I", total) + b"x" * 8)
    assert isinstance(event, FrameError)


def test_meta_result_round_trip_through_a_frame():
    cfg = meta.query_cfg_response(
        err="ERR_OK",
        app_id=2,
        partition_count=1,
        is_stateful=True,
        partitions=[meta.partition_configuration(pid=2, primary=0, secondaries=[], last_drops=[])],
    )
    frame = framing.encode_response(QUERY_CFG.code, 1, "ERR_OK", QUERY_CFG.encode_result(cfg))
    (resp,) = ResponseDecoder().feed(frame)
    assert QUERY_CFG.decode_result(resp.result) == cfg


@pytest.mark.parametrize(
    "first, kind",
    [
        (b"THFT", framing.SNIFF_THFT),
        (b"GET /", framing.SNIFF_HTTP),
        (b"POST", framing.SNIFF_HTTP),
        (b"DELETE", framing.SNIFF_HTTP),
        (b"OPTIONS", framing.SNIFF_HTTP),
        (b"HEAD", framing.SNIFF_HTTP),
        (b"PUT ", framing.SNIFF_HTTP),
        (b"TH", framing.SNIFF_MORE),
        (b"", framing.SNIFF_MORE),
        (b"\x16\x03\x01\x00", framing.SNIFF_UNKNOWN),
        (b"X", framing.SNIFF_UNKNOWN),
    ],
)
def test_sniff(first, kind):
    assert framing.sniff(first) == kind
