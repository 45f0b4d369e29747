"""Scanner contexts of one partition: get_scanner / scan / clear_scanner.

A context keeps a RocksDB iterator (a consistent view) between batches. Contexts are
bounded: at most `max_scanners` per partition (the least recently used is dropped first)
and dropped after `scanner_idle_ms` without use; a client that asks for a dropped context
gets NotFound and restarts from its last key, as Pegasus clients do.

Keys returned by scanners are full encoded RocksDB keys; the client splits them.
"""

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from dupkv.base.errors import RocksStatus
from dupkv.replica.reads import INT_MAX, Limiter
from dupkv.rpc.thrift import rrdb
from dupkv.storage import schema
from dupkv.storage.engine import Engine

CONTEXT_ID_COMPLETED = -1
CONTEXT_ID_NOT_EXIST = -2


@dataclass
class _Context:
    iterator: Any
    stop: bytes
    stop_inclusive: bool
    hash_key_filter_type: int
    hash_key_filter_pattern: bytes
    sort_key_filter_type: int
    sort_key_filter_pattern: bytes
    batch_count: int
    no_value: bool
    return_expire_ts: bool
    only_return_count: bool
    last_used_ms: int


class ScannerTable:
    def __init__(self, max_scanners: int) -> None:
        self.max_scanners = max_scanners
        self._contexts: OrderedDict[int, _Context] = OrderedDict()
        self._next_id = 1

    def __len__(self) -> int:
        return len(self._contexts)

    def open(self, engine: Engine, req: Any, epoch_now: int, options: Any, *, now_ms: int) -> Any:
        response = rrdb.scan_response(error=RocksStatus.OK, kvs=[], context_id=CONTEXT_ID_COMPLETED)
        hk_type = req.hash_key_filter_type or 0
        sk_type = req.sort_key_filter_type or 0
        if not schema.filter_valid(hk_type) or not schema.filter_valid(sk_type):
            response.error = RocksStatus.INVALID_ARGUMENT
            return response
        start = req.start_key or b""
        stop = req.stop_key or b""
        start_inclusive = bool(req.start_inclusive)
        hk_pattern = req.hash_key_filter_pattern or b""
        if hk_type == schema.FilterType.MATCH_PREFIX and hk_pattern:
            # Keys sort by hash-key length first, so a prefix can only narrow the start.
            prefix_start = schema.hash_key_prefix(hk_pattern)
            if prefix_start > start:
                start, start_inclusive = prefix_start, True
        c = (start > stop) - (start < stop)
        if c > 0 or (c == 0 and not (start_inclusive and req.stop_inclusive)):
            return response
        batch_size = req.batch_size if req.batch_size and req.batch_size > 0 else INT_MAX
        ctx = _Context(
            iterator=engine.iterator(),
            stop=stop,
            stop_inclusive=bool(req.stop_inclusive),
            hash_key_filter_type=hk_type,
            hash_key_filter_pattern=hk_pattern,
            sort_key_filter_type=sk_type,
            sort_key_filter_pattern=req.sort_key_filter_pattern or b"",
            batch_count=min(batch_size, options.rocksdb_max_iteration_count),
            no_value=bool(req.no_value),
            return_expire_ts=bool(req.return_expire_ts),
            only_return_count=bool(req.only_return_count),
            last_used_ms=now_ms,
        )
        ctx.iterator.seek(start)
        if not start_inclusive and ctx.iterator.valid() and ctx.iterator.key() == start:
            ctx.iterator.next()
        return self._run(ctx, None, response, epoch_now, options)

    def next_batch(self, context_id: int, epoch_now: int, options: Any, *, now_ms: int) -> Any:
        response = rrdb.scan_response(error=RocksStatus.OK, kvs=[], context_id=CONTEXT_ID_COMPLETED)
        ctx = self._contexts.pop(context_id, None)
        if ctx is None:
            response.error = RocksStatus.NOT_FOUND
            response.context_id = CONTEXT_ID_NOT_EXIST
            return response
        ctx.last_used_ms = now_ms
        return self._run(ctx, context_id, response, epoch_now, options)

    def _run(
        self, ctx: _Context, context_id: int | None, response: Any, epoch_now: int, options: Any
    ) -> Any:
        it = ctx.iterator
        limiter = Limiter(ctx.batch_count, INT_MAX, options.rocksdb_iteration_threshold_time_ms)
        complete = False
        count = 0
        while it.valid() and limiter.valid():
            key = it.key()
            c = (key > ctx.stop) - (key < ctx.stop)
            if c > 0 or (c == 0 and not ctx.stop_inclusive):
                complete = True
                break
            limiter.count += 1
            if key and self._wanted(ctx, key, it.value(), epoch_now):
                count += 1
                if not ctx.only_return_count:
                    response.kvs.append(self._kv(ctx, key, it.value()))
            if c == 0:
                complete = True
                break
            it.next()
        if ctx.only_return_count:
            response.kv_count = count
        if limiter.timed_out:
            response.error = RocksStatus.INCOMPLETE
        elif it.valid() and not complete:
            if context_id is None:
                context_id = self._next_id
                self._next_id += 1
            self._contexts[context_id] = ctx
            response.context_id = context_id
            self._evict_over_limit()
            return response
        ctx.iterator = None
        del it
        return response

    @staticmethod
    def _wanted(ctx: _Context, key: bytes, value: bytes, epoch_now: int) -> bool:
        if not schema.is_live(value, epoch_now):
            return False
        if ctx.hash_key_filter_type or ctx.sort_key_filter_type:
            hash_key, sort_key = schema.decode_key(key)
            if not schema.filter_match(
                ctx.hash_key_filter_type, ctx.hash_key_filter_pattern, hash_key
            ):
                return False
            if not schema.filter_match(
                ctx.sort_key_filter_type, ctx.sort_key_filter_pattern, sort_key
            ):
                return False
        return True

    @staticmethod
    def _kv(ctx: _Context, key: bytes, value: bytes) -> Any:
        kv = rrdb.key_value(key=key, value=b"" if ctx.no_value else schema.value_data(value))
        if ctx.return_expire_ts:
            kv.expire_ts_seconds = schema.value_expire_ts(value)
        return kv

    def drop(self, context_id: int) -> None:
        ctx = self._contexts.pop(context_id, None)
        if ctx is not None:
            ctx.iterator = None

    def expire(self, now_ms: int, idle_ms: int) -> int:
        stale = [cid for cid, ctx in self._contexts.items() if now_ms - ctx.last_used_ms > idle_ms]
        for cid in stale:
            self.drop(cid)
        return len(stale)

    def _evict_over_limit(self) -> None:
        while len(self._contexts) > self.max_scanners:
            _, ctx = self._contexts.popitem(last=False)
            ctx.iterator = None

    def clear(self) -> None:
        for ctx in self._contexts.values():
            ctx.iterator = None
        self._contexts.clear()
