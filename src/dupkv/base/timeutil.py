"""Pegasus time bases and the timetag (pure: callers pass the current time in).

- `expire_ts` is seconds since 2016-01-01 00:00:00 UTC; 0 means "never expires".
- `timetag = timestamp_us << 8 | cluster_id << 1 | delete_flag`; comparing two timetags as
  unsigned integers orders by timestamp, then cluster id, then the delete flag, which is
  exactly the last-writer-wins order duplication needs.
"""

EPOCH_BEGIN = 1451606400  # 2016-01-01 00:00:00 UTC in Unix seconds
TIMESTAMP_MASK = (1 << 56) - 1
MAX_CLUSTER_ID = 127


def epoch_now(unix_seconds: float) -> int:
    """Seconds since the Pegasus epoch for a Unix time."""
    return int(unix_seconds) - EPOCH_BEGIN


def expire_ts_from_ttl(ttl_seconds: int, unix_seconds: float) -> int:
    """What a client sends for a TTL: 0 for none, else an absolute Pegasus-epoch time."""
    return 0 if ttl_seconds == 0 else epoch_now(unix_seconds) + ttl_seconds


def is_expired(expire_ts: int, epoch_now_seconds: int) -> bool:
    return expire_ts > 0 and expire_ts <= epoch_now_seconds


def make_timetag(timestamp_us: int, cluster_id: int, deleted: bool) -> int:
    assert 0 <= cluster_id <= MAX_CLUSTER_ID, cluster_id
    return ((timestamp_us & TIMESTAMP_MASK) << 8) | (cluster_id << 1) | int(deleted)


def timetag_timestamp_us(timetag: int) -> int:
    return (timetag >> 8) & TIMESTAMP_MASK


def timetag_cluster_id(timetag: int) -> int:
    return (timetag >> 1) & 0x7F


def timetag_deleted(timetag: int) -> bool:
    return bool(timetag & 1)


class UniqueClock:
    """A per-partition microsecond clock that never repeats and never goes back.

    `next(now_us)` returns max(now_us, last + 1). `observe(ts)` moves the clock past a
    timestamp seen in a duplicated write, so that a later local write to the same key always
    carries a larger timetag than anything already stored for it (a hybrid logical clock).
    """

    __slots__ = ("last_us",)

    def __init__(self, last_us: int = 0) -> None:
        self.last_us = last_us

    def next(self, now_us: int) -> int:
        ts = now_us if now_us > self.last_us else self.last_us + 1
        self.last_us = ts
        return ts

    def observe(self, timestamp_us: int) -> None:
        if timestamp_us > self.last_us:
            self.last_us = timestamp_us
