"""Client-side validation, request building and response checks of the data RPCs (pure core).

Nothing here does IO or reads the clock: the caller passes `now_unix` for TTLs. Validation
follows Pegasus's Java client: a hash key must be shorter than 65535 bytes; multi ops,
scanners, sortkey_count and check ops need a non-empty hash key (single-key
set/get/del/ttl/incr accept an empty one and route by the sort key); a TTL is never negative
except incr's -1 ("clear").
"""

from typing import Any

from dupkv.base.errors import BadInput, RocksStatus
from dupkv.base.timeutil import expire_ts_from_ttl
from dupkv.client.types import (
    Bytes,
    CheckType,
    FilterType,
    Mutate,
    MutateOperation,
    PegasusError,
    as_bytes,
)
from dupkv.rpc.thrift import rrdb
from dupkv.storage.schema import MAX_HASH_KEY_LEN, encode_key, hash_key_prefix, next_blob

I32_MAX = 0x7FFFFFFF

# Full-partition scans (unordered scanners) run over every key: [0x0000, 0xFFFF).
FULL_SCAN_START = b"\x00\x00"
FULL_SCAN_STOP = b"\xff\xff"


def hash_key(value: Bytes, op: str, *, allow_empty: bool = False) -> bytes:
    hk = as_bytes(value, "hash_key")
    if len(hk) > MAX_HASH_KEY_LEN:
        raise BadInput(f"{op}: hash key is {len(hk)} bytes; it must be shorter than 65535 bytes")
    if not hk and not allow_empty:
        raise BadInput(
            f"{op}: hash key must not be empty (only set/get/delete/ttl/exist/incr accept an "
            "empty hash key)"
        )
    return hk


def expire_ts(ttl_seconds: int, now_unix: float, op: str) -> int:
    """`expire_ts_seconds` for a write: 0 for no TTL, else Pegasus epoch now + ttl."""
    if not isinstance(ttl_seconds, int) or ttl_seconds < 0:
        raise BadInput(f"{op}: ttl_seconds is {ttl_seconds!r}; accepted: 0 (no TTL) or more")
    ts = expire_ts_from_ttl(ttl_seconds, now_unix)
    if ts > I32_MAX:
        raise BadInput(f"{op}: ttl_seconds {ttl_seconds} reaches past the year 2084")
    return ts


def incr_expire_ts(ttl_seconds: int, now_unix: float) -> int:
    """incr's TTL as Pegasus's clients send it: 0 keeps the TTL, -1 clears it, >0 sets it."""
    if not isinstance(ttl_seconds, int) or ttl_seconds < -1:
        raise BadInput(
            f"incr: ttl_seconds is {ttl_seconds!r}; accepted: 0 (keep the TTL), -1 (clear it) "
            "or a positive number of seconds"
        )
    if ttl_seconds == -1:
        return -1
    return expire_ts(ttl_seconds, now_unix, "incr")


def check_type(value: int) -> int:
    if not isinstance(value, int) or not 0 <= value <= max(CheckType):
        raise BadInput(f"check_type is {value!r}; accepted: 0..17 (dupkv.client.CheckType)")
    return int(value)


def filter_type(value: int, what: str) -> int:
    if not isinstance(value, int) or not 0 <= value <= max(FilterType):
        raise BadInput(f"{what} is {value!r}; accepted: 0..3 (dupkv.client.FilterType)")
    return int(value)


def kv_pairs(kvs: Any) -> list[tuple[bytes, bytes]]:
    """multi_set's `{sort_key: value}` or list of pairs, as bytes, at least one."""
    items = list(kvs.items()) if isinstance(kvs, dict) else list(kvs)
    if not items:
        raise BadInput("multi_set: needs at least one (sort_key, value) pair")
    out = []
    for item in items:
        if not isinstance(item, tuple | list) or len(item) != 2:
            raise BadInput(f"multi_set: {item!r} is not a (sort_key, value) pair")
        out.append((as_bytes(item[0], "sort_key"), as_bytes(item[1], "value")))
    return out


# -- request builders ----------------------------------------------------------------------


def put_request(hk: bytes, sk: bytes, value: bytes, ts: int) -> Any:
    return rrdb.update_request(key=encode_key(hk, sk), value=value, expire_ts_seconds=ts)


def multi_put_request(hk: bytes, pairs: list[tuple[bytes, bytes]], ts: int) -> Any:
    kvs = [rrdb.key_value(key=sk, value=v) for sk, v in pairs]
    return rrdb.multi_put_request(hash_key=hk, kvs=kvs, expire_ts_seconds=ts)


def multi_remove_request(hk: bytes, sort_keys: list[bytes]) -> Any:
    if not sort_keys:
        raise BadInput("multi_del: needs at least one sort key")
    return rrdb.multi_remove_request(hash_key=hk, sort_keys=sort_keys, max_count=0)


def check_and_set_request(
    hk: bytes,
    check_sk: bytes,
    ctype: int,
    operand: bytes,
    set_sk: bytes,
    set_value: bytes,
    ts: int,
    return_check_value: bool,
) -> Any:
    return rrdb.check_and_set_request(
        hash_key=hk,
        check_sort_key=check_sk,
        check_type=check_type(ctype),
        check_operand=operand,
        set_diff_sort_key=set_sk != check_sk,
        set_sort_key=set_sk,
        set_value=set_value,
        set_expire_ts_seconds=ts,
        return_check_value=bool(return_check_value),
    )


def check_and_mutate_request(
    hk: bytes,
    check_sk: bytes,
    ctype: int,
    operand: bytes,
    mutations: list[Mutate],
    return_check_value: bool,
    now_unix: float,
) -> Any:
    if not mutations:
        raise BadInput("check_and_mutate: needs at least one Mutate")
    mutate_list = []
    for m in mutations:
        if not isinstance(m, Mutate):
            raise BadInput(f"check_and_mutate: {m!r} is not a Mutate (Mutate.put/Mutate.delete)")
        ts = 0
        if m.operation == MutateOperation.PUT:
            ts = expire_ts(m.ttl_seconds, now_unix, "check_and_mutate")
        mutate_list.append(
            rrdb.mutate(
                operation=int(m.operation),
                sort_key=m.sort_key,
                value=m.value if m.operation == MutateOperation.PUT else b"",
                set_expire_ts_seconds=ts,
            )
        )
    return rrdb.check_and_mutate_request(
        hash_key=hk,
        check_sort_key=check_sk,
        check_type=check_type(ctype),
        check_operand=operand,
        mutate_list=mutate_list,
        return_check_value=bool(return_check_value),
    )


def multi_get_request(
    hk: bytes,
    sort_keys: list[bytes],
    *,
    max_kv_count: int,
    max_kv_size: int,
    start_sortkey: bytes,
    stop_sortkey: bytes,
    start_inclusive: bool,
    stop_inclusive: bool,
    sort_key_filter_type: int,
    sort_key_filter_pattern: bytes,
    no_value: bool,
    reverse: bool,
) -> Any:
    for name, n in (("max_kv_count", max_kv_count), ("max_kv_size", max_kv_size)):
        if not isinstance(n, int) or n > I32_MAX:
            raise BadInput(f"multi_get: {name} is {n!r}; accepted: an int up to {I32_MAX}")
    return rrdb.multi_get_request(
        hash_key=hk,
        sort_keys=sort_keys,
        max_kv_count=max_kv_count,
        max_kv_size=max_kv_size,
        no_value=bool(no_value),
        start_sortkey=start_sortkey,
        stop_sortkey=stop_sortkey,
        start_inclusive=bool(start_inclusive),
        stop_inclusive=bool(stop_inclusive),
        sort_key_filter_type=filter_type(sort_key_filter_type, "sort_key_filter_type"),
        sort_key_filter_pattern=sort_key_filter_pattern,
        reverse=bool(reverse),
    )


def scan_range(
    hk: bytes,
    start_sk: bytes,
    stop_sk: bytes,
    *,
    start_inclusive: bool,
    stop_inclusive: bool,
    sort_key_filter_type: int,
    sort_key_filter_pattern: bytes,
) -> tuple[bytes, bytes, bool, bool] | None:
    """The encoded-key range of a one-hash-key scanner; None when it is empty.

    As Java's `getScanner`: an empty stop sort key means the end of the hash key (exclusive),
    and a prefix filter on sort keys narrows both ends.
    """
    start = encode_key(hk, start_sk)
    if stop_sk:
        stop = encode_key(hk, stop_sk)
    else:
        stop, stop_inclusive = next_blob(hash_key_prefix(hk)), False
    if sort_key_filter_type == FilterType.MATCH_PREFIX and sort_key_filter_pattern:
        prefix_start = encode_key(hk, sort_key_filter_pattern)
        if prefix_start > start:
            start, start_inclusive = prefix_start, True
        prefix_stop = next_blob(prefix_start)
        if prefix_stop <= stop:
            stop, stop_inclusive = prefix_stop, False
    if start < stop or (start == stop and start_inclusive and stop_inclusive):
        return start, stop, start_inclusive, stop_inclusive
    return None


def get_scanner_request(
    options: Any,
    start: bytes,
    stop: bytes,
    start_inclusive: bool,
    stop_inclusive: bool,
    *,
    full_scan: bool,
) -> Any:
    if not isinstance(options.batch_size, int) or not 0 < options.batch_size <= I32_MAX:
        raise BadInput(f"ScanOptions.batch_size is {options.batch_size!r}; accepted: 1 or more")
    return rrdb.get_scanner_request(
        start_key=start,
        stop_key=stop,
        start_inclusive=start_inclusive,
        stop_inclusive=stop_inclusive,
        batch_size=options.batch_size,
        no_value=bool(options.no_value),
        hash_key_filter_type=filter_type(options.hash_key_filter_type, "hash_key_filter_type"),
        hash_key_filter_pattern=as_bytes(options.hash_key_filter_pattern, "filter pattern"),
        sort_key_filter_type=filter_type(options.sort_key_filter_type, "sort_key_filter_type"),
        sort_key_filter_pattern=as_bytes(options.sort_key_filter_pattern, "filter pattern"),
        validate_partition_hash=bool(options.validate_partition_hash),
        return_expire_ts=False,
        full_scan=full_scan,
        only_return_count=bool(options.only_return_count),
    )


# -- responses -----------------------------------------------------------------------------


def where(resp: Any) -> str:
    """ "<app_id>.<pidx> at <server>" of a data response, for error messages."""
    server = getattr(resp, "server", None) or "?"
    return f"{getattr(resp, 'app_id', '?')}.{getattr(resp, 'partition_index', '?')} at {server}"


def status_of(resp: Any, op: str, accepted: tuple[int, ...] = (RocksStatus.OK,)) -> int:
    """The response's RocksDB status if the op treats it as a result; else PegasusError."""
    error = resp.error or 0
    if error not in accepted:
        raise PegasusError(error, op, where(resp))
    return error
