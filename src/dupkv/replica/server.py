"""The replica server process (asyncio shell): hosts partitions and serves the rrdb RPCs.

Owns its data directory (`<data_dirs>/replica/reps/<app_id>.<pidx>.pegasus/`), the RPC
server (THFT + HTTP on one port), one group-commit writer per partition, the heartbeat to
the meta server (`config_sync`: report stored partitions, learn which to serve and which to
delete) and the maintenance loop (scanner expiry, expired-record sweep, periodic RocksDB
flush + plog GC). SIGTERM stops it cleanly: no new requests, queued writes finish, every
partition is flushed and closed.

A request for a partition this server does not serve gets ERR_OBJECT_NOT_FOUND, so clients
refresh their routes.
"""

import asyncio
import contextlib
import logging
import re
import shutil
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dupkv.base.config import Config
from dupkv.base.errors import DupkvError, ErrorCode, InvariantError
from dupkv.duplication.wire import parse_duplicate_args, parse_put_args
from dupkv.http.common import VersionInfo, common_routes
from dupkv.http.router import HttpRouter
from dupkv.metrics import Registry, Unit
from dupkv.replica.partition import Partition, PartitionOptions, WriteOp
from dupkv.replica.writer import GroupCommitWriter, SharedLogPersist, SyncThread
from dupkv.rpc.client import ConnectionPool
from dupkv.rpc.idl_meta import meta
from dupkv.rpc.ids import pack_address, pack_gpid, unpack_gpid
from dupkv.rpc.server import InlineHandler, RpcReply, RpcRequest, RpcServer
from dupkv.rpc.thrift import rrdb
from dupkv.storage.mutation import TaskCode
from dupkv.storage.slog import SharedLog, recover_plogs

log = logging.getLogger(__name__)

PARTITION_DIR_RE = re.compile(r"^(\d+)\.(\d+)\.pegasus$")
ATOMIC_CODES = {
    "RPC_RRDB_RRDB_INCR",
    "RPC_RRDB_RRDB_CHECK_AND_SET",
    "RPC_RRDB_RRDB_CHECK_AND_MUTATE",
}
# Table env that makes a duplicated table refuse atomic writes instead of logging the
# puts/deletes they produced.
REJECT_ATOMIC_ENV = "duplication.reject_atomic_writes"
WRITE_CODES = {
    "RPC_RRDB_RRDB_PUT": TaskCode.PUT,
    "RPC_RRDB_RRDB_MULTI_PUT": TaskCode.MULTI_PUT,
    "RPC_RRDB_RRDB_REMOVE": TaskCode.REMOVE,
    "RPC_RRDB_RRDB_MULTI_REMOVE": TaskCode.MULTI_REMOVE,
    "RPC_RRDB_RRDB_INCR": TaskCode.INCR,
    "RPC_RRDB_RRDB_CHECK_AND_SET": TaskCode.CHECK_AND_SET,
    "RPC_RRDB_RRDB_CHECK_AND_MUTATE": TaskCode.CHECK_AND_MUTATE,
    "RPC_RRDB_RRDB_DUPLICATE": TaskCode.DUPLICATE,
}
MAINTENANCE_TICK_S = 1.0
SWEEP_VISITS_PER_TICK = 2000


@dataclass
class Hosted:
    """A partition this server serves, with its writer and table settings."""

    partition: Partition
    writer: GroupCommitWriter
    app: Any  # meta.app_info
    requests: dict[str, Any]  # task code -> request counter
    sweep_cursor: bytes = b""
    next_sweep: float = 0.0  # monotonic time the next pass over the partition may start
    last_checkpoint: float = field(default_factory=time.monotonic)


class ReplicaServer:
    def __init__(
        self,
        config: Config,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        data_dir: str | None = None,
    ) -> None:
        self.config = config
        self.host = host
        self.port = port if port is not None else config.get("apps.replica", "ports")
        self.address = f"{host}:{self.port}"
        root = Path(data_dir or config.get("replication", "data_dirs"))
        self.reps_dir = root / "replica" / "reps"
        self.slog_dir = root / "replica" / "slog"
        self.meta_servers = [
            a.strip() for a in config.get("meta_server", "server_list").split(",") if a.strip()
        ]
        self.cluster_id = config.cluster_id()
        self.dup_group_ids = frozenset(config.dup_group.values())
        self.max_write_bytes = config.get("replication", "max_allowed_write_size")
        self.partitions: dict[tuple[int, int], Hosted] = {}
        self.sync = SyncThread("fsync")  # every partition's group commits fsync on it
        # With plog_force_flush, every group commit goes through the shared log (opened in
        # run(), after it has repaired the plogs).
        self.slog: SharedLog | None = None
        self._shared: SharedLogPersist | None = None
        self.rpc: RpcServer | None = None
        self.pool = ConnectionPool()
        self.started_at = time.time()
        self.meta_connected = False
        self._opening: set[tuple[int, int]] = set()
        self._tasks: asyncio.TaskGroup | None = None
        self._stopping = asyncio.Event()
        self.extra_handlers: dict[str, Callable[[RpcRequest], Awaitable[RpcReply]]] = {}
        self.registry = Registry("replica", config.cluster_name, host, self.port)
        self.router = HttpRouter()
        common_routes(self.router, self.registry, VersionInfo(), self.started_at)
        self.registry.add_collector("partitions", self._collect)
        server_entity = self.registry.entity("server", "server")
        self._slog_gauges = (
            server_entity.gauge("slog_files", "Files", "Segment files of the shared log"),
            server_entity.gauge(
                "slog_write_rounds", Unit.REQUESTS, "Rounds of group commits, one fsync each"
            ),
            server_entity.gauge(
                "slog_checkpoints", Unit.REQUESTS, "Plog fsyncs that let old slog files go"
            ),
        )
        self._dup_requests = server_entity.counter(
            "dup_requests", Unit.REQUESTS, "Duplicated writes received from other clusters"
        )
        self._rejected_atomic = server_entity.counter(
            "dup.disabled_non_idempotent_write_count",
            Unit.REQUESTS,
            "Atomic writes refused on duplicated tables (ERR_OPERATION_DISABLED)",
        )
        # Hooks for duplication (see dupkv.duplication.manager).
        self.on_partition_close: list[Callable[[Hosted], Awaitable[None]]] = []
        self.gc_floor: Callable[[Hosted], int | None] = lambda hosted: None
        grace_us = config.get("replication", "dup_tombstone_grace_seconds") * 1_000_000
        self.purge_horizon: Callable[[Hosted, int], int] = lambda hosted, now_us: now_us - grace_us
        self.background: list[Callable[[], Coroutine[Any, Any, None]]] = []
        if config.get("replication", "duplication_enabled"):
            from dupkv.duplication.manager import DupManager

            self.dup_manager: Any = DupManager(self, config)
            self.background.append(self.dup_manager.run)
        else:
            self.dup_manager = None
        from dupkv.replica.http import install_routes

        install_routes(self)

    # -- lifecycle ---------------------------------------------------------------------

    async def run(self) -> None:
        """Serve until `stop()` is called."""
        self.reps_dir.mkdir(parents=True, exist_ok=True)
        if self.config.get("replication", "plog_force_flush"):
            self.slog = await asyncio.to_thread(self._open_slog)
            self._shared = SharedLogPersist(self.slog)
        inline = self.inline_handlers()
        handlers = {c: h for c, h in self.extra_handlers.items() if c not in inline}
        self.rpc = RpcServer(
            self.host,
            self.port,
            handlers,
            self.router,
            inline=inline,
            fast_args={
                "RPC_RRDB_RRDB_DUPLICATE": parse_duplicate_args,
                "RPC_RRDB_RRDB_PUT": parse_put_args,
            },
        )
        await self.rpc.start()
        log.info("replica server serving on %s, data in %s", self.address, self.reps_dir)
        try:
            async with asyncio.TaskGroup() as tg:
                self._tasks = tg
                tg.create_task(self._heartbeat_loop(), name="config-sync")
                tg.create_task(self._maintenance_loop(), name="maintenance")
                for job in self.background:
                    tg.create_task(job(), name=getattr(job, "__qualname__", "background"))
                await self._stopping.wait()
                raise _Stop()
        except* _Stop:
            pass
        finally:
            await self._shutdown()

    def stop(self) -> None:
        self._stopping.set()

    def _open_slog(self) -> SharedLog:
        """Repair the plogs from the shared log a crash left behind, then open it empty."""
        cfg = self.config
        recover_plogs(
            self.slog_dir,
            lambda gpid: self.partition_path(gpid) / "plog",
            plog_segment_bytes=cfg.get("replication", "log_private_file_size_mb") << 20,
        )
        return SharedLog.open(
            self.slog_dir,
            segment_bytes=cfg.get("replication", "log_shared_file_size_mb") << 20,
            file_count_limit=cfg.get("replication", "log_shared_file_count_limit"),
        )

    async def _shutdown(self) -> None:
        if self.rpc is not None:
            await self.rpc.stop()
        if self.dup_manager is not None:
            await self.dup_manager.stop()
        for gpid in list(self.partitions):
            await self._close_partition(gpid)
        if self.slog is not None:
            shared_log = self.slog
            try:
                await self.sync.run(lambda _: shared_log.close(), None)
            except (OSError, InvariantError) as e:
                log.error("shared log kept for the next start's recovery: %s", e)
        await self.sync.stop()
        await self.pool.close()
        log.info("replica server %s stopped", self.address)

    # -- partitions --------------------------------------------------------------------

    def stored_partitions(self) -> list[tuple[int, int]]:
        out = []
        if self.reps_dir.exists():
            for entry in sorted(self.reps_dir.iterdir()):
                m = PARTITION_DIR_RE.match(entry.name)
                if m and entry.is_dir():
                    out.append((int(m.group(1)), int(m.group(2))))
        return out

    def partition_path(self, gpid: tuple[int, int]) -> Path:
        return self.reps_dir / f"{gpid[0]}.{gpid[1]}.pegasus"

    def _options(self, app: Any, pidx: int) -> PartitionOptions:
        cfg = self.config
        envs = app.envs or {}
        try:
            default_ttl = int(envs.get("default_ttl", "0"))
        except ValueError:
            log.warning(
                "table %s: ignoring invalid default_ttl %r", app.app_name, envs["default_ttl"]
            )
            default_ttl = 0
        return PartitionOptions(
            app_id=app.app_id,
            partition_index=pidx,
            server=self.address,
            cluster_id=self.cluster_id,
            dup_group_ids=self.dup_group_ids,
            dup_ignore_other_cluster_ids=cfg.get("replication", "dup_ignore_other_cluster_ids"),
            default_ttl=default_ttl,
            duplicating=bool(app.duplicating),
            atomic_idempotent=bool(app.atomic_idempotent),
            plog_segment_bytes=cfg.get("replication", "log_private_file_size_mb") << 20,
            plog_force_flush=cfg.get("replication", "plog_force_flush"),
            rocksdb_multi_get_max_iteration_count=cfg.get(
                "pegasus.server", "rocksdb_multi_get_max_iteration_count"
            ),
            rocksdb_multi_get_max_iteration_size=cfg.get(
                "pegasus.server", "rocksdb_multi_get_max_iteration_size"
            ),
            rocksdb_max_iteration_count=cfg.get("pegasus.server", "rocksdb_max_iteration_count"),
            rocksdb_iteration_threshold_time_ms=cfg.get(
                "pegasus.server", "rocksdb_iteration_threshold_time_ms"
            ),
            block_cache_bytes=cfg.get("pegasus.server", "rocksdb_block_cache_capacity"),
        )

    async def _open_partition(self, gpid: tuple[int, int], app: Any) -> None:
        if gpid in self.partitions or gpid in self._opening:
            return
        self._opening.add(gpid)
        try:
            options = self._options(app, gpid[1])
            started = time.monotonic()
            partition = await asyncio.to_thread(Partition, self.partition_path(gpid), options)
            writer = GroupCommitWriter(partition, sync=self.sync, shared=self._shared)
            writer.start()
            entity = self.registry.entity(
                "replica",
                f"replica@{gpid[0]}.{gpid[1]}",
                {"table_id": str(gpid[0]), "partition_id": str(gpid[1])},
            )
            requests = {
                code: entity.counter(
                    f"{code.removeprefix('RPC_RRDB_RRDB_').lower()}_requests",
                    Unit.REQUESTS,
                    f"{code} requests served",
                )
                for code in READ_CODES + tuple(WRITE_CODES)
            }
            entity.gauge("rdb_estimated_keys", Unit.KEYS, "RocksDB's estimate of the keys")
            self.partitions[gpid] = Hosted(partition, writer, app, requests)
            log.info(
                "opened partition %d.%d (%s) in %.2fs, replayed %d mutations, last decree %d",
                gpid[0],
                gpid[1],
                app.app_name,
                time.monotonic() - started,
                partition.replayed,
                partition.last_committed_decree,
            )
        except Exception:
            log.exception("failed to open partition %d.%d", *gpid)
        finally:
            self._opening.discard(gpid)

    async def _close_partition(self, gpid: tuple[int, int]) -> None:
        hosted = self.partitions.pop(gpid, None)
        if hosted is None:
            return
        for hook in self.on_partition_close:
            await hook(hosted)
        await hosted.writer.close()
        if self.slog is not None:
            try:  # off the log thread's books before the plog closes
                await self.sync.run(self.slog.forget, hosted.partition.plog)
            except (OSError, InvariantError) as e:
                log.error("partition %d.%d: plog fsync failed at close: %s", *gpid, e)
        await asyncio.to_thread(hosted.partition.close)
        self.registry.remove_entity("replica", f"replica@{gpid[0]}.{gpid[1]}")
        log.info("closed partition %d.%d", *gpid)

    def _collect(self) -> None:
        if self.slog is not None:  # its counters are ints the log thread bumps: read as is
            files, rounds, checkpoints = self._slog_gauges
            files.set(self.slog.segment_count)
            rounds.set(self.slog.rounds)
            checkpoints.set(self.slog.checkpoints)
        for (app_id, pidx), hosted in list(self.partitions.items()):
            entity = self.registry.get_entity("replica", f"replica@{app_id}.{pidx}")
            if entity is not None:
                gauge = entity.get("rdb_estimated_keys")
                if gauge is not None:
                    gauge.set(hosted.partition.estimate_num_keys())  # type: ignore[attr-defined]

    def _update_app(self, hosted: Hosted, app: Any) -> None:
        hosted.app = app
        opts = hosted.partition.options
        fresh = self._options(app, opts.partition_index)
        opts.default_ttl = fresh.default_ttl
        opts.duplicating = fresh.duplicating
        opts.atomic_idempotent = fresh.atomic_idempotent

    # -- heartbeat ---------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        interval = self.config.get("replication", "config_sync_interval_ms") / 1000
        while True:
            try:
                await self._config_sync()
            except DupkvError as e:
                if self.meta_connected:
                    log.warning("config sync with meta failed: %s", e)
                self.meta_connected = False
            await asyncio.sleep(interval)

    async def _config_sync(self) -> None:
        stored = [
            meta.replica_report(
                pid=pack_gpid(*gpid),
                last_committed_decree=h.partition.last_committed_decree if h else 0,
                last_flushed_decree=h.partition.last_flushed_decree if h else 0,
            )
            for gpid in self.stored_partitions()
            for h in [self.partitions.get(gpid)]
        ]
        request = meta.config_sync_request(node=pack_address(self.address), stored_replicas=stored)
        resp = await self.meta_call("RPC_CM_CONFIG_SYNC", request)
        if resp.err != ErrorCode.OK:
            raise DupkvError(resp.err, "config_sync refused")
        if not self.meta_connected:
            log.info("connected to meta server")
        self.meta_connected = True
        apps = {app.app_id: app for app in resp.apps or []}
        assigned = {unpack_gpid(g) for g in resp.partitions or []}
        for gpid in sorted(assigned):
            app = apps.get(gpid[0])
            if app is None:
                continue
            hosted = self.partitions.get(gpid)
            if hosted is None:
                await self._open_partition(gpid, app)
            else:
                self._update_app(hosted, app)
        for gpid in list(self.partitions):
            if gpid not in assigned:
                await self._close_partition(gpid)
        for gpid in (unpack_gpid(g) for g in resp.gc_replicas or []):
            await self._close_partition(gpid)
            path = self.partition_path(gpid)
            await asyncio.to_thread(shutil.rmtree, path, True)
            log.info("deleted partition %d.%d of a dropped table", *gpid)

    async def meta_call(self, code: str, request: Any, timeout_ms: int = 3000) -> Any:
        """Call the meta server (the first one of `server_list` that answers)."""
        last = ErrorCode.NETWORK_FAILURE
        for address in self.meta_servers:
            err, result = await self.pool.call(address, code, request, timeout_ms=timeout_ms)
            if err == ErrorCode.OK:
                return result
            last = err
        raise DupkvError(last, f"no meta server of {self.meta_servers} answered {code}")

    # -- maintenance -------------------------------------------------------------------

    async def _maintenance_loop(self) -> None:
        checkpoint_s = self.config.get("replication", "checkpoint_interval_seconds")
        sweep_s = self.config.get("replication", "ttl_sweep_interval_seconds")
        gc_enabled = self.config.get("replication", "plog_gc_enabled")
        while True:
            await asyncio.sleep(MAINTENANCE_TICK_S)
            for gpid, hosted in list(self.partitions.items()):
                if self.partitions.get(gpid) is not hosted:
                    continue
                p = hosted.partition
                p.expire_scanners()
                # A pass walks the partition a bounded step per tick; then it rests.
                if hosted.sweep_cursor or time.monotonic() >= hosted.next_sweep:
                    horizon = self.purge_horizon(hosted, int(time.time() * 1_000_000))
                    hosted.sweep_cursor, _ = p.sweep_expired(
                        hosted.sweep_cursor, SWEEP_VISITS_PER_TICK, horizon
                    )
                    if not hosted.sweep_cursor:
                        hosted.next_sweep = time.monotonic() + sweep_s
                if time.monotonic() - hosted.last_checkpoint >= checkpoint_s:
                    hosted.last_checkpoint = time.monotonic()
                    await self.checkpoint(hosted, gc=gc_enabled)

    async def checkpoint(self, hosted: Hosted, *, gc: bool = True) -> None:
        """Flush RocksDB, then drop plog segments nobody needs any more."""
        p = hosted.partition
        if p.broken:
            return
        await asyncio.to_thread(p.flush)
        if gc:
            removed = p.gc_plog(self.gc_floor(hosted))  # the plog allows GC beside appends
            if removed:
                log.info("%s: plog GC removed %d segments", p.gpid, len(removed))

    # -- RPC handlers ------------------------------------------------------------------

    def inline_handlers(self) -> dict[str, InlineHandler]:
        """The rrdb handlers, all inline (see dupkv.rpc.server): reads never wait, and a
        write waits on its group commit's Future, not in a task of its own."""
        handlers: dict[str, InlineHandler] = {code: self._on_write for code in WRITE_CODES}
        handlers.update(
            {code: self._on_read(getattr(Partition, method)) for code, method in READS.items()}
        )
        handlers["RPC_RRDB_RRDB_CLEAR_SCANNER"] = self._on_clear_scanner
        for code in self.extra_handlers:  # an extra handler replaces ours
            handlers.pop(code, None)
        return handlers

    def _hosted(self, req: RpcRequest) -> Hosted:
        h = req.header
        hosted = self.partitions.get((h.app_id, h.partition_index))
        if hosted is None:
            raise DupkvError(
                ErrorCode.OBJECT_NOT_FOUND,
                f"partition {h.app_id}.{h.partition_index} is not served by {self.address}",
            )
        return hosted

    def _on_write(self, req: RpcRequest) -> "RpcReply | asyncio.Future[Any]":
        hosted = self._hosted(req)
        hosted.requests[req.name].inc()
        if len(req.args_raw) > self.max_write_bytes:
            raise DupkvError(
                ErrorCode.INVALID_DATA,
                f"write of {len(req.args_raw)} bytes exceeds max_allowed_write_size "
                f"{self.max_write_bytes}",
            )
        if req.name == "RPC_RRDB_RRDB_DUPLICATE":
            entries = req.arg.entries or []
            if not entries:  # a shipping heartbeat: answered, never logged
                return RpcReply(ErrorCode.OK, _DUP_HEARTBEAT_OK)
            self._dup_requests.inc(len(entries))
        elif (
            req.name in ATOMIC_CODES
            and hosted.partition.options.duplicating
            and (hosted.app.envs or {}).get(REJECT_ATOMIC_ENV, "false") == "true"
        ):
            self._rejected_atomic.inc()
            raise DupkvError(
                ErrorCode.OPERATION_DISABLED,
                f"table {hosted.app.app_name} is duplicated and refuses atomic writes "
                f"({REJECT_ATOMIC_ENV}=true)",
            )
        return hosted.writer.submit(WriteOp(WRITE_CODES[req.name], req.arg, req.args_raw))

    def _on_read(self, read: Callable[[Partition, Any], Any]) -> InlineHandler:
        def handler(req: RpcRequest) -> RpcReply:
            hosted = self._hosted(req)
            hosted.requests[req.name].inc()
            return RpcReply(ErrorCode.OK, read(hosted.partition, req.arg))

        return handler

    def _on_clear_scanner(self, req: RpcRequest) -> RpcReply:
        with contextlib.suppress(DupkvError):
            self._hosted(req).partition.clear_scanner(req.arg)
        return RpcReply(ErrorCode.OK, None)


READS = {  # task code -> the Partition method that serves it
    "RPC_RRDB_RRDB_GET": "get",
    "RPC_RRDB_RRDB_MULTI_GET": "multi_get",
    "RPC_RRDB_RRDB_BATCH_GET": "batch_get",
    "RPC_RRDB_RRDB_SORTKEY_COUNT": "sortkey_count",
    "RPC_RRDB_RRDB_TTL": "ttl",
    "RPC_RRDB_RRDB_GET_SCANNER": "get_scanner",
    "RPC_RRDB_RRDB_SCAN": "scan",
}
READ_CODES = tuple(READS)
_DUP_HEARTBEAT_OK = rrdb.duplicate_response(error=0)


class _Stop(Exception):
    """Ends the server's task group."""
