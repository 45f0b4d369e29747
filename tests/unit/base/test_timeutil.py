from dupkv.base.timeutil import (
    EPOCH_BEGIN,
    UniqueClock,
    epoch_now,
    expire_ts_from_ttl,
    is_expired,
    make_timetag,
    timetag_cluster_id,
    timetag_deleted,
    timetag_timestamp_us,
)


def test_epoch_is_2016():
    assert EPOCH_BEGIN == 1451606400
    assert epoch_now(EPOCH_BEGIN + 5.9) == 5


def test_ttl_to_expire_ts():
    assert expire_ts_from_ttl(0, EPOCH_BEGIN + 100) == 0
    assert expire_ts_from_ttl(10, EPOCH_BEGIN + 100) == 110


def test_expiry_boundaries():
    assert not is_expired(0, 10**9)
    assert is_expired(100, 100)
    assert not is_expired(101, 100)


def test_timetag_layout_and_order():
    tag = make_timetag(1_700_000_000_000_000, 5, True)
    assert timetag_timestamp_us(tag) == 1_700_000_000_000_000
    assert timetag_cluster_id(tag) == 5
    assert timetag_deleted(tag)
    assert tag == (1_700_000_000_000_000 << 8) | (5 << 1) | 1
    # Order: timestamp first, then cluster id, then the delete flag.
    assert make_timetag(10, 1, False) < make_timetag(11, 0, False)
    assert make_timetag(10, 1, False) < make_timetag(10, 2, False)
    assert make_timetag(10, 2, False) < make_timetag(10, 2, True)


def test_unique_clock_never_repeats_and_observes_remote_time():
    clock = UniqueClock()
    assert clock.next(100) == 100
    assert clock.next(100) == 101
    assert clock.next(50) == 102
    clock.observe(1000)
    assert clock.next(500) == 1001
    clock.observe(10)
    assert clock.next(2000) == 2000
