"""Duplication on a replica server (asyncio shell): one manager per server.

Every `[replication] duplication_sync_interval_ms` it reports each partition's shipped
decree to the meta server (`duplication_sync`) and gets back the duplications of the
tables it serves with their persisted progress. From that it starts, pauses, resumes and
stops `Duplicator`s, keeps `Partition.options.duplicating` true while a table has any
duplication, and tells the server two bounds it must respect:

- plog GC floor: never remove log above the smallest confirmed decree of any duplication of
  the table (no GC at all while a duplication's progress is unknown);
- tombstone purge horizon: tombstones (and expired records) of a duplicated table are purged
  only once every duplication has shipped past them, plus `dup_tombstone_grace_seconds`.
"""

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from dupkv.base.config import Config
from dupkv.base.errors import BadInput, DupkvError, ErrorCode
from dupkv.duplication.pipeline import Limits
from dupkv.duplication.shipper import Duplicator, DupTarget
from dupkv.duplication.status import DupStatus, FailMode
from dupkv.metrics import Unit
from dupkv.rpc.idl_meta import dup
from dupkv.rpc.ids import pack_address, pack_gpid

log = logging.getLogger(__name__)

DS_LOG = DupStatus.DS_LOG
DS_PAUSE = DupStatus.DS_PAUSE
SYNC_TIMEOUT_MS = 3000


class DupMetrics:
    """The seed's duplication monitoring items for one partition (source side)."""

    def __init__(self, entity: Any, lagging_threshold_ms: int) -> None:
        e = entity
        self.lagging_threshold_ms = lagging_threshold_ms
        self.time_lag = e.percentile(
            "dup.time_lag_ms",
            Unit.MILLISECONDS,
            "Time from a write at the source to its acknowledgement by the remote cluster",
        )
        self.lagging_writes = e.counter(
            "dup.lagging_writes",
            Unit.REQUESTS,
            "Shipped writes whose lag exceeded dup_lagging_write_threshold_ms",
        )
        self.pending = e.gauge(
            "dup.pending_mutations_count", Unit.MUTATIONS, "Committed writes not yet shipped"
        )
        self.load_file_failed = e.counter(
            "dup.load_file_failed_count", Unit.REQUESTS, "Failed attempts to read the plog"
        )
        self.shipped_ops = e.counter(
            "dup_shipped_ops", Unit.REQUESTS, "DUPLICATE RPCs acknowledged by the remote"
        )
        self.failed_ops = e.counter(
            "dup_failed_shipping_ops", Unit.REQUESTS, "DUPLICATE RPCs that failed"
        )
        self.shipped_bytes = e.counter("dup.shipped_bytes", Unit.BYTES, "Bytes of writes shipped")
        self.log_read_bytes = e.counter("dup.log_read_bytes", Unit.BYTES, "Plog bytes read")
        self.log_read_mutations = e.counter(
            "dup.log_read_mutations", Unit.MUTATIONS, "Plog mutations read"
        )
        self.confirmed = e.counter(
            "dup.confirmed_mutations", Unit.MUTATIONS, "Increase of the confirmed decree"
        )
        self.skipped_writes = e.counter(
            "dup.skipped_writes", Unit.REQUESTS, "Writes skipped under FAIL_SKIP"
        )


@dataclass
class Slot:
    """One duplication of one partition: what meta says and what runs here."""

    dupid: int
    entry: Any  # dup.duplication_entry
    confirmed_decree: int  # persisted by meta; -1 = not started
    shipped_decree: int = -1
    duplicator: Duplicator | None = None
    created: float = field(default_factory=time.monotonic)


class DupManager:
    def __init__(self, server: Any, config: Config) -> None:
        self.server = server
        self.config = config
        self.cluster_id = config.cluster_id()
        self.slots: dict[tuple[tuple[int, int], int], Slot] = {}
        self.known_apps: set[int] = set()  # apps the last sync reply covered
        self.synced_once = False
        self.metrics: dict[tuple[int, int], DupMetrics] = {}
        self.limits = Limits(
            batch_bytes=max(1, config.get("replication", "duplicate_log_batch_bytes")),
            window=config.get("replication", "dup_max_inflight_batches"),
            backoff_max_ms=config.get("replication", "dup_retry_backoff_max_ms"),
            skip_after_attempts=config.get("replication", "dup_fail_skip_max_retries"),
        )
        self.grace_us = config.get("replication", "dup_tombstone_grace_seconds") * 1_000_000
        server.on_partition_close.append(self._partition_closed)
        server.gc_floor = self.gc_floor
        server.purge_horizon = self.purge_horizon

    # -- the sync loop -----------------------------------------------------------------

    async def run(self) -> None:
        interval = self.config.get("replication", "duplication_sync_interval_ms") / 1000
        while True:
            try:
                await self.sync()
            except DupkvError as e:
                log.debug("duplication sync failed: %s", e)
            self._restart_crashed()
            await asyncio.sleep(interval)

    async def sync(self) -> None:
        server = self.server
        confirm: dict[int, list[Any]] = {}
        for (gpid, dupid), slot in self.slots.items():
            hosted = server.partitions.get(gpid)
            if hosted is None:
                continue
            shipped = slot.duplicator.shipped_decree if slot.duplicator else slot.shipped_decree
            slot.shipped_decree = max(slot.shipped_decree, shipped)
            if slot.shipped_decree < 0:
                continue
            confirm.setdefault(pack_gpid(*gpid), []).append(
                dup.duplication_confirm_entry(
                    dupid=dupid,
                    confirmed_decree=slot.shipped_decree,
                    last_committed_decree=hosted.partition.last_committed_decree,
                )
            )
        request = dup.duplication_sync_request(
            node=pack_address(server.address), confirm_list=confirm
        )
        resp = await server.meta_call("RPC_CM_DUPLICATION_SYNC", request, SYNC_TIMEOUT_MS)
        if resp.err != ErrorCode.OK:
            raise DupkvError(resp.err, "duplication_sync refused")
        await self.reconcile(resp.dup_map or {})

    async def reconcile(self, dup_map: dict[int, dict[int, Any]]) -> None:
        """Make the running duplicators match what the meta server says."""
        server = self.server
        self.known_apps = set(dup_map)
        wanted: dict[tuple[tuple[int, int], int], Any] = {}
        for gpid, hosted in server.partitions.items():
            for dupid, entry in (dup_map.get(gpid[0]) or {}).items():
                progress = entry.progress or {}
                if entry.status in (DS_LOG, DS_PAUSE) and gpid[1] in progress:
                    wanted[(gpid, dupid)] = entry
            hosted.partition.options.duplicating = bool(hosted.app.duplicating) or any(
                key[0] == gpid for key in wanted
            )
        for key in [k for k in self.slots if k not in wanted]:
            await self._drop(key)
        for key, entry in wanted.items():
            gpid, dupid = key
            confirmed = int((entry.progress or {})[gpid[1]])
            slot = self.slots.get(key)
            if slot is None:
                slot = Slot(dupid, entry, confirmed)
                self.slots[key] = slot
            elif confirmed > slot.confirmed_decree:
                metrics = self.metrics.get(gpid)
                if metrics is not None and slot.confirmed_decree >= 0:
                    metrics.confirmed.inc(confirmed - slot.confirmed_decree)
                slot.confirmed_decree = confirmed
            slot.entry = entry
            running = slot.duplicator is not None
            if entry.status == DS_LOG and not running:
                self._start(gpid, slot)
            elif entry.status == DS_PAUSE and running:
                await self._pause(slot)
            elif running and slot.duplicator is not None:
                slot.duplicator.set_fail_mode(entry.fail_mode or 0)
                slot.duplicator.confirmed_decree = max(
                    slot.duplicator.confirmed_decree, slot.confirmed_decree
                )
        self.synced_once = True

    # -- duplicators -------------------------------------------------------------------

    def _metrics(self, gpid: tuple[int, int]) -> DupMetrics:
        metrics = self.metrics.get(gpid)
        if metrics is None:
            entity = self.server.registry.entity(
                "replica",
                f"replica@{gpid[0]}.{gpid[1]}",
                {"table_id": str(gpid[0]), "partition_id": str(gpid[1])},
            )
            threshold = self.config.get("pegasus.server", "dup_lagging_write_threshold_ms")
            metrics = DupMetrics(entity, threshold)
            self.metrics[gpid] = metrics
        return metrics

    def _start(self, gpid: tuple[int, int], slot: Slot) -> None:
        hosted = self.server.partitions[gpid]
        entry = slot.entry
        remote = entry.remote
        metas = self.config.clusters.get(remote)
        if not metas:
            log.error("dup %d: remote cluster %s is not in [pegasus.clusters]", slot.dupid, remote)
            return
        resume_from = max(slot.confirmed_decree, slot.shipped_decree)
        duplicator = Duplicator(
            partition=hosted.partition,
            commit_signal=hosted.writer.subscribe,
            target=DupTarget(
                slot.dupid,
                remote,
                entry.remote_app_name or hosted.app.app_name,
                metas,
                self.config.address_map,
            ),
            cluster_id=self.cluster_id,
            pool=self.server.pool,
            limits=self.limits,
            fail_mode=entry.fail_mode or 0,
            confirmed_decree=resume_from,
            create_ts_ms=entry.create_ts or 0,
            rpc_timeout_ms=self.config.get("replication", "dup_rpc_timeout_ms"),
            metrics=self._metrics(gpid),
        )
        duplicator.start()
        slot.duplicator = duplicator
        log.info("dup %d %d.%d: started (resume after decree %d)", slot.dupid, *gpid, resume_from)

    async def _pause(self, slot: Slot) -> None:
        duplicator = slot.duplicator
        if duplicator is None:
            return
        slot.shipped_decree = max(slot.shipped_decree, duplicator.shipped_decree)
        slot.duplicator = None
        await duplicator.stop()
        log.info(
            "dup %d %s: paused at decree %d",
            slot.dupid,
            duplicator.partition.gpid,
            slot.shipped_decree,
        )

    async def _drop(self, key: tuple[tuple[int, int], int]) -> None:
        slot = self.slots.pop(key)
        if slot.duplicator is not None:
            await slot.duplicator.stop()
            log.info("dup %d %d.%d: stopped", slot.dupid, *key[0])

    def _restart_crashed(self) -> None:
        for (gpid, _), slot in self.slots.items():
            d = slot.duplicator
            error = d.crash() if d is not None else None
            if d is not None and error is not None:
                log.error("dup %d %d.%d crashed: %r; restarting", slot.dupid, *gpid, error)
                slot.shipped_decree = max(slot.shipped_decree, d.shipped_decree)
                slot.duplicator = None
                if gpid in self.server.partitions and slot.entry.status == DS_LOG:
                    self._start(gpid, slot)

    async def _partition_closed(self, hosted: Any) -> None:
        gpid = (hosted.partition.options.app_id, hosted.partition.options.partition_index)
        for key in [k for k in self.slots if k[0] == gpid]:
            await self._drop(key)

    async def stop(self) -> None:
        for key in list(self.slots):
            await self._drop(key)

    # -- bounds for the server ---------------------------------------------------------

    def gc_floor(self, hosted: Any) -> int | None:
        """Highest decree the plog may drop up to, None for "no duplication constraint"."""
        gpid = (hosted.partition.options.app_id, hosted.partition.options.partition_index)
        slots = [s for (g, _), s in self.slots.items() if g == gpid]
        if not slots:
            if hosted.app.duplicating and (not self.synced_once or gpid[0] in self.known_apps):
                return 0  # duplicating, but its progress is not known yet
            return None
        return max(0, min(s.confirmed_decree for s in slots))

    def purge_horizon(self, hosted: Any, now_us: int) -> int:
        """Tombstones with a timestamp below this may be purged."""
        gpid = (hosted.partition.options.app_id, hosted.partition.options.partition_index)
        bound = now_us
        committed = hosted.partition.last_committed_decree
        for (g, _), slot in self.slots.items():
            if g != gpid:
                continue
            pipeline = slot.duplicator.pipeline if slot.duplicator else None
            if pipeline is None:
                return 0
            bound = min(bound, pipeline.shipped_before_us(now_us, committed))
        return max(0, bound - self.grace_us)

    # -- HTTP --------------------------------------------------------------------------

    async def http_duplication(self, query: dict[str, str]) -> Any:
        """Pegasus's `/replica/duplication?appid=` body: `{dupid: {"app.pidx": {...}}}`,
        with dupkv's progress, backlog and lag fields next to Pegasus's."""
        from dupkv.http.router import HttpStatusError

        text = query.get("appid", "")
        if not text:
            raise BadInput("appid should not be empty")
        if not text.isdigit():
            raise BadInput(f"invalid appid={text}")
        app_id = int(text)
        if not any(g[0] == app_id for g in self.server.partitions):
            raise HttpStatusError(404, f"no primary for app [appid={app_id}]")
        out: dict[str, dict[str, Any]] = {}
        for (gpid, dupid), slot in sorted(self.slots.items()):
            hosted = self.server.partitions.get(gpid)
            if gpid[0] != app_id or hosted is None:
                continue
            d = slot.duplicator
            pipeline = d.pipeline if d else None
            committed = hosted.partition.last_committed_decree
            shipped = max(slot.shipped_decree, d.shipped_decree if d else -1)
            metrics = self.metrics.get(gpid)
            lag = metrics.time_lag.quantiles() if metrics else {}
            out.setdefault(str(dupid), {})[f"{gpid[0]}.{gpid[1]}"] = {
                "duplicating": d is not None,
                "fail_mode": FailMode(slot.entry.fail_mode or 0).name,
                "not_confirmed_mutations_num": max(0, committed - max(slot.confirmed_decree, 0)),
                "not_duplicated_mutations_num": max(0, committed - max(shipped, 0)),
                "remote_app_name": slot.entry.remote_app_name,
                "status": DupStatus(slot.entry.status).name,
                "remote_cluster": slot.entry.remote,
                "last_committed_decree": committed,
                "shipped_decree": shipped,
                "confirmed_decree": slot.confirmed_decree,
                "pending_writes": pipeline.pending_writes() if pipeline else 0,
                "shipped_writes": pipeline.shipped_writes if pipeline else 0,
                "shipped_batches": pipeline.shipped_batches if pipeline else 0,
                "time_lag_ms_p99": lag.get("p99", 0),
                "last_error": d.last_error if d else "",
            }
        if not out:
            raise HttpStatusError(404, f"no duplication assigned for app [appid={app_id}]")
        return out
