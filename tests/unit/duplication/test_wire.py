from dupkv.duplication.pipeline import Entry
from dupkv.duplication.wire import encode_duplicate_args
from dupkv.rpc.codes import lookup
from dupkv.rpc.thrift import encode_blob, rrdb, serialize
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
