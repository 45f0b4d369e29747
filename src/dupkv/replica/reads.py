"""Range reads of one partition: multi_get and sortkey_count, with Pegasus's limits.

A shell over the engine's iterators; what to return is decided by small pure helpers
(`schema.filter_match`, `schema.is_live`). Limits follow `[pegasus.server]`:
`rocksdb_multi_get_max_iteration_count`, `rocksdb_multi_get_max_iteration_size` and
`rocksdb_iteration_threshold_time_ms`; visited records count whether or not they are
returned, so a range full of expired records still stops.
"""

import time
from typing import Any

from dupkv.base.errors import RocksStatus
from dupkv.rpc.thrift import rrdb
from dupkv.storage import schema
from dupkv.storage.engine import Engine

INT_MAX = (1 << 31) - 1

APPENDED, EXPIRED, FILTERED = 1, 2, 3


class Limiter:
    """Stops a range read after `max_count` visits, `max_size` returned bytes or a deadline."""

    __slots__ = ("max_count", "max_size", "deadline", "count", "size", "timed_out")

    def __init__(self, max_count: int, max_size: int, threshold_ms: int) -> None:
        self.max_count = max_count
        self.max_size = max_size
        self.deadline = time.monotonic() + threshold_ms / 1000 if threshold_ms > 0 else None
        self.count = 0
        self.size = 0
        self.timed_out = False

    def valid(self) -> bool:
        if self.count >= self.max_count or self.size >= self.max_size:
            return False
        return self.time_ok()

    def time_ok(self) -> bool:
        if self.deadline is not None and time.monotonic() > self.deadline:
            self.timed_out = True
        return not self.timed_out


def multi_get(engine: Engine, req: Any, epoch_now: int, options: Any) -> Any:
    response = rrdb.multi_get_response(error=RocksStatus.OK, kvs=[])
    hash_key = req.hash_key or b""
    filter_type = req.sort_key_filter_type or 0
    if not schema.filter_valid(filter_type) or len(hash_key) > schema.MAX_HASH_KEY_LEN:
        response.error = RocksStatus.INVALID_ARGUMENT
        return response
    max_kv_count = req.max_kv_count if req.max_kv_count and req.max_kv_count > 0 else INT_MAX
    max_kv_size = req.max_kv_size if req.max_kv_size and req.max_kv_size > 0 else INT_MAX
    if req.sort_keys:
        return _multi_get_keys(engine, req, hash_key, max_kv_count, max_kv_size, epoch_now)
    cap_size = options.rocksdb_multi_get_max_iteration_size
    limiter = Limiter(
        min(max_kv_count, options.rocksdb_multi_get_max_iteration_count),
        min(max_kv_size, cap_size if cap_size > 0 else INT_MAX),
        options.rocksdb_iteration_threshold_time_ms,
    )
    start = schema.encode_key(hash_key, req.start_sortkey or b"")
    start_inclusive = bool(req.start_inclusive)
    if req.stop_sortkey:
        stop = schema.encode_key(hash_key, req.stop_sortkey)
        stop_inclusive = bool(req.stop_inclusive)
    else:
        stop = schema.next_blob(schema.hash_key_prefix(hash_key))
        stop_inclusive = False
    pattern = req.sort_key_filter_pattern or b""
    if filter_type == schema.FilterType.MATCH_PREFIX and pattern:
        prefix_start = schema.encode_key(hash_key, pattern)
        if prefix_start > start:
            start, start_inclusive = prefix_start, True
        prefix_stop = schema.next_blob(prefix_start)
        if prefix_stop and (not stop or prefix_stop <= stop):
            stop, stop_inclusive = prefix_stop, False
    if _empty_range(start, start_inclusive, stop, stop_inclusive):
        return response
    prefix_len = 2 + len(hash_key)
    found: list[Any] = []
    it = engine.iterator()
    complete = False
    try:
        # One walk for both directions: from `first` towards `bound`, comparing keys with
        # `sign` so that "past the bound" is always c > 0 (an empty stop is no bound).
        if not req.reverse:
            it.seek(start)
            first, first_inclusive, bound, bound_inclusive = (
                start,
                start_inclusive,
                stop,
                stop_inclusive,
            )
            sign, step = 1, it.next
        else:
            if stop:
                it.seek_for_prev(stop)
            else:
                it.seek_to_last()
            first, first_inclusive, bound, bound_inclusive = (
                stop,
                stop_inclusive,
                start,
                start_inclusive,
            )
            sign, step = -1, it.prev
        skip_first = not first_inclusive
        while it.valid() and limiter.valid():
            key = it.key()
            c = sign * _compare(key, bound) if bound else -1
            if c > 0 or (c == 0 and not bound_inclusive):
                complete = True
                break
            if skip_first:
                skip_first = False
                if key == first:
                    step()
                    continue
            limiter.count += 1
            _append_sort_key(found, limiter, key, it.value(), prefix_len, req, epoch_now)
            if c == 0:
                complete = True
                break
            step()
        if req.reverse:
            found.reverse()
        if it.valid() and not complete:
            response.error = RocksStatus.INCOMPLETE
    finally:
        del it
    response.kvs = found
    return response


def _multi_get_keys(
    engine: Engine, req: Any, hash_key: bytes, max_count: int, max_size: int, epoch_now: int
) -> Any:
    response = rrdb.multi_get_response(error=RocksStatus.OK, kvs=[])
    sort_keys = [sk or b"" for sk in req.sort_keys]
    values = engine.multi_get([schema.encode_key(hash_key, sk) for sk in sort_keys])
    count = size = 0
    for sort_key, value in zip(sort_keys, values, strict=True):
        if value is None or not schema.is_live(value, epoch_now):
            continue
        if count >= max_count or size >= max_size:
            response.error = RocksStatus.INCOMPLETE
            break
        data = b"" if req.no_value else schema.value_data(value)
        response.kvs.append(rrdb.key_value(key=sort_key, value=data))
        count += 1
        size += len(sort_key) + len(data)
    return response


def _append_sort_key(
    out: list[Any], limiter: Limiter, key: bytes, value: bytes, prefix_len: int, req: Any, now: int
) -> int:
    if not schema.is_live(value, now):
        return EXPIRED
    sort_key = key[prefix_len:]
    if not schema.filter_match(
        req.sort_key_filter_type or 0, req.sort_key_filter_pattern or b"", sort_key
    ):
        return FILTERED
    data = b"" if req.no_value else schema.value_data(value)
    out.append(rrdb.key_value(key=sort_key, value=data))
    limiter.size += len(sort_key) + len(data)
    return APPENDED


def _compare(key: bytes, stop: bytes) -> int:
    """Compare a key with a range stop, where an empty stop means "no upper bound"."""
    if not stop:
        return -1
    return (key > stop) - (key < stop)


def _empty_range(start: bytes, start_inclusive: bool, stop: bytes, stop_inclusive: bool) -> bool:
    c = _compare(start, stop)
    return c > 0 or (c == 0 and not (start_inclusive and stop_inclusive))


def sortkey_count(engine: Engine, hash_key: bytes, epoch_now: int, options: Any) -> Any:
    response = rrdb.count_response(error=RocksStatus.OK, count=0)
    if len(hash_key) > schema.MAX_HASH_KEY_LEN:
        response.error = RocksStatus.INVALID_ARGUMENT
        return response
    prefix = schema.hash_key_prefix(hash_key)
    stop = schema.next_blob(prefix)
    limiter = Limiter(INT_MAX, INT_MAX, options.rocksdb_iteration_threshold_time_ms)
    it = engine.iterator(upper_bound=stop or None)
    count = 0
    try:
        it.seek(prefix)
        while it.valid() and limiter.time_ok():
            if schema.is_live(it.value(), epoch_now):
                count += 1
            it.next()
    finally:
        del it
    response.count = -1 if limiter.timed_out else count
    return response
