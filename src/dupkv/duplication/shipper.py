"""Ships one partition's writes to one remote cluster (asyncio shell around `Pipeline`).

A `Duplicator` owns: the remote table's route (query_cfg on the remote meta servers, from
`[pegasus.clusters]`), a plog reader, the pipeline core, and the tasks that carry out its
actions. It wakes when the partition commits new writes, when a load or an RPC finishes,
or when the core asks for a timer. Stopping it (pause, remove, primary moved, shutdown)
cancels everything in flight; whatever was shipped but not yet confirmed is shipped again
by the next duplicator, which last-writer-wins makes harmless.
"""

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dupkv.base.errors import CorruptLog, DupkvError, ErrorCode, RocksStatus
from dupkv.duplication.pipeline import Batch, Entry, Heartbeat, Limits, Load, Pipeline, Send, WakeAt
from dupkv.duplication.status import FailMode
from dupkv.duplication.wire import encode_duplicate_args
from dupkv.rpc.client import ConnectionPool
from dupkv.rpc.idl_meta import meta
from dupkv.rpc.ids import unpack_address
from dupkv.storage.mutation import SHIPPABLE_CODES, decode_payload
from dupkv.storage.plog import LogTruncated, PlogReader

log = logging.getLogger(__name__)

DUPLICATE = "RPC_RRDB_RRDB_DUPLICATE"
QUERY_CFG = "RPC_CM_QUERY_PARTITION_CONFIG_BY_INDEX"
ROUTE_REFRESH_MIN_MS = 200
# A new duplication ships writes from this long before it was added: the replica learns of
# it a sync period later, and meta and replica clocks may differ a little.
START_SLACK_MS = 10_000
LOAD_RETRY_MS = 1000
# Loads of fewer decrees than this (and at most this many bytes) run on the event loop.
INLINE_LOAD_DECREES = 256
INLINE_LOAD_BYTES = 256 << 10


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Route:
    app_id: int
    partition_count: int
    primaries: list[str | None]


class RemoteTable:
    """The remote table's partition map, refreshed on demand (at most every 200 ms)."""

    def __init__(
        self,
        pool: ConnectionPool,
        metas: list[str],
        app_name: str,
        address_map: dict[str, str] | None = None,
    ) -> None:
        self.pool = pool
        self.metas = metas
        self.app_name = app_name
        self.address_map = address_map or {}
        self.route: Route | None = None
        self._refreshed_ms = 0
        self._lock = asyncio.Lock()

    async def refresh(self, *, force: bool = False) -> Route:
        async with self._lock:
            if self.route is not None and not force:
                return self.route
            wait = self._refreshed_ms + ROUTE_REFRESH_MIN_MS - now_ms()
            if wait > 0 and self.route is not None:
                await asyncio.sleep(wait / 1000)
            self._refreshed_ms = now_ms()
            last = ErrorCode.NETWORK_FAILURE
            for address in self.metas:
                request = meta.query_cfg_request(app_name=self.app_name, partition_indices=[])
                err, resp = await self.pool.call(address, QUERY_CFG, request, timeout_ms=3000)
                if err == ErrorCode.OK and resp.err == ErrorCode.OK:
                    primaries = [unpack_address(p.primary or 0) for p in resp.partitions]
                    self.route = Route(
                        resp.app_id,
                        resp.partition_count,
                        [self.address_map.get(a, a) if a else a for a in primaries],
                    )
                    return self.route
                last = resp.err if err == ErrorCode.OK else err
            raise DupkvError(last, f"cannot read the route of {self.app_name} from {self.metas}")


@dataclass
class DupTarget:
    dupid: int
    remote_cluster: str
    remote_app_name: str
    remote_metas: list[str]
    address_map: dict[str, str] | None = None  # [duplication.address_map]


class Duplicator:
    def __init__(
        self,
        *,
        partition: Any,  # dupkv.replica.partition.Partition
        commit_signal: Callable[[asyncio.Event], Callable[[], None]],
        target: DupTarget,
        cluster_id: int,
        pool: ConnectionPool,
        limits: Limits,
        fail_mode: int,
        confirmed_decree: int,
        create_ts_ms: int,
        rpc_timeout_ms: int,
        metrics: Any,
    ) -> None:
        self.partition = partition
        self.target = target
        self.cluster_id = cluster_id
        self.pool = pool
        self.limits = limits
        self.fail_mode = fail_mode
        self.confirmed_decree = confirmed_decree
        self.create_ts_ms = create_ts_ms
        self.rpc_timeout_ms = rpc_timeout_ms
        self.metrics = metrics
        self.remote = RemoteTable(
            pool, target.remote_metas, target.remote_app_name, target.address_map
        )
        self.pipeline: Pipeline | None = None
        self.start_decree = 0
        self._commit_signal = commit_signal
        self._wake = asyncio.Event()
        self._reader: PlogReader | None = None
        self._rng = random.Random()
        self._load_errors = 0
        self._task: asyncio.Task[None] | None = None
        self.last_error = ""

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"dup-{self.target.dupid}-{self.partition.gpid}"
        )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def crash(self) -> BaseException | None:
        """The exception that ended the duplicator's task, if it died (not if stopped)."""
        task = self._task
        if task is None or not task.done() or task.cancelled():
            return None
        return task.exception()

    @property
    def shipped_decree(self) -> int:
        """The decree up to which the remote acknowledged every write (confirmed if unknown)."""
        if self.pipeline is None:
            return self.confirmed_decree
        return max(self.pipeline.shipped_decree, self.confirmed_decree)

    def set_fail_mode(self, fail_mode: int) -> None:
        self.fail_mode = fail_mode
        if self.pipeline is not None:
            self.pipeline.set_fail_mode(fail_mode)

    # -- the loop ----------------------------------------------------------------------

    async def _run(self) -> None:
        route = await self._until_ok(self.remote.refresh)
        self.start_decree = await asyncio.to_thread(self._start_decree)
        log.info(
            "dup %d %s -> %s.%s: shipping from decree %d (remote has %d partitions)",
            self.target.dupid,
            self.partition.gpid,
            self.target.remote_cluster,
            self.target.remote_app_name,
            self.start_decree,
            route.partition_count,
        )
        self.pipeline = Pipeline(
            self.start_decree, route.partition_count, self.limits, self.fail_mode
        )
        self._reader = self.partition.plog.reader(self.start_decree)
        unsubscribe = self._commit_signal(self._wake)
        try:
            async with asyncio.TaskGroup() as tg:
                while True:
                    timeout = self._step(tg)
                    try:
                        async with asyncio.timeout(timeout):
                            await self._wake.wait()
                    except TimeoutError:
                        pass
                    self._wake.clear()
        finally:
            unsubscribe()

    async def _until_ok(self, call: Callable[[], Any]) -> Any:
        delay = 0.1
        while True:
            try:
                return await call()
            except DupkvError as e:
                self.last_error = str(e)
                log.warning("dup %d %s: %s; retrying", self.target.dupid, self.partition.gpid, e)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.limits.backoff_max_ms / 1000)

    def _step(self, tg: asyncio.TaskGroup) -> float:
        """Carry out the pipeline's actions; returns how long to sleep at most (seconds)."""
        pipeline = self.pipeline
        assert pipeline is not None
        now = now_ms()
        timeout = 1.0
        for action in pipeline.poll(now, self.partition.last_committed_decree):
            if isinstance(action, Send):
                tg.create_task(self._send(action.batch))
            elif isinstance(action, Load):
                tg.create_task(self._load(action))
            elif isinstance(action, Heartbeat):
                tg.create_task(self._heartbeat(action.remote_pidx))
            elif isinstance(action, WakeAt):
                timeout = min(timeout, max(0.0, (action.at_ms - now) / 1000))
        self.metrics.pending.set(
            pipeline.pending_writes()
            + max(0, self.partition.last_committed_decree - pipeline.next_load + 1)
        )
        return timeout

    # -- loading -----------------------------------------------------------------------

    def _start_decree(self) -> int:
        """Where shipping starts: after the confirmed decree, or for a new duplication at
        the first write made since shortly before it was added."""
        if self.confirmed_decree >= 0:
            return self.confirmed_decree + 1
        plog = self.partition.plog
        since_us = (self.create_ts_ms - START_SLACK_MS) * 1000
        first = max(plog.first_decree, 1)
        last = self.partition.last_committed_decree
        with plog.reader(first) as reader:
            while reader.next_decree <= last:
                records = reader.read(1 << 20, last)
                if not records:
                    break
                for decree, payload in records:
                    if decode_payload(decree, payload).timestamp_us >= since_us:
                        return decree
        return last + 1

    async def _load(self, action: Load) -> None:
        pipeline = self.pipeline
        assert pipeline is not None and self._reader is not None
        committed = self.partition.last_committed_decree
        try:
            if committed - action.from_decree < INLINE_LOAD_DECREES:
                # A few fresh writes (live shipping): read them on the loop; a hop to a
                # worker thread and back would cost more than the read.
                entries, upto, nbytes, count = self._read(
                    action.from_decree, INLINE_LOAD_BYTES, committed
                )
            else:
                entries, upto, nbytes, count = await asyncio.to_thread(
                    self._read, action.from_decree, action.max_bytes, committed
                )
        except (CorruptLog, LogTruncated, OSError) as e:
            pipeline.load_failed()
            self._load_failed(e)
            await asyncio.sleep(LOAD_RETRY_MS / 1000)
            self._wake.set()
            return
        self._load_errors = 0
        self.metrics.log_read_bytes.inc(nbytes)
        self.metrics.log_read_mutations.inc(count)
        pipeline.loaded(entries, upto)
        self._wake.set()

    def _read(
        self, from_decree: int, max_bytes: int, committed: int
    ) -> tuple[list[Entry], int, int, int]:
        reader = self._reader
        assert reader is not None
        assert reader.next_decree == from_decree, (reader.next_decree, from_decree)
        records = reader.read(max_bytes, committed)
        entries: list[Entry] = []
        nbytes = 0
        for decree, payload in records:
            nbytes += len(payload)
            mutation = decode_payload(decree, payload)
            for code, raw in mutation.updates:
                # DUPLICATE writes came from another cluster: never ship them again.
                if code in SHIPPABLE_CODES:
                    entries.append(Entry(decree, mutation.timestamp_us, code, raw))
        upto = records[-1][0] if records else from_decree - 1
        return entries, upto, nbytes, len(records)

    def _load_failed(self, error: Exception) -> None:
        self._load_errors += 1
        self.metrics.load_file_failed.inc()
        self.last_error = f"cannot read the plog: {error}"
        if (
            self.fail_mode == FailMode.FAIL_SKIP
            and self._load_errors >= self.limits.skip_after_attempts
        ):
            reader = self._reader
            assert reader is not None and self.pipeline is not None
            try:
                if isinstance(error, LogTruncated):
                    first, last = reader.next_decree, error.first_available - 1
                    reader.close()
                    self._reader = self.partition.plog.reader(error.first_available)
                else:
                    first, last = reader.skip_corrupt()
            except (CorruptLog, OSError) as e:
                log.error("dup %d %s: cannot skip: %s", self.target.dupid, self.partition.gpid, e)
                return
            self.pipeline.loaded([], last)
            self.metrics.skipped_writes.inc(last - first + 1)
            self._load_errors = 0
            log.error(
                "dup %d %s: FAIL_SKIP skipped decrees %d..%d that could not be read: %s",
                self.target.dupid,
                self.partition.gpid,
                first,
                last,
                error,
            )
        else:
            log.error(
                "dup %d %s: %s (attempt %d, %s)",
                self.target.dupid,
                self.partition.gpid,
                self.last_error,
                self._load_errors,
                FailMode(self.fail_mode).name,
            )

    # -- shipping ----------------------------------------------------------------------

    async def _send(self, batch: Batch) -> None:
        pipeline = self.pipeline
        assert pipeline is not None
        error = await self._call(
            batch.remote_pidx, encode_duplicate_args(batch.entries, self.cluster_id)
        )
        now = now_ms()
        if error is None:
            lags = pipeline.acked(batch.batch_id, now)
            m = self.metrics
            m.shipped_ops.inc()
            m.shipped_bytes.inc(batch.size)
            threshold = m.lagging_threshold_ms
            for lag in lags:
                m.time_lag.observe(lag)
                if lag > threshold:
                    m.lagging_writes.inc()
        else:
            self.metrics.failed_ops.inc()
            self.last_error = error
            skipped = pipeline.failed(batch.batch_id, now, self._rng.random())
            if skipped is not None:
                self.metrics.skipped_writes.inc(skipped.writes)
                log.error(
                    "dup %d %s: FAIL_SKIP skipped %d writes, decrees %d..%d, after %d attempts: %s",
                    self.target.dupid,
                    self.partition.gpid,
                    skipped.writes,
                    skipped.first_decree,
                    skipped.last_decree,
                    batch.attempts,
                    error,
                )
            elif batch.attempts in (1, 10) or batch.attempts % 100 == 0:
                log.warning(
                    "dup %d %s: shipping to %s partition %d failed (attempt %d): %s",
                    self.target.dupid,
                    self.partition.gpid,
                    self.target.remote_cluster,
                    batch.remote_pidx,
                    batch.attempts,
                    error,
                )
        self._wake.set()

    async def _heartbeat(self, remote_pidx: int) -> None:
        pipeline = self.pipeline
        assert pipeline is not None
        started = now_ms()
        error = await self._call(remote_pidx, encode_duplicate_args([], self.cluster_id))
        if error is None:
            self.metrics.time_lag.observe(now_ms() - started)
        pipeline.heartbeat_done(now_ms())
        self._wake.set()

    async def _call(self, remote_pidx: int, args: bytes) -> str | None:
        """Send one DUPLICATE (its args struct, encoded); None on success, else a
        description of the failure."""
        route = self.remote.route
        if route is None or route.primaries[remote_pidx] is None:
            await self._refresh_route()
            route = self.remote.route
            if route is None or route.primaries[remote_pidx] is None:
                return f"remote partition {remote_pidx} has no primary"
        address = route.primaries[remote_pidx]
        assert address is not None
        err, resp = await self.pool.call_encoded(
            address,
            DUPLICATE,
            args,
            app_id=route.app_id,
            partition_index=remote_pidx,
            timeout_ms=self.rpc_timeout_ms,
        )
        if err != ErrorCode.OK:
            if err != ErrorCode.TIMEOUT:
                await self._refresh_route()
            return f"{err} from {address}"
        if resp.error not in (None, RocksStatus.OK):
            return f"remote rejected the writes (error {resp.error}): {resp.error_hint}"
        return None

    async def _refresh_route(self) -> None:
        try:
            await self.remote.refresh(force=True)
        except DupkvError as e:
            self.last_error = str(e)
