"""The partition's write and read paths against real RocksDB and plog files."""

import contextlib

import pytest

from dupkv.base.errors import RocksStatus
from dupkv.base.timeutil import EPOCH_BEGIN, make_timetag
from dupkv.replica.atomic import CheckType as CT
from dupkv.replica.partition import Partition, PartitionOptions, WriteOp
from dupkv.rpc.thrift import rrdb, serialize
from dupkv.storage import schema
from dupkv.storage.mutation import TaskCode, decode_payload

NOW = EPOCH_BEGIN + 300_000_000  # a fixed wall clock, seconds


class Clock:
    def __init__(self, t: float = NOW) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def k(hk: bytes, sk: bytes) -> bytes:
    return schema.encode_key(hk, sk)


def put(hk, sk, value, expire_ts=0):
    return WriteOp(
        TaskCode.PUT, rrdb.update_request(key=k(hk, sk), value=value, expire_ts_seconds=expire_ts)
    )


def multi_put(hk, kvs, expire_ts=0):
    return WriteOp(
        TaskCode.MULTI_PUT,
        rrdb.multi_put_request(
            hash_key=hk,
            kvs=[rrdb.key_value(key=s, value=v) for s, v in kvs],
            expire_ts_seconds=expire_ts,
        ),
    )


def remove(hk, sk):
    return WriteOp(TaskCode.REMOVE, k(hk, sk))


def multi_remove(hk, sks):
    return WriteOp(TaskCode.MULTI_REMOVE, rrdb.multi_remove_request(hash_key=hk, sort_keys=sks))


def incr(hk, sk, n, expire_ts=0):
    return WriteOp(
        TaskCode.INCR, rrdb.incr_request(key=k(hk, sk), increment=n, expire_ts_seconds=expire_ts)
    )


def cas(hk, check_sk, check_type, operand=b"", set_value=b"v", set_sk=None, ret=False, ttl=0):
    return WriteOp(
        TaskCode.CHECK_AND_SET,
        rrdb.check_and_set_request(
            hash_key=hk,
            check_sort_key=check_sk,
            check_type=check_type,
            check_operand=operand,
            set_diff_sort_key=set_sk is not None,
            set_sort_key=set_sk or b"",
            set_value=set_value,
            set_expire_ts_seconds=ttl,
            return_check_value=ret,
        ),
    )


def cam(hk, check_sk, check_type, mutates, operand=b"", ret=False):
    return WriteOp(
        TaskCode.CHECK_AND_MUTATE,
        rrdb.check_and_mutate_request(
            hash_key=hk,
            check_sort_key=check_sk,
            check_type=check_type,
            check_operand=operand,
            mutate_list=[
                rrdb.mutate(operation=o, sort_key=s, value=v, set_expire_ts_seconds=t)
                for o, s, v, t in mutates
            ],
            return_check_value=ret,
        ),
    )


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def make(tmp_path, clock):
    opened = []

    def _make(**opts):
        p = Partition(tmp_path / "p", PartitionOptions(**opts), clock=clock)
        opened.append(p)
        return p

    yield _make
    for p in opened:
        if p.plog is not None:
            with contextlib.suppress(Exception):
                p.close()


def get(p, hk, sk):
    r = p.get(k(hk, sk))
    return r.value if r.error == RocksStatus.OK else None


def test_put_get_remove_and_decrees(make):
    p = make(app_id=3, partition_index=1)
    r1, r2 = p.write([put(b"h", b"s", b"v1"), put(b"h", b"t", b"v2")])
    assert (r1.error, r1.decree, r2.decree) == (0, 1, 2)
    assert (r1.app_id, r1.partition_index) == (3, 1)
    assert get(p, b"h", b"s") == b"v1"
    (r3,) = p.write([remove(b"h", b"s")])
    assert (r3.error, r3.decree) == (0, 3)
    assert get(p, b"h", b"s") is None
    (r4,) = p.write([remove(b"h", b"missing")])
    assert r4.error == RocksStatus.OK
    assert p.get(k(b"h", b"missing")).error == RocksStatus.NOT_FOUND


def test_stored_bytes_follow_pegasus_layout(make, clock):
    p = make(cluster_id=5)
    p.write([put(b"h", b"s", b"value", expire_ts=1234)])
    stored = p._engine.get(k(b"h", b"s"))
    expire_ts, tag = schema.decode_header(stored)
    assert expire_ts == 1234 and schema.value_data(stored) == b"value"
    assert tag >> 8 == int(clock.t * 1_000_000) and (tag >> 1) & 0x7F == 5 and not tag & 1


def test_reopen_replays_the_log(make, tmp_path, clock):
    import shutil

    p = make()
    p.write([put(b"h", bytes([i]), b"%d" % i) for i in range(50)])
    p.write([incr(b"h", b"n", 7), cas(b"h", b"c", CT.VALUE_NOT_EXIST, set_value=b"x")])
    p.close()
    # Lose everything RocksDB held: the plog alone must rebuild the partition, atomic
    # writes (logged as requests) included.
    shutil.rmtree(tmp_path / "p" / "rdb")
    clock.t += 3600
    p2 = Partition(tmp_path / "p", PartitionOptions(), clock=clock)
    try:
        assert p2.replayed == 52
        assert get(p2, b"h", bytes([49])) == b"49"
        assert get(p2, b"h", b"n") == b"7" and get(p2, b"h", b"c") == b"x"
        (r,) = p2.write([put(b"h", b"x", b"y")])
        assert r.decree == 53
    finally:
        p2.close()
    p3 = Partition(tmp_path / "p", PartitionOptions(), clock=clock)
    try:
        assert p3.replayed == 0 and p3.last_committed_decree == 53
    finally:
        p3.close()


def test_ttl_expiry_and_ttl_rpc(make, clock):
    p = make()
    now = int(clock.t) - EPOCH_BEGIN
    p.write([put(b"h", b"a", b"1", expire_ts=now + 100), put(b"h", b"b", b"2")])
    assert p.ttl(k(b"h", b"a")).ttl_seconds == 100
    assert p.ttl(k(b"h", b"b")).ttl_seconds == -1
    assert p.ttl(k(b"h", b"c")).error == RocksStatus.NOT_FOUND
    clock.t += 100
    assert get(p, b"h", b"a") is None
    assert p.ttl(k(b"h", b"a")).error == RocksStatus.NOT_FOUND
    assert p.sortkey_count(b"h").count == 1


def test_default_ttl_stamps_writes_without_ttl(make, clock):
    p = make(default_ttl=60)
    now = int(clock.t) - EPOCH_BEGIN
    p.write([put(b"h", b"a", b"1"), put(b"h", b"b", b"2", expire_ts=now + 5)])
    assert p.ttl(k(b"h", b"a")).ttl_seconds == 60
    assert p.ttl(k(b"h", b"b")).ttl_seconds == 5


def test_multi_put_and_multi_remove(make):
    p = make()
    (r,) = p.write([multi_put(b"h", [(b"a", b"1"), (b"b", b"2"), (b"c", b"3")])])
    assert r.error == 0
    (r,) = p.write([multi_remove(b"h", [b"a", b"b", b"zz"])])
    assert (r.error, r.count) == (0, 3)  # requested keys, not removed keys
    assert get(p, b"h", b"a") is None and get(p, b"h", b"c") == b"3"


def test_invalid_writes_get_error_4_and_an_empty_write(make):
    p = make()
    too_long = WriteOp(
        TaskCode.PUT,
        rrdb.update_request(key=b"\xff\xff" + b"x" * 65535, value=b"v", expire_ts_seconds=0),
    )
    ra, rb, rc = p.write([multi_put(b"h", []), multi_remove(b"h", []), too_long])
    assert (ra.error, rb.error, rc.error) == (4, 4, 4)
    assert (ra.decree, rb.decree, rc.decree) == (1, 2, 3)
    records = list(p.plog.replay(1))
    assert [decode_payload(d, pl).updates for d, pl in records] == [(), (), ()]
    # The partition keeps serving.
    (ok,) = p.write([put(b"h", b"s", b"v")])
    assert ok.error == 0 and get(p, b"h", b"s") == b"v"


def test_incr(make, clock):
    p = make()
    (r,) = p.write([incr(b"h", b"n", 5)])
    assert (r.error, r.new_value, r.decree) == (0, 5, 1)
    (r,) = p.write([incr(b"h", b"n", -8)])
    assert r.new_value == -3 and get(p, b"h", b"n") == b"-3"
    p.write([put(b"h", b"hex", b"0x10"), put(b"h", b"bad", b"abc")])
    assert p.write([incr(b"h", b"hex", 1)])[0].new_value == 17
    (r,) = p.write([incr(b"h", b"bad", 1)])
    assert (r.error, r.new_value) == (4, 0)
    p.write([put(b"h", b"max", b"9223372036854775807")])
    (r,) = p.write([incr(b"h", b"max", 1)])
    assert (r.error, r.new_value) == (4, 2**63 - 1)


def test_incr_ttl_rules(make, clock):
    p = make()
    now = int(clock.t) - EPOCH_BEGIN
    p.write([put(b"h", b"n", b"1", expire_ts=now + 50)])
    p.write([incr(b"h", b"n", 1)])
    assert p.ttl(k(b"h", b"n")).ttl_seconds == 50  # 0 keeps
    p.write([incr(b"h", b"n", 1, expire_ts=now + 90)])
    assert p.ttl(k(b"h", b"n")).ttl_seconds == 90  # >0 sets
    p.write([incr(b"h", b"n", 1, expire_ts=-1)])
    assert p.ttl(k(b"h", b"n")).ttl_seconds == -1  # <0 clears
    clock.t += 10**6
    p.write([put(b"h", b"e", b"5", expire_ts=now + 1)])
    (r,) = p.write([incr(b"h", b"e", 1)])
    assert r.new_value == 1  # an expired value counts as absent


def test_group_sees_its_own_earlier_writes(make):
    p = make()
    rs = p.write(
        [
            put(b"h", b"n", b"10"),
            incr(b"h", b"n", 1),
            incr(b"h", b"n", 1),
            cas(b"h", b"n", CT.INT_EQUAL, b"12", b"done"),
        ]
    )
    assert [r.error for r in rs] == [0, 0, 0, 0]
    assert rs[2].new_value == 12 and get(p, b"h", b"n") == b"done"


def test_check_and_set(make):
    p = make()
    (r,) = p.write([cas(b"h", b"c", CT.VALUE_NOT_EXIST, set_value=b"first", ret=True)])
    assert (r.error, r.check_value_returned, r.check_value_exist) == (0, True, False)
    assert r.decree == 1
    (r,) = p.write([cas(b"h", b"c", CT.VALUE_NOT_EXIST, set_value=b"second", ret=True)])
    assert (r.error, r.check_value_exist, r.check_value) == (13, True, b"first")
    assert r.decree == 2  # a failed check consumes a decree (empty write) by default
    assert get(p, b"h", b"c") == b"first"
    (r,) = p.write([cas(b"h", b"c", CT.BYTES_EQUAL, b"first", b"x", set_sk=b"other")])
    assert r.error == 0 and get(p, b"h", b"other") == b"x"
    (r,) = p.write([cas(b"h", b"c", CT.INT_LESS, b"5")])
    assert r.error == 4
    (r,) = p.write([cas(b"h", b"c", 42)])
    assert r.error == 4


def test_check_and_mutate(make):
    p = make()
    p.write([put(b"h", b"gone", b"x")])
    (r,) = p.write(
        [
            cam(
                b"h",
                b"c",
                CT.VALUE_NOT_EXIST,
                [(0, b"a", b"1", 0), (1, b"gone", b"", 0), (0, b"b", b"2", 0)],
            )
        ]
    )
    assert r.error == 0
    assert get(p, b"h", b"a") == b"1" and get(p, b"h", b"gone") is None
    (r,) = p.write([cam(b"h", b"a", CT.VALUE_NOT_EXIST, [(0, b"z", b"9", 0)], ret=True)])
    assert (r.error, r.check_value) == (13, b"1")
    assert p.write([cam(b"h", b"a", CT.NO_CHECK, [])])[0].error == 4
    assert p.write([cam(b"h", b"a", CT.NO_CHECK, [(9, b"z", b"", 0)])])[0].error == 4


def test_idempotent_mode_logs_puts_and_skips_decrees_on_failure(make):
    p = make(atomic_idempotent=True)
    (r,) = p.write([incr(b"h", b"n", 3)])
    assert (r.error, r.decree) == (0, 1)
    (r,) = p.write([cas(b"h", b"n", CT.VALUE_NOT_EXIST)])
    assert (r.error, r.decree) == (13, 0)
    (r,) = p.write([cam(b"h", b"n", CT.VALUE_EXIST, [(1, b"n", b"", 0), (0, b"m", b"1", 0)])])
    assert (r.error, r.decree) == (0, 2)
    codes = [[u.code for u in decode_payload(d, pl).updates] for d, pl in p.plog.replay(1)]
    assert codes == [[TaskCode.PUT], [TaskCode.PUT, TaskCode.PUT]]
    assert get(p, b"h", b"n") is None and get(p, b"h", b"m") == b"1"


def test_duplicating_table_writes_tombstones(make):
    p = make(duplicating=True, cluster_id=1)
    p.write([put(b"h", b"s", b"v"), remove(b"h", b"s")])
    stored = p._engine.get(k(b"h", b"s"))
    assert stored is not None and schema.is_tombstone(stored)
    assert get(p, b"h", b"s") is None
    assert p.sortkey_count(b"h").count == 0
    assert p.multi_get(rrdb.multi_get_request(hash_key=b"h", sort_keys=[])).kvs == []


def dup_request(entries):
    return WriteOp(
        TaskCode.DUPLICATE,
        rrdb.duplicate_request(
            entries=[
                rrdb.duplicate_entry(timestamp=ts, task_code=code, raw_message=raw, cluster_id=cid)
                for ts, code, raw, cid in entries
            ]
        ),
    )


def raw_put(hk, sk, v):
    return serialize(rrdb.update_request(key=k(hk, sk), value=v, expire_ts_seconds=0))


def test_duplicate_applies_last_writer_wins(make, clock):
    p = make(cluster_id=1, dup_group_ids=frozenset({1, 2}))
    now_us = int(clock.t * 1_000_000)
    (r,) = p.write([dup_request([(now_us + 100, TaskCode.PUT, raw_put(b"h", b"s", b"new"), 2)])])
    assert r.error == 0 and get(p, b"h", b"s") == b"new"
    # An older write arriving later loses, deletes included.
    p.write([dup_request([(now_us + 50, TaskCode.PUT, raw_put(b"h", b"s", b"old"), 2)])])
    assert get(p, b"h", b"s") == b"new"
    from dupkv.rpc.thrift import encode_blob

    p.write([dup_request([(now_us + 200, TaskCode.REMOVE, encode_blob(k(b"h", b"s")), 2)])])
    assert get(p, b"h", b"s") is None
    p.write([dup_request([(now_us + 150, TaskCode.PUT, raw_put(b"h", b"s", b"stale"), 2)])])
    assert get(p, b"h", b"s") is None
    stored = p._engine.get(k(b"h", b"s"))
    assert schema.value_timetag(stored) == make_timetag(now_us + 200, 2, True)
    # The remote timestamp moved the local clock: a local write now wins.
    (w,) = p.write([put(b"h", b"s", b"local")])
    assert get(p, b"h", b"s") == b"local"
    assert schema.value_timetag(p._engine.get(k(b"h", b"s"))) > make_timetag(now_us + 200, 2, True)


def test_duplicate_rejects_bad_cluster_ids_and_codes(make, clock):
    p = make(cluster_id=1, dup_group_ids=frozenset({1, 2}))
    ts = int(clock.t * 1_000_000)
    raw = raw_put(b"h", b"s", b"v")
    (r,) = p.write([dup_request([(ts, TaskCode.PUT, raw, 1)])])
    assert r.error == 4 and "self-duplicating" in r.error_hint
    (r,) = p.write([dup_request([(ts, TaskCode.PUT, raw, 9)])])
    assert r.error == 4 and "unconfigured" in r.error_hint
    (r,) = p.write([dup_request([(ts, TaskCode.INCR, raw, 2)])])
    assert r.error == 4 and "unrecognized task code" in r.error_hint
    (r,) = p.write([dup_request([(ts, TaskCode.PUT, b"\x01garbage", 2)])])
    assert r.error == 4 and "malformed" in r.error_hint
    assert get(p, b"h", b"s") is None and p.last_committed_decree == 0


def test_get_batch_get_and_bad_keys(make):
    p = make()
    p.write([put(b"h", b"a", b"1"), put(b"g", b"b", b"2")])
    resp = p.batch_get(
        rrdb.batch_get_request(
            keys=[
                rrdb.full_key(hash_key=b"h", sort_key=b"a"),
                rrdb.full_key(hash_key=b"h", sort_key=b"x"),
                rrdb.full_key(hash_key=b"g", sort_key=b"b"),
            ]
        )
    )
    assert resp.error == 0
    assert [(d.hash_key, d.sort_key, d.value) for d in resp.data] == [
        (b"h", b"a", b"1"),
        (b"g", b"b", b"2"),
    ]
    assert p.batch_get(rrdb.batch_get_request(keys=[])).error == 4
    assert p.get(b"\x00").error == 4


def mg(p, hk, **kw):
    defaults = dict(
        hash_key=hk,
        sort_keys=[],
        max_kv_count=0,
        max_kv_size=0,
        no_value=False,
        start_sortkey=b"",
        stop_sortkey=b"",
        start_inclusive=True,
        stop_inclusive=False,
        sort_key_filter_type=0,
        sort_key_filter_pattern=b"",
        reverse=False,
    )
    defaults.update(kw)
    r = p.multi_get(rrdb.multi_get_request(**defaults))
    return r.error, [(kv.key, kv.value) for kv in r.kvs]


def test_multi_get_ranges_filters_limits_and_reverse(make, clock):
    p = make()
    p.write([multi_put(b"h", [(b"a%d" % i, b"v%d" % i) for i in range(10)] + [(b"b1", b"x")])])
    p.write([put(b"hh", b"a0", b"other")])
    err, kvs = mg(p, b"h")
    assert err == 0 and len(kvs) == 11 and kvs[0] == (b"a0", b"v0")
    err, kvs = mg(p, b"h", start_sortkey=b"a2", stop_sortkey=b"a5")
    assert [s for s, _ in kvs] == [b"a2", b"a3", b"a4"]
    err, kvs = mg(
        p, b"h", start_sortkey=b"a2", stop_sortkey=b"a5", start_inclusive=False, stop_inclusive=True
    )
    assert [s for s, _ in kvs] == [b"a3", b"a4", b"a5"]
    err, kvs = mg(p, b"h", sort_key_filter_type=2, sort_key_filter_pattern=b"b")
    assert kvs == [(b"b1", b"x")]
    err, kvs = mg(p, b"h", sort_key_filter_type=3, sort_key_filter_pattern=b"1")
    assert [s for s, _ in kvs] == [b"a1", b"b1"]
    err, kvs = mg(p, b"h", max_kv_count=3)
    assert err == RocksStatus.INCOMPLETE and [s for s, _ in kvs] == [b"a0", b"a1", b"a2"]
    err, kvs = mg(p, b"h", max_kv_count=3, reverse=True)
    assert err == RocksStatus.INCOMPLETE and [s for s, _ in kvs] == [b"a8", b"a9", b"b1"]
    err, kvs = mg(p, b"h", reverse=True)
    assert err == 0 and len(kvs) == 11 and kvs[0][0] == b"a0"
    err, kvs = mg(p, b"h", no_value=True, max_kv_size=1)
    assert err == RocksStatus.INCOMPLETE and kvs == [(b"a0", b"")]
    err, kvs = mg(p, b"h", start_sortkey=b"a5", stop_sortkey=b"a2")
    assert (err, kvs) == (0, [])
    err, kvs = mg(p, b"h", sort_keys=[b"a1", b"zz", b"a3"])
    assert kvs == [(b"a1", b"v1"), (b"a3", b"v3")]
    err, kvs = mg(p, b"h", sort_keys=[b"a1", b"a2", b"a3"], max_kv_count=2)
    assert err == RocksStatus.INCOMPLETE and len(kvs) == 2
    assert mg(p, b"h", sort_key_filter_type=7)[0] == 4


def test_multi_get_stops_at_the_iteration_cap(make):
    p = make(rocksdb_multi_get_max_iteration_count=5)
    p.write([multi_put(b"h", [(b"%02d" % i, b"v") for i in range(20)])])
    err, kvs = mg(p, b"h")
    assert err == RocksStatus.INCOMPLETE and len(kvs) == 5


def test_multi_get_skips_expired_but_counts_them(make, clock):
    p = make()
    now = int(clock.t) - EPOCH_BEGIN
    p.write(
        [multi_put(b"h", [(b"a", b"1"), (b"b", b"2")], expire_ts=now + 1), put(b"h", b"c", b"3")]
    )
    clock.t += 2
    assert mg(p, b"h") == (0, [(b"c", b"3")])


def scanner_request(**kw):
    defaults = dict(
        start_key=b"\x00\x00",
        stop_key=b"\xff\xff",
        start_inclusive=True,
        stop_inclusive=False,
        batch_size=100,
        no_value=False,
        hash_key_filter_type=0,
        hash_key_filter_pattern=b"",
        sort_key_filter_type=0,
        sort_key_filter_pattern=b"",
        validate_partition_hash=True,
        return_expire_ts=False,
        full_scan=True,
        only_return_count=False,
    )
    defaults.update(kw)
    return rrdb.get_scanner_request(**defaults)


def scan_all(p, **kw):
    r = p.get_scanner(scanner_request(**kw))
    out = [(kv.key, kv.value) for kv in r.kvs]
    batches = 1
    while r.context_id >= 0:
        r = p.scan(rrdb.scan_request(context_id=r.context_id))
        assert r.error == 0
        out += [(kv.key, kv.value) for kv in r.kvs]
        batches += 1
    return out, batches


def test_scanner_full_and_batched(make):
    p = make()
    p.write([multi_put(b"h%d" % i, [(b"s%d" % j, b"v") for j in range(5)]) for i in range(10)])
    out, batches = scan_all(p, batch_size=7)
    assert len(out) == 50 and batches == 8
    assert all(schema.decode_key(key)[0].startswith(b"h") for key, _ in out)
    out, _ = scan_all(p, hash_key_filter_type=2, hash_key_filter_pattern=b"h3")
    assert len(out) == 5
    out, _ = scan_all(p, sort_key_filter_type=1, sort_key_filter_pattern=b"4")
    assert len(out) == 10
    r = p.get_scanner(scanner_request(only_return_count=True, batch_size=1000))
    assert (r.kv_count, r.kvs, r.context_id) == (50, [], -1)
    # A one-hash-key range, as clients build it.
    out, _ = scan_all(
        p, start_key=k(b"h1", b""), stop_key=schema.next_blob(schema.hash_key_prefix(b"h1"))
    )
    assert [schema.decode_key(key)[1] for key, _ in out] == [b"s%d" % j for j in range(5)]


def test_scanner_contexts_expire_and_are_bounded(make, clock):
    p = make(max_scanners=2, scanner_idle_ms=1000)
    p.write([multi_put(b"h", [(b"%03d" % i, b"v") for i in range(20)])])
    ids = [p.get_scanner(scanner_request(batch_size=5)).context_id for _ in range(3)]
    assert all(i >= 0 for i in ids) and len(p.scanners) == 2
    assert p.scan(rrdb.scan_request(context_id=ids[0])).error == RocksStatus.NOT_FOUND
    clock.t += 2
    assert p.expire_scanners() == 2
    assert p.scan(rrdb.scan_request(context_id=ids[2])).error == RocksStatus.NOT_FOUND
    rid = p.get_scanner(scanner_request(batch_size=5)).context_id
    p.clear_scanner(rid)
    assert p.scan(rrdb.scan_request(context_id=rid)).error == RocksStatus.NOT_FOUND


def test_scanner_return_expire_ts_and_no_value(make, clock):
    p = make()
    now = int(clock.t) - EPOCH_BEGIN
    p.write([put(b"h", b"a", b"v", expire_ts=now + 10)])
    r = p.get_scanner(scanner_request(return_expire_ts=True, no_value=True))
    assert [(kv.value, kv.expire_ts_seconds) for kv in r.kvs] == [(b"", now + 10)]


def test_sweep_removes_expired_records(make, clock):
    p = make()
    now = int(clock.t) - EPOCH_BEGIN
    p.write(
        [
            multi_put(b"h", [(b"%03d" % i, b"v") for i in range(30)], expire_ts=now + 5),
            put(b"h", b"keep", b"v"),
        ]
    )
    clock.t += 10
    cursor, total = b"", 0
    while True:
        cursor, deleted = p.sweep_expired(cursor, max_visits=7)
        total += deleted
        if not cursor:
            break
    assert total == 30
    assert p._engine.get(k(b"h", b"000")) is None and get(p, b"h", b"keep") == b"v"


def test_apply_marker_is_never_returned_by_scans(make):
    p = make()
    p.write([put(b"", b"", b"empty-keys")])
    out, _ = scan_all(p, start_key=b"")
    assert out == [(b"\x00\x00", b"empty-keys")]


def test_sweep_keeps_tombstones_and_expired_records_until_the_purge_horizon(make, clock):
    p = make(duplicating=True, cluster_id=1)
    now = int(clock.t) - EPOCH_BEGIN
    p.write([put(b"h", b"gone", b"x"), put(b"h", b"ttl", b"y", expire_ts=now + 1)])
    p.write([remove(b"h", b"gone")])
    written_us = int(clock.t * 1_000_000)
    clock.t += 5
    # A duplicated table keeps both while they may still decide last-writer-wins.
    assert p.sweep_expired(b"", 100, purge_before_us=0) == (b"", 0)
    assert p.sweep_expired(b"", 100, purge_before_us=written_us - 10) == (b"", 0)
    assert p._engine.get(k(b"h", b"gone")) is not None
    # Once every duplication shipped past them (plus grace), they go.
    _, deleted = p.sweep_expired(b"", 100, purge_before_us=written_us + 10)
    assert deleted == 2
    assert p._engine.get(k(b"h", b"gone")) is None and p._engine.get(k(b"h", b"ttl")) is None


def test_duplicate_from_any_cluster_when_ids_are_ignored(make, clock):
    p = make(cluster_id=1, dup_group_ids=frozenset({1}), dup_ignore_other_cluster_ids=True)
    ts = int(clock.t * 1_000_000)
    (r,) = p.write([dup_request([(ts, TaskCode.PUT, raw_put(b"h", b"s", b"v"), 42)])])
    assert r.error == 0 and get(p, b"h", b"s") == b"v"
    (r,) = p.write([dup_request([(ts, TaskCode.PUT, raw_put(b"h", b"s", b"v"), 1)])])
    assert r.error == 4 and "self-duplicating" in r.error_hint
