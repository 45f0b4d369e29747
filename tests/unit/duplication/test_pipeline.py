"""The shipping pipeline core: routing per write, windows, in-order progress, retries,
FAIL_SKIP, bounded memory and heartbeats — no sockets, no clock."""

from dupkv.base.crc64 import crc64
from dupkv.duplication.pipeline import Entry, Heartbeat, Limits, Load, Pipeline, Send, WakeAt
from dupkv.duplication.routing import remote_partition, write_hash
from dupkv.duplication.status import FailMode
from dupkv.rpc.thrift import encode_blob, rrdb, serialize
from dupkv.storage.mutation import TaskCode
from dupkv.storage.schema import encode_key


def put_raw(hk: bytes, sk: bytes = b"s", value: bytes = b"v") -> bytes:
    return serialize(rrdb.update_request(key=encode_key(hk, sk), value=value, expire_ts_seconds=0))


def entry(decree: int, hk: bytes, ts: int = 0) -> Entry:
    return Entry(decree, ts or decree * 1000, TaskCode.PUT, put_raw(hk))


def sends(actions):
    return [a.batch for a in actions if isinstance(a, Send)]


def test_write_hash_reads_the_key_of_every_shippable_code():
    hk = b"hash"
    assert write_hash(TaskCode.PUT, put_raw(hk)) == crc64(hk)
    assert write_hash(TaskCode.REMOVE, encode_blob(encode_key(hk, b"x"))) == crc64(hk)
    mp = serialize(rrdb.multi_put_request(hash_key=hk, kvs=[rrdb.key_value(key=b"a", value=b"")]))
    mr = serialize(rrdb.multi_remove_request(hash_key=hk, sort_keys=[b"a"]))
    assert write_hash(TaskCode.MULTI_PUT, mp) == crc64(hk)
    assert write_hash(TaskCode.MULTI_REMOVE, mr) == crc64(hk)
    # An empty hash key routes by the sort key, as clients do.
    assert write_hash(TaskCode.PUT, put_raw(b"", b"sk")) == crc64(b"sk")


def test_any_pair_of_partition_counts_routes_each_write_by_its_own_key():
    for remote_count in (2, 3, 4, 8, 16):
        for i in range(200):
            hk = b"key%d" % i
            assert (
                remote_partition(TaskCode.PUT, put_raw(hk), remote_count)
                == crc64(hk) % remote_count
            )


def test_load_then_ship_per_remote_partition_and_advance_in_order():
    p = Pipeline(1, 4, Limits(batch_bytes=10_000, window=2))
    assert p.poll(0, committed_decree=0) == [WakeAt(1000)]  # idle: only the heartbeat timer
    (load,) = [a for a in p.poll(0, committed_decree=5) if isinstance(a, Load)]
    assert load.from_decree == 1
    entries = [entry(d, b"k%d" % d) for d in range(1, 6)]
    p.loaded(entries, upto_decree=5)
    batches = sends(p.poll(1, committed_decree=5))
    routed = {b.remote_pidx: [e.decree for e in b.entries] for b in batches}
    for pidx, decrees in routed.items():
        for d in decrees:
            assert crc64(b"k%d" % d) % 4 == pidx
        assert decrees == sorted(decrees)
    assert sum(len(d) for d in routed.values()) == 5
    assert p.shipped_decree == 0
    # Ack the batch holding the highest decree first: progress must not move yet.
    order = sorted(batches, key=lambda b: -b.entries[-1].decree)
    p.acked(order[0].batch_id, 10)
    assert p.shipped_decree < 5
    for b in order[1:]:
        p.acked(b.batch_id, 10)
    assert p.shipped_decree == 5 and p.idle


def test_decrees_without_shippable_writes_still_count_as_shipped():
    p = Pipeline(1, 2, Limits())
    p.poll(0, 10)
    p.loaded([], upto_decree=10)
    assert p.shipped_decree == 10


def test_window_limits_batches_in_flight_per_remote_partition():
    p = Pipeline(1, 1, Limits(batch_bytes=1, window=3))
    p.poll(0, 10)
    p.loaded([entry(d, b"same") for d in range(1, 11)], 10)
    first = sends(p.poll(0, 10))
    assert len(first) == 3  # one write per batch (batch_bytes=1), three in flight
    assert sends(p.poll(0, 10)) == []
    p.acked(first[0].batch_id, 5)
    assert len(sends(p.poll(5, 10))) == 1
    assert p.shipped_decree == 1


def test_batches_respect_batch_bytes():
    raw_len = len(put_raw(b"same"))
    p = Pipeline(1, 1, Limits(batch_bytes=raw_len * 4, window=100))
    p.poll(0, 20)
    p.loaded([entry(d, b"same") for d in range(1, 21)], 20)
    batches = sends(p.poll(0, 20))
    assert [len(b.entries) for b in batches] == [4] * 5


def test_failed_batch_is_retried_with_capped_backoff_forever_under_fail_slow():
    limits = Limits(window=1, backoff_base_ms=100, backoff_max_ms=400)
    p = Pipeline(1, 1, limits, FailMode.FAIL_SLOW)
    p.poll(0, 1)
    p.loaded([entry(1, b"k")], 1)
    (batch,) = sends(p.poll(0, 1))
    now = 0
    delays = []
    for _ in range(8):
        assert p.failed(batch.batch_id, now, jitter=0.999) is None
        actions = p.poll(now, 1)
        (wake,) = [a for a in actions if isinstance(a, WakeAt)]
        delays.append(wake.at_ms - now)
        assert sends(p.poll(wake.at_ms - 1, 1)) == []
        now = wake.at_ms
        (batch,) = sends(p.poll(now, 1))
    assert delays[:3] == [99, 199, 399] and max(delays) <= 400
    p.acked(batch.batch_id, now)
    assert p.shipped_decree == 1 and batch.attempts == 9


def test_fail_skip_drops_a_batch_after_bounded_attempts_and_moves_on():
    p = Pipeline(
        1, 1, Limits(window=1, skip_after_attempts=3, backoff_base_ms=1), FailMode.FAIL_SKIP
    )
    p.poll(0, 2)
    p.loaded([entry(1, b"k"), entry(2, b"k")], 2)
    now = 0
    skipped = None
    for _ in range(3):
        (batch,) = sends(p.poll(now, 2))
        skipped = p.failed(batch.batch_id, now, 0.0)
        now += 10
    assert skipped is not None and (skipped.first_decree, skipped.last_decree) == (1, 2)
    assert p.shipped_decree == 2 and p.idle and p.skipped[-1] is skipped


def test_loading_stops_while_too_much_is_pending():
    p = Pipeline(1, 1, Limits(max_pending_bytes=1000, window=1, batch_bytes=1))
    p.poll(0, 1000)
    p.loaded([entry(d, b"k") for d in range(1, 40)], 39)
    assert p.pending_bytes > 1000
    assert not any(isinstance(a, Load) for a in p.poll(0, 1000))


def test_lag_is_ack_time_minus_write_timestamp():
    p = Pipeline(1, 1, Limits())
    p.poll(0, 1)
    p.loaded([Entry(1, 5_000_000, TaskCode.PUT, put_raw(b"k"))], 1)
    (batch,) = sends(p.poll(0, 1))
    assert p.acked(batch.batch_id, 5_120) == [120]


def test_idle_pipeline_sends_heartbeats_round_robin():
    p = Pipeline(1, 3, Limits(heartbeat_ms=1000))
    p.poll(0, 0)
    actions = p.poll(1000, 0)
    assert Heartbeat(0) in actions
    assert not any(isinstance(a, Heartbeat) for a in p.poll(1500, 0))  # one at a time
    p.heartbeat_done(1600)
    assert Heartbeat(1) in p.poll(2600, 0)


def test_shipped_before_reports_the_oldest_unacked_write():
    p = Pipeline(1, 1, Limits(window=10, batch_bytes=1))
    p.poll(0, 2)
    p.loaded([entry(1, b"k", ts=100), entry(2, b"k", ts=200)], 2)
    b1, b2 = sends(p.poll(0, 2))
    assert p.shipped_before_us(10**9, 2) == 100
    p.acked(b1.batch_id, 0)
    assert p.shipped_before_us(10**9, 2) == 200
    p.acked(b2.batch_id, 0)
    assert p.shipped_before_us(10**9, 2) == 10**9
    assert p.shipped_before_us(10**9, 3) == 0  # decree 3 committed but not loaded


def test_a_busy_partition_ships_full_batches_while_one_is_in_flight():
    raw_len = len(put_raw(b"same"))
    p = Pipeline(1, 1, Limits(batch_bytes=raw_len * 10, window=8))
    p.poll(0, 1)
    p.loaded([entry(1, b"same")], 1)
    (first,) = sends(p.poll(0, 1))  # nothing in flight: a lone write leaves at once
    p.poll(0, 5)
    p.loaded([entry(d, b"same") for d in range(2, 6)], 5)
    assert sends(p.poll(0, 5)) == []  # a small batch waits behind the one in flight
    p.poll(0, 20)
    p.loaded([entry(d, b"same") for d in range(6, 21)], 20)
    (full,) = sends(p.poll(0, 20))  # ... unless it filled up
    assert len(full.entries) == 10
    p.acked(first.batch_id, 1)
    assert sends(p.poll(1, 20)) == []  # one batch is still on its way
    p.acked(full.batch_id, 2)
    (rest,) = sends(p.poll(2, 20))  # nothing in flight any more: what waited goes
    assert [e.decree for e in rest.entries] == list(range(12, 21))
