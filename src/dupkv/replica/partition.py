"""One partition: the write path (plog + RocksDB) and the read path of every rrdb operation.

A shell around two pieces of IO, the engine (RocksDB) and the plog, with the semantics of
Pegasus's operations kept in small pure helpers (`dupkv.replica.atomic`,
`dupkv.storage.schema`). Time comes from an injected clock so tests can fix it.

Write path, in three steps so an asyncio shell can group-commit (see `writer.py`):

1. `stage(ops)` evaluates each write in order against RocksDB plus the writes staged before
   it in the same group, assigns each a decree and a timestamp, and encodes the plog
   records. Nothing is visible yet.
2. `persist(staged)` appends the whole group to the plog in one write and fsyncs it once
   (blocking: the shell runs it in a thread while no other group is staged).
3. `commit(staged)` applies the group to RocksDB in one write batch and returns the answers.

Every write that is logged is replayed on open from the RocksDB apply marker + 1, with the
mutation's own timestamp standing in for "now", so replay reproduces exactly the state the
clients were told about. Atomic writes are logged as the puts/deletes they produced
("idempotent mode", always on duplicated tables) or as the request itself (Pegasus's
default); either way the plog replays deterministically.
"""

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from dupkv.base.errors import CorruptLog, DupkvError, ErrorCode, RocksStatus
from dupkv.base.timeutil import EPOCH_BEGIN, UniqueClock, make_timetag
from dupkv.duplication.wire import parse_update_request
from dupkv.replica import atomic, reads
from dupkv.replica.scanner import ScannerTable
from dupkv.rpc import codes
from dupkv.rpc.replies import ReadResponse
from dupkv.rpc.thrift import decode_blob, deserialize, encode_blob, rrdb, serialize
from dupkv.storage import schema
from dupkv.storage.engine import Engine
from dupkv.storage.mutation import SHIPPABLE_CODES, TaskCode, decode_payload, encode_payload
from dupkv.storage.plog import Plog

log = logging.getLogger(__name__)

UT_PUT = 0
UT_INCR = 1
UT_CHECK_AND_SET = 2
UT_CHECK_AND_MUTATE_PUT = 3
UT_CHECK_AND_MUTATE_REMOVE = 4

# Replay commits to RocksDB in batches of about this many keys (a write holds the GIL).
REPLAY_BATCH_KEYS = 1000


@dataclass
class PartitionOptions:
    """Per-partition settings; names follow Pegasus's config keys where one exists."""

    app_id: int = 0
    partition_index: int = 0
    server: str = ""
    cluster_id: int = 0  # this cluster's [duplication-group] id, 0 when not configured
    dup_group_ids: frozenset[int] = frozenset()  # cluster ids accepted in DUPLICATE
    dup_ignore_other_cluster_ids: bool = False  # accept any id but our own
    default_ttl: int = 0  # table env `default_ttl`, seconds
    duplicating: bool = False  # table has duplications: deletes leave tombstones
    atomic_idempotent: bool = False  # log atomic writes as the writes they produced
    plog_segment_bytes: int = 32 << 20
    plog_force_flush: bool = True  # fsync every group before acknowledging it
    rocksdb_multi_get_max_iteration_count: int = 3000
    rocksdb_multi_get_max_iteration_size: int = 30 << 20
    rocksdb_max_iteration_count: int = 1000
    rocksdb_iteration_threshold_time_ms: int = 30000
    scanner_idle_ms: int = 300_000
    max_scanners: int = 1000
    block_cache_bytes: int = 64 << 20


class WriteOp(NamedTuple):
    """A client write: its task code, the decoded argument, and its raw Thrift bytes if known."""

    code: str
    request: Any
    raw: bytes | None = None


class _Logged(NamedTuple):
    code: str
    request: Any
    raw: bytes


@dataclass
class Staged:
    """A group evaluated by `stage`, waiting to be persisted and committed."""

    records: list[tuple[int, bytes]]
    writes: dict[bytes, bytes | None]
    responses: list[Any]
    last_decree: int
    last_timestamp_us: int


class Overlay:
    """RocksDB as seen by a group being staged: its own earlier writes first, then those of
    the previous group if that one is staged but not yet committed (`base`)."""

    __slots__ = ("_engine", "_base", "writes")

    def __init__(self, engine: Engine, base: dict[bytes, bytes | None] | None = None) -> None:
        self._engine = engine
        self._base = base
        self.writes: dict[bytes, bytes | None] = {}

    def get(self, key: bytes) -> bytes | None:
        if key in self.writes:
            return self.writes[key]
        if self._base is not None and key in self._base:
            return self._base[key]
        return self._engine.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        self.writes[key] = value

    def delete(self, key: bytes) -> None:
        self.writes[key] = None


class PartitionBroken(DupkvError):
    """The plog could not be written; the partition refuses writes until reopened."""


def _epoch_of(timestamp_us: int) -> int:
    return timestamp_us // 1_000_000 - EPOCH_BEGIN


def _valid_hash_key(hash_key: bytes) -> bool:
    return len(hash_key) <= schema.MAX_HASH_KEY_LEN


def _valid_key(key: bytes) -> bool:
    """An encoded key whose header fits and whose hash key is under 65535 bytes."""
    if len(key) < 2:
        return False
    n = (key[0] << 8) | key[1]
    return n <= schema.MAX_HASH_KEY_LEN and 2 + n <= len(key)


class Partition:
    """A partition's data and log. Not thread-safe: one event loop drives it."""

    def __init__(
        self,
        path: str | Path,
        options: PartitionOptions | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.options = options or PartitionOptions()
        self._clock = clock
        self.broken: str | None = None
        self._engine = Engine(self.path / "rdb", block_cache_bytes=self.options.block_cache_bytes)
        self.plog = Plog.open(
            self.path / "plog",
            segment_bytes=self.options.plog_segment_bytes,
            fsync=self.options.plog_force_flush,
        )
        self._ts = UniqueClock(self._engine.last_timestamp_us)
        self.scanners = ScannerTable(self.options.max_scanners)
        self.replayed = self._replay()
        self.last_committed_decree = self._engine.applied_decree
        # The decree of the last staged group; equal to last_committed_decree when idle.
        self._staged_decree = self.last_committed_decree

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def gpid(self) -> str:
        return f"{self.options.app_id}.{self.options.partition_index}"

    def _replay(self) -> int:
        start = self._engine.applied_decree + 1
        if self.plog.last_decree and self.plog.last_decree < self._engine.applied_decree:
            raise CorruptLog(
                f"{self.path}: the plog ends at decree {self.plog.last_decree} but RocksDB "
                f"holds writes up to {self._engine.applied_decree}; the log tail is lost"
            )
        count = 0
        ov = Overlay(self._engine)
        last_decree = 0
        for decree, payload in self.plog.replay(start):
            mutation = decode_payload(decree, payload)
            self._ts.observe(mutation.timestamp_us)
            for code, raw in mutation.updates:
                self._apply(ov, code, self._decode(code, raw), mutation.timestamp_us)
            last_decree = decree
            count += 1
            if len(ov.writes) >= REPLAY_BATCH_KEYS:
                self._engine.write(ov.writes, last_decree, self._ts.last_us)
                ov = Overlay(self._engine)
        if count:
            self._engine.write(ov.writes, last_decree, self._ts.last_us)
            log.info("%s: replayed %d mutations up to decree %d", self.gpid, count, last_decree)
        return count

    def flush(self) -> int:
        """Flush RocksDB (blocking); returns the decree now durable without the plog."""
        return self._engine.flush()

    def gc_plog(self, floor_decree: int | None = None) -> list[Path]:
        """Remove plog segments below both the flushed decree and the caller's floor."""
        bound = self._engine.last_flushed_decree
        if floor_decree is not None:
            bound = min(bound, floor_decree)
        return self.plog.gc(bound)

    @property
    def last_flushed_decree(self) -> int:
        return self._engine.last_flushed_decree

    def estimate_num_keys(self) -> int:
        return self._engine.estimate_num_keys()

    def close(self) -> None:
        """Flush and close; the partition must not be used afterwards."""
        self.scanners.clear()
        if self.broken is None:
            self._engine.flush()
        self._engine.close()
        self.plog.close()

    # -- write path --------------------------------------------------------------------

    def write(self, ops: Iterable[WriteOp]) -> list[Any]:
        """Stage, persist and commit a group synchronously (tests, tools, replay)."""
        staged = self.stage(list(ops))
        self.persist(staged)
        return self.commit(staged)

    def stage(self, ops: list[WriteOp], after: Staged | None = None) -> Staged:
        """Evaluate a group. `after` is the previous group when it is staged but not yet
        committed (pipelined group commit): this group sees its writes."""
        if self.broken is not None:
            raise PartitionBroken(ErrorCode.INVALID_STATE, self.broken)
        ov = Overlay(self._engine, after.writes if after is not None else None)
        now_us = int(self._clock() * 1_000_000)
        decree = self._staged_decree
        records: list[tuple[int, bytes]] = []
        responses: list[Any] = []
        next_ts = self._ts.next
        apply = self._apply
        for op in ops:
            ts = next_ts(now_us)
            handler = _STAGE.get(op.code)
            if handler is None:
                raise DupkvError(ErrorCode.HANDLER_NOT_FOUND, f"{op.code} is not a write")
            response, logged = handler(self, ov, op, ts)
            if logged is not None:
                decree += 1
                for item in logged:
                    apply(ov, item.code, item.request, ts)
                records.append((decree, encode_payload(ts, logged)))
                if op.code != TaskCode.DUPLICATE:
                    response.decree = decree
            responses.append(response)
        self._staged_decree = decree
        return Staged(records, ov.writes, responses, decree, self._ts.last_us)

    def persist(self, staged: Staged, *, sync: bool = True) -> None:
        """Append the group's records to the plog and fsync them (blocking; run in a worker
        thread). With sync=False the replica server's shared log holds them fsynced
        already, and the plog counts them durable without an fsync of its own."""
        if not staged.records:
            return
        try:
            self.plog.append(staged.records)
            if sync:
                self.plog.sync()
            else:
                self.plog.mark_durable()
        except OSError as e:
            raise self.fail_log(f"plog write failed: {e}") from e

    def fail_log(self, why: str) -> PartitionBroken:
        """Refuse writes from now on (a log write failed); returns the error to raise."""
        self.broken = why
        log.error("%s: %s; refusing writes until reopened", self.gpid, why)
        return PartitionBroken(ErrorCode.INVALID_STATE, why)

    def commit(self, staged: Staged) -> list[Any]:
        if staged.records or staged.writes:
            self._engine.write(staged.writes, staged.last_decree, staged.last_timestamp_us)
        self.last_committed_decree = staged.last_decree
        return staged.responses

    # Staging: validate, evaluate atomics, decide what to log. Returns (response, logged);
    # logged None means "answered without a decree", () means an empty write.

    def _response(self, cls: Any, error: int, **fields: Any) -> Any:
        """A response struct carrying this partition's identity."""
        o = self.options
        return cls(
            error=error,
            app_id=o.app_id,
            partition_index=o.partition_index,
            server=o.server,
            **fields,
        )

    def _origin(self, response: Any) -> Any:
        o = self.options
        response.app_id = o.app_id
        response.partition_index = o.partition_index
        response.server = o.server
        return response

    def _update_response(self, error: int) -> Any:
        o = self.options  # positional: this is the hottest response of all
        return rrdb.update_response(error, o.app_id, o.partition_index, 0, o.server)

    def _stage_put(self, ov: Overlay, op: WriteOp, ts: int) -> tuple[Any, list[_Logged] | None]:
        if not _valid_key(op.request.key):
            return self._update_response(RocksStatus.INVALID_ARGUMENT), []
        return self._update_response(RocksStatus.OK), [_logged(op)]

    def _stage_multi_put(
        self, ov: Overlay, op: WriteOp, ts: int
    ) -> tuple[Any, list[_Logged] | None]:
        req = op.request
        if not req.kvs or not _valid_hash_key(req.hash_key):
            return self._update_response(RocksStatus.INVALID_ARGUMENT), []
        return self._update_response(RocksStatus.OK), [_logged(op)]

    def _stage_remove(self, ov: Overlay, op: WriteOp, ts: int) -> tuple[Any, list[_Logged] | None]:
        if not _valid_key(op.request):
            return self._update_response(RocksStatus.INVALID_ARGUMENT), []
        return self._update_response(RocksStatus.OK), [_logged(op)]

    def _stage_multi_remove(
        self, ov: Overlay, op: WriteOp, ts: int
    ) -> tuple[Any, list[_Logged] | None]:
        req = op.request
        if not req.sort_keys or not _valid_hash_key(req.hash_key):
            return self._response(
                rrdb.multi_remove_response, RocksStatus.INVALID_ARGUMENT, count=0, decree=0
            ), []
        response = self._response(
            rrdb.multi_remove_response, RocksStatus.OK, count=len(req.sort_keys), decree=0
        )
        return response, [_logged(op)]

    def _stage_atomic(self, ov: Overlay, op: WriteOp, ts: int) -> tuple[Any, list[_Logged] | None]:
        response, puts = self._evaluate_atomic(ov, op.code, op.request, ts)
        if puts is None:
            # A failed check: Pegasus's default consumes a decree with an empty write; in
            # idempotent mode the client is answered without one.
            return response, (None if self._translate_atomics else [])
        if self._translate_atomics:
            return response, [_Logged(TaskCode.PUT, p, serialize(p)) for p in puts]
        return response, [_logged(op)]

    @property
    def _translate_atomics(self) -> bool:
        return self.options.atomic_idempotent or self.options.duplicating

    def _stage_duplicate(
        self, ov: Overlay, op: WriteOp, ts: int
    ) -> tuple[Any, list[_Logged] | None]:
        hint, shipped = self._check_duplicate(op.request)
        if hint:
            return rrdb.duplicate_response(
                error=RocksStatus.INVALID_ARGUMENT, error_hint=hint
            ), None
        # Apply works on the writes decoded here; the plog keeps the request's raw bytes.
        logged = _logged(op)
        return rrdb.duplicate_response(error=RocksStatus.OK), [logged._replace(request=shipped)]

    def _check_duplicate(self, req: Any) -> tuple[str, list[tuple[Any, Any]]]:
        """Why a DUPLICATE request must be refused as a whole ("" to accept it), and its
        entries paired with their decoded writes."""
        if not req.entries:
            return "duplicate request carries no entries", []
        own = self.options.cluster_id
        shipped = []
        for entry in req.entries:
            cid = entry.cluster_id or 0
            if cid == own:
                return f"self-duplicating: entry from cluster id {cid}, which is this cluster", []
            if (
                cid not in self.options.dup_group_ids
                and not self.options.dup_ignore_other_cluster_ids
            ):
                return f"request cluster id {cid} is unconfigured in [duplication-group]", []
            if entry.task_code not in SHIPPABLE_CODES:
                return f"unrecognized task code {entry.task_code!r} in a duplicate entry", []
            if entry.timestamp is None or entry.timestamp <= 0:
                return "duplicate entry has no timestamp", []
            try:
                inner = _decode_shipped(entry.task_code, entry.raw_message or b"")
            except ValueError as e:
                return f"malformed {entry.task_code} in a duplicate entry: {e}", []
            if not _inner_valid(entry.task_code, inner):
                return f"invalid {entry.task_code} in a duplicate entry", []
            shipped.append((entry, inner))
        return "", shipped

    # Evaluation of atomic writes against the overlay. Returns the client's response and
    # the idempotent puts that carry out the write, or None when nothing is written.

    def _read_live(self, ov: Overlay, key: bytes, epoch_now: int) -> tuple[bytes | None, int]:
        value = ov.get(key)
        if value is None or not schema.is_live(value, epoch_now):
            return None, 0
        return schema.value_data(value), schema.value_expire_ts(value)

    def _evaluate_atomic(
        self, ov: Overlay, code: str, req: Any, ts: int
    ) -> tuple[Any, list[Any] | None]:
        epoch_now = _epoch_of(ts)
        if code == TaskCode.INCR:
            if not _valid_key(req.key):
                return self._response(
                    rrdb.incr_response, RocksStatus.INVALID_ARGUMENT, new_value=0, decree=0
                ), None
            old, old_expire = self._read_live(ov, req.key, epoch_now)
            ri = atomic.evaluate_incr(old, old_expire, req.increment, req.expire_ts_seconds or 0)
            response = self._response(
                rrdb.incr_response, ri.error, new_value=ri.new_value, decree=0
            )
            if ri.produced is None:
                return response, None
            _, value, expire_ts = ri.produced.puts[0]
            return response, [_put(req.key, value, expire_ts, UT_INCR)]
        hash_key = req.hash_key
        cls = (
            rrdb.check_and_set_response
            if code == TaskCode.CHECK_AND_SET
            else rrdb.check_and_mutate_response
        )
        if not _valid_hash_key(hash_key):
            return self._response(cls, RocksStatus.INVALID_ARGUMENT, decree=0), None
        check_key = schema.encode_key(hash_key, req.check_sort_key)
        current, _ = self._read_live(ov, check_key, epoch_now)
        r: atomic.CheckResult
        if code == TaskCode.CHECK_AND_SET:
            set_sort_key = req.set_sort_key if req.set_diff_sort_key else req.check_sort_key
            r = atomic.evaluate_check_and_set(
                current,
                req.check_type,
                req.check_operand or b"",
                set_sort_key,
                req.set_value or b"",
                req.set_expire_ts_seconds or 0,
            )
            put_type = UT_CHECK_AND_SET
        else:
            mutations = [
                (m.operation, m.sort_key or b"", m.value or b"", m.set_expire_ts_seconds or 0)
                for m in (req.mutate_list or [])
            ]
            r = atomic.evaluate_check_and_mutate(
                current, req.check_type, req.check_operand or b"", mutations
            )
            put_type = UT_CHECK_AND_MUTATE_PUT
        response = self._response(cls, r.error, decree=0)
        if req.return_check_value:
            response.check_value_returned = True
            response.check_value_exist = r.check_value_exist
            if r.check_value_exist:
                response.check_value = r.check_value
        if r.produced is None:
            return response, None
        puts = [
            _put(schema.encode_key(hash_key, sk), value, expire_ts, put_type)
            for sk, value, expire_ts in r.produced.puts
        ]
        puts += [
            _put(schema.encode_key(hash_key, sk), b"", 0, UT_CHECK_AND_MUTATE_REMOVE)
            for sk in r.produced.deletes
        ]
        return response, puts

    # Apply: the one place a logged update changes RocksDB, shared by staging and replay.

    def _apply(self, ov: Overlay, code: str, req: Any, ts: int) -> None:
        if code == TaskCode.PUT:
            self._apply_put(ov, req, ts)
        elif code == TaskCode.MULTI_PUT:
            expire_ts = self._expire_ts(req.expire_ts_seconds, ts)
            tag = make_timetag(ts, self.options.cluster_id, False)
            for kv in req.kvs:
                key = schema.encode_key(req.hash_key, kv.key or b"")
                ov.put(key, schema.encode_value(expire_ts, tag, kv.value or b""))
        elif code == TaskCode.REMOVE:
            self._delete(ov, req, ts)
        elif code == TaskCode.MULTI_REMOVE:
            for sort_key in req.sort_keys:
                self._delete(ov, schema.encode_key(req.hash_key, sort_key or b""), ts)
        elif code == TaskCode.DUPLICATE:
            self._apply_duplicate(ov, req)
        elif code in (TaskCode.INCR, TaskCode.CHECK_AND_SET, TaskCode.CHECK_AND_MUTATE):
            _, puts = self._evaluate_atomic(ov, code, req, ts)
            assert puts is not None, f"{self.gpid}: a logged {code} must succeed on replay"
            for p in puts:
                self._apply_put(ov, p, ts)
        elif code != TaskCode.WRITE_EMPTY:
            raise CorruptLog(f"{self.gpid}: cannot apply task code {code}")

    def _apply_put(self, ov: Overlay, req: Any, ts: int) -> None:
        if req.type == UT_CHECK_AND_MUTATE_REMOVE:
            self._delete(ov, req.key, ts)
            return
        tag = (ts << 8) | (self.options.cluster_id << 1)  # make_timetag, inlined (hot path)
        expire_ts = self._expire_ts(req.expire_ts_seconds, ts)
        ov.writes[req.key] = schema.encode_value(expire_ts, tag, req.value or b"")

    def _expire_ts(self, expire_ts: int | None, ts: int) -> int:
        if expire_ts and expire_ts > 0:
            return expire_ts
        if self.options.default_ttl > 0:
            return _epoch_of(ts) + self.options.default_ttl
        return 0

    def _delete(self, ov: Overlay, key: bytes, ts: int) -> None:
        if self.options.duplicating:
            ov.put(key, schema.encode_tombstone(make_timetag(ts, self.options.cluster_id, True)))
        else:
            ov.delete(key)

    def _apply_duplicate(self, ov: Overlay, req: Any) -> None:
        """Apply shipped writes with last-writer-wins on (timestamp, cluster id).

        A write lands only if its timetag is greater than the stored one, whatever that
        is: live, expired or a tombstone. Deletes always leave tombstones here so that an
        older put arriving later (a retry, or the other direction of master-master) loses.
        `req` is the request (replay) or its (entry, decoded write) pairs (staging).
        """
        if isinstance(req, list):
            shipped = req
        else:
            shipped = [(e, _decode_shipped(e.task_code, e.raw_message or b"")) for e in req.entries]
        for entry, inner in shipped:
            ts, cid = entry.timestamp, entry.cluster_id
            code = entry.task_code
            if code == TaskCode.PUT:
                if inner.type == UT_CHECK_AND_MUTATE_REMOVE:
                    self._lww_delete(ov, inner.key, ts, cid)
                else:
                    self._lww_put(ov, inner.key, inner.value, inner.expire_ts_seconds, ts, cid)
            elif code == TaskCode.MULTI_PUT:
                for kv in inner.kvs:
                    key = schema.encode_key(inner.hash_key, kv.key or b"")
                    self._lww_put(ov, key, kv.value, inner.expire_ts_seconds, ts, cid)
            elif code == TaskCode.REMOVE:
                self._lww_delete(ov, inner, ts, cid)
            else:
                for sort_key in inner.sort_keys:
                    key = schema.encode_key(inner.hash_key, sort_key or b"")
                    self._lww_delete(ov, key, ts, cid)
            self._ts.observe(ts)

    def _lww_put(
        self, ov: Overlay, key: bytes, value: bytes | None, expire: int | None, ts: int, cid: int
    ) -> None:
        tag = make_timetag(ts, cid, False)
        current = ov.get(key)
        if current is not None and schema.value_timetag(current) >= tag:
            return
        ov.put(key, schema.encode_value(self._expire_ts(expire, ts), tag, value or b""))

    def _lww_delete(self, ov: Overlay, key: bytes, ts: int, cid: int) -> None:
        tag = make_timetag(ts, cid, True)
        current = ov.get(key)
        if current is not None and schema.value_timetag(current) >= tag:
            return
        ov.put(key, schema.encode_tombstone(tag))

    @staticmethod
    def _decode(code: str, raw: bytes) -> Any:
        cls = _REQUEST_TYPES.get(code)
        if cls is None:
            if code == TaskCode.WRITE_EMPTY:
                return None
            raise ValueError(f"unknown task code {code}")
        if cls is bytes:
            return decode_blob(raw)
        return deserialize(cls, raw)

    # -- read path ---------------------------------------------------------------------

    def _epoch_now(self) -> int:
        return int(self._clock()) - EPOCH_BEGIN

    def get(self, key: bytes) -> ReadResponse:
        # The value field is always sent (empty when absent): pypegasus reads it regardless.
        o = self.options
        if not _valid_key(key):
            status, data = RocksStatus.INVALID_ARGUMENT, b""
        else:
            value = self._engine.get(key)
            if value is not None and schema.is_live(value, self._epoch_now()):
                status, data = RocksStatus.OK, value[12:]
            else:
                status, data = RocksStatus.NOT_FOUND, b""
        return ReadResponse(status, data, o.app_id, o.partition_index, o.server)

    def ttl(self, key: bytes) -> Any:
        response = self._response(rrdb.ttl_response, RocksStatus.NOT_FOUND, ttl_seconds=0)
        if not _valid_key(key):
            response.error = RocksStatus.INVALID_ARGUMENT
            return response
        value = self._engine.get(key)
        now = self._epoch_now()
        if value is not None and schema.is_live(value, now):
            expire_ts = schema.value_expire_ts(value)
            response.error = RocksStatus.OK
            response.ttl_seconds = expire_ts - now if expire_ts > 0 else -1
        return response

    def batch_get(self, req: Any) -> Any:
        response = self._response(rrdb.batch_get_response, RocksStatus.OK, data=[])
        keys = req.keys or []
        if not keys or not all(_valid_hash_key(k.hash_key or b"") for k in keys):
            response.error = RocksStatus.INVALID_ARGUMENT
            return response
        encoded = [schema.encode_key(k.hash_key or b"", k.sort_key or b"") for k in keys]
        now = self._epoch_now()
        for k, value in zip(keys, self._engine.multi_get(encoded), strict=True):
            if value is not None and schema.is_live(value, now):
                response.data.append(
                    rrdb.full_data(
                        hash_key=k.hash_key, sort_key=k.sort_key, value=schema.value_data(value)
                    )
                )
        return response

    def multi_get(self, req: Any) -> Any:
        response = reads.multi_get(self._engine, req, self._epoch_now(), self.options)
        return self._origin(response)

    def sortkey_count(self, hash_key: bytes) -> Any:
        response = reads.sortkey_count(self._engine, hash_key, self._epoch_now(), self.options)
        return self._origin(response)

    def get_scanner(self, req: Any) -> Any:
        response = self.scanners.open(
            self._engine, req, self._epoch_now(), self.options, now_ms=self._now_ms()
        )
        return self._origin(response)

    def scan(self, req: Any) -> Any:
        response = self.scanners.next_batch(
            req.context_id, self._epoch_now(), self.options, now_ms=self._now_ms()
        )
        return self._origin(response)

    def clear_scanner(self, context_id: int) -> None:
        self.scanners.drop(context_id)

    def expire_scanners(self) -> int:
        return self.scanners.expire(self._now_ms(), self.options.scanner_idle_ms)

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    # -- background maintenance --------------------------------------------------------

    def sweep_expired(
        self, cursor: bytes, max_visits: int = 1000, purge_before_us: int = 0
    ) -> tuple[bytes, int]:
        """Delete expired records and old tombstones, visiting at most `max_visits` keys
        from `cursor`. Returns the cursor to continue from (b"" once the partition was
        covered) and how many records were deleted.

        Tombstones, and on a duplicating table expired records too, still decide
        last-writer-wins against writes that may yet arrive, so they go only when their
        timestamp is below `purge_before_us` (the caller's horizon: every duplication has
        shipped past it, plus a grace period). Runs on the event loop between writes, so a
        record cannot be overwritten between the check and the delete.
        """
        now = self._epoch_now()
        keep_expired = self.options.duplicating
        it = self._engine.iterator()
        it.seek(cursor or b"\x00\x00")
        doomed: list[bytes] = []
        visits = 0
        next_cursor = b""
        while it.valid():
            if visits >= max_visits:
                next_cursor = it.key()
                break
            key, value = it.key(), it.value()
            visits += 1
            if key:
                expire_ts = schema.value_expire_ts(value)
                old = (schema.value_timetag(value) >> 8) < purge_before_us
                if schema.is_tombstone(value):
                    if old:
                        doomed.append(key)
                elif 0 < expire_ts <= now and (old or not keep_expired):
                    doomed.append(key)
            it.next()
        del it
        if doomed:
            self._engine.delete_keys(doomed)
        return next_cursor, len(doomed)


_REQUEST_TYPES: dict[str, Any] = {
    TaskCode.PUT: rrdb.update_request,
    TaskCode.MULTI_PUT: rrdb.multi_put_request,
    TaskCode.REMOVE: bytes,
    TaskCode.MULTI_REMOVE: rrdb.multi_remove_request,
    TaskCode.INCR: rrdb.incr_request,
    TaskCode.CHECK_AND_SET: rrdb.check_and_set_request,
    TaskCode.CHECK_AND_MUTATE: rrdb.check_and_mutate_request,
    TaskCode.DUPLICATE: rrdb.duplicate_request,
}

_STAGE: dict[str, Callable[..., tuple[Any, list[_Logged] | None]]] = {
    TaskCode.PUT: Partition._stage_put,
    TaskCode.MULTI_PUT: Partition._stage_multi_put,
    TaskCode.REMOVE: Partition._stage_remove,
    TaskCode.MULTI_REMOVE: Partition._stage_multi_remove,
    TaskCode.INCR: Partition._stage_atomic,
    TaskCode.CHECK_AND_SET: Partition._stage_atomic,
    TaskCode.CHECK_AND_MUTATE: Partition._stage_atomic,
    TaskCode.DUPLICATE: Partition._stage_duplicate,
}


def _decode_shipped(code: str, raw: bytes) -> Any:
    """Decode a shipped write, validating its bytes first: thriftpy2 does not bounds-check,
    and a shipped write may come in rDSN's Thrift dialect (from a Pegasus cluster). Puts in
    the canonical layout take a hand-written fast path."""
    if code == TaskCode.PUT:
        put = parse_update_request(raw)
        if put is not None:
            return put
    method = codes.lookup(f"{code}")
    assert method is not None, code
    return Partition._decode(code, method.arg_raw_to(raw, to_rdsn=False))


def _inner_valid(code: str, inner: Any) -> bool:
    if code == TaskCode.PUT:
        return _valid_key(inner.key or b"")
    if code == TaskCode.REMOVE:
        return _valid_key(inner)
    if code == TaskCode.MULTI_PUT:
        return bool(inner.kvs) and _valid_hash_key(inner.hash_key or b"")
    return bool(inner.sort_keys) and _valid_hash_key(inner.hash_key or b"")


def _logged(op: WriteOp) -> _Logged:
    if op.raw is not None:
        return _Logged(op.code, op.request, op.raw)
    if isinstance(op.request, bytes):
        return _Logged(op.code, op.request, encode_blob(op.request))
    return _Logged(op.code, op.request, serialize(op.request))


def _put(key: bytes, value: bytes, expire_ts: int, put_type: int) -> Any:
    return rrdb.update_request(key=key, value=value, expire_ts_seconds=expire_ts, type=put_type)
