"""The meta server's duplication service (asyncio shell around `meta.duplication`).

Serves the five duplication RPCs (add, modify, query, list, and the replica servers'
`duplication_sync`) and `GET /meta/app/duplication?name=<table>`, and restores the
duplications from the metadata store when the meta server starts. `install(server)` wires it
into a `MetaServer` before the server builds its handlers.

Every change runs under the server's `_lock`: plan (pure, validates), persist (store commits),
apply (memory). The one IO the core does not see is the add's question to the remote
cluster's meta ("does the remote table exist?"), asked outside the lock within
`[replication] dup_remote_meta_timeout_ms`. If a store write fails, its outcome is unknown,
so the duplications are reloaded from the store before the next change.

With `[replication] duplication_enabled = false` every duplication RPC answers
ERR_SERVICE_NOT_ACTIVE, the HTTP endpoint 404, and nothing is restored (Pegasus's behaviour).
"""

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from dupkv.base.errors import ErrorCode
from dupkv.meta.duplication import (
    AddRequest,
    Confirm,
    DuplicationInfo,
    Duplications,
    DupSettings,
    StoredApp,
    StoredDup,
    http_view,
)
from dupkv.meta.state import AppStatus, MetaError, Plan
from dupkv.meta.store.api import StoreError, chunked
from dupkv.rpc.client import ConnectionPool
from dupkv.rpc.httpcodec import HttpResponse
from dupkv.rpc.idl_meta import dup, meta
from dupkv.rpc.ids import unpack_address, unpack_gpid
from dupkv.rpc.server import RpcReply, RpcRequest

if TYPE_CHECKING:
    from dupkv.meta.server import MetaServer

log = logging.getLogger(__name__)

HTTP_PATH = "/meta/app/duplication"
DISABLED_HINT = "duplication is not enabled [FLAGS_duplication_enabled=false]"
_TEXT = "text/plain; charset=utf-8"


def _now_ms() -> int:
    return int(time.time() * 1000)


def _local_time(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms // 1000))


def entry(d: DuplicationInfo, *, progress: bool = False, states: bool = False) -> Any:
    """A `duplication_entry`: plain for query, with `progress` for sync, with
    `partition_states` for list."""
    e = dup.duplication_entry(
        dupid=d.dupid,
        status=int(d.status),
        remote=d.remote,
        create_ts=d.create_timestamp_ms,
        fail_mode=int(d.fail_mode),
        remote_app_name=d.remote_app_name,
        remote_replica_count=d.remote_replica_count,
    )
    if progress:
        e.progress = d.stored_progress()
    if states:
        e.partition_states = {
            pidx: dup.duplication_partition_state(
                confirmed_decree=p.stored_decree, last_committed_decree=p.last_committed_decree
            )
            for pidx, p in sorted(d.progress.items())
        }
    return e


class DupService:
    def __init__(self, server: "MetaServer") -> None:
        self.server = server
        self.enabled: bool = server.config.get("replication", "duplication_enabled")
        self.remote_timeout_ms: int = server.config.get("replication", "dup_remote_meta_timeout_ms")
        self.core = Duplications(server.state, DupSettings.from_config(server.config))
        self._stale = False  # a store write failed: memory may differ from the store

    # -- persistence ----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _locked(self) -> AsyncIterator[None]:
        async with self.server._lock:
            if self._stale:
                await self._reload()
            yield

    async def _refresh_if_stale(self) -> None:
        """Before a read: reload if a write failed; if the store is still away, serve memory."""
        if not self._stale:
            return
        try:
            async with self._locked():
                pass
        except StoreError as e:
            log.warning("serving duplications from memory, the store failed: %s", e)

    async def _run(self, plan: Plan | None) -> Any:
        """Persist a plan (in as many commits as the store's limits need), then apply it."""
        if plan is None:
            return None
        store = self.server.store
        assert store is not None
        try:
            for ops in chunked(plan.ops):
                await store.commit(ops)
        except StoreError:
            self._stale = True
            raise
        plan.apply()
        return plan.result

    async def _read_store(self) -> dict[int, StoredApp]:
        store = self.server.store
        assert store is not None
        stored: dict[int, StoredApp] = {}
        for app_id, app in sorted(self.server.state.apps.items()):
            if app.status != AppStatus.AVAILABLE:
                continue
            top = self.core.dir_path(app_id)
            if not await store.exists(top):
                stored[app_id] = StoredApp(exists=False)
                continue
            found = StoredApp(exists=True)
            for name in await store.children(top):
                path = f"{top}/{name}"
                children = {}
                for child in await store.children(path):
                    children[child] = await store.get(f"{path}/{child}")
                found.dups.append(StoredDup(name, await store.get(path), children))
            stored[app_id] = found
        return stored

    async def recover(self) -> None:
        """Restore the duplications from the store (a load hook: runs at meta start)."""
        stored = await self._read_store()
        self.core.reset()
        plan, warnings = self.core.recover(stored)
        for warning in warnings:
            log.error("duplication recovery: %s", warning)
        await self._run(plan)
        count = sum(len(d) for d in self.core.by_app.values())
        log.info("restored %d duplications", count)

    async def _reload(self) -> None:
        log.warning("reloading duplications from the store after a failed write")
        await self.recover()
        self._stale = False

    # -- RPC handlers ---------------------------------------------------------------------

    async def on_add(self, req: RpcRequest) -> RpcReply:
        r = req.arg
        resp = dup.duplication_add_response(err=ErrorCode.OK, appid=0, dupid=0)
        if not self.enabled:
            resp.err, resp.hint = ErrorCode.SERVICE_NOT_ACTIVE, DISABLED_HINT
            return RpcReply(ErrorCode.OK, resp)
        add = AddRequest(
            app_name=r.app_name or "",
            remote_cluster_name=r.remote_cluster_name or "",
            # Thrift's default for an absent flag is true (full duplication).
            is_duplicating_checkpoint=r.is_duplicating_checkpoint is not False,
            remote_app_name=r.remote_app_name or None,
            remote_replica_count=r.remote_replica_count,
        )
        try:
            async with self._locked():
                check = self.core.check_add(add)
            if check.existing is None:
                await self._find_remote_table(
                    add.remote_cluster_name, check.remote_metas, check.remote_app_name
                )
            async with self._locked():
                result = await self._run(self.core.plan_add(add, _now_ms()))
        except (MetaError, StoreError) as e:
            log.info(
                "add duplication %s -> %s refused: %s", add.app_name, add.remote_cluster_name, e
            )
            resp.err, resp.hint = e.code, e.hint
            return RpcReply(ErrorCode.OK, resp)
        d = result.dup
        resp.err, resp.appid, resp.dupid = result.err, d.app_id, d.dupid
        resp.remote_app_name, resp.remote_replica_count = d.remote_app_name, d.remote_replica_count
        if result.err == ErrorCode.OK:
            log.info("added duplication %d of %s -> %s", d.dupid, d.app_name, d.remote)
        return RpcReply(ErrorCode.OK, resp)

    async def _find_remote_table(self, cluster: str, metas: Sequence[str], table: str) -> None:
        """Ask the remote cluster's meta servers, in order, whether `table` exists there.
        MetaError ERR_APP_NOT_EXIST if it does not, ERR_TIMEOUT if no meta answered."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.remote_timeout_ms / 1000
        pool = ConnectionPool(connect_timeout_ms=self.remote_timeout_ms)
        request = meta.query_cfg_request(app_name=table, partition_indices=[])
        failures = []
        try:
            for address in metas:
                left_ms = int((deadline - loop.time()) * 1000)
                if left_ms <= 0:
                    failures.append(f"{address}: no time left")
                    break
                try:
                    async with asyncio.timeout(left_ms / 1000):
                        err, resp = await pool.call(
                            address,
                            "RPC_CM_QUERY_PARTITION_CONFIG_BY_INDEX",
                            request,
                            timeout_ms=left_ms,
                        )
                except TimeoutError:
                    err, resp = ErrorCode.TIMEOUT, None
                if err != ErrorCode.OK:
                    failures.append(f"{address}: {err}")
                    continue
                if resp.err == ErrorCode.OK:
                    return
                if resp.err in (ErrorCode.OBJECT_NOT_FOUND, ErrorCode.APP_NOT_EXIST):
                    raise MetaError(
                        ErrorCode.APP_NOT_EXIST,
                        f"table {table} does not exist in cluster {cluster}; create it there first",
                    )
                failures.append(f"{address}: {resp.err}")
        finally:
            await pool.close()
        raise MetaError(
            ErrorCode.TIMEOUT,
            f"cannot reach cluster {cluster} to check that table {table} exists there; "
            f"tried {'; '.join(failures)} (limit {self.remote_timeout_ms} ms)",
        )

    async def on_modify(self, req: RpcRequest) -> RpcReply:
        r = req.arg
        resp = dup.duplication_modify_response(err=ErrorCode.OK, appid=0)
        if not self.enabled:
            resp.err = ErrorCode.SERVICE_NOT_ACTIVE
            return RpcReply(ErrorCode.OK, resp)
        app_name, dupid = r.app_name or "", r.dupid or 0
        try:
            async with self._locked():
                plan = self.core.plan_modify(app_name, dupid, r.status, r.fail_mode)
                resp.appid = await self._run(plan)
        except (MetaError, StoreError) as e:
            log.info("modify duplication %d of %s refused: %s", dupid, app_name, e)
            resp.err = e.code
        else:
            if plan.ops:
                log.info("modified duplication %d of %s: %s", dupid, app_name, r)
        return RpcReply(ErrorCode.OK, resp)

    async def on_query(self, req: RpcRequest) -> RpcReply:
        resp = dup.duplication_query_response(err=ErrorCode.OK, appid=0, entry_list=[])
        if not self.enabled:
            resp.err = ErrorCode.SERVICE_NOT_ACTIVE
            return RpcReply(ErrorCode.OK, resp)
        await self._refresh_if_stale()
        try:
            app, dups = self.core.query(req.arg.app_name or "")
        except MetaError as e:
            resp.err = e.code
        else:
            resp.appid = app.app_id
            resp.entry_list = [entry(d) for d in dups]
        return RpcReply(ErrorCode.OK, resp)

    async def on_list(self, req: RpcRequest) -> RpcReply:
        r = req.arg
        resp = dup.duplication_list_response(err=ErrorCode.OK, hint_message="", app_states={})
        if not self.enabled:
            resp.err, resp.hint_message = ErrorCode.SERVICE_NOT_ACTIVE, DISABLED_HINT
            return RpcReply(ErrorCode.OK, resp)
        await self._refresh_if_stale()
        try:
            found = self.core.list_matching(r.app_name_pattern or "", r.match_type or 0)
        except MetaError as e:
            resp.err, resp.hint_message = e.code, e.hint
            return RpcReply(ErrorCode.OK, resp)
        resp.app_states = {
            app.app_name: dup.duplication_app_state(
                appid=app.app_id,
                duplications={d.dupid: entry(d, states=True) for d in dups},
                app_name=app.app_name,
                partition_count=app.partition_count,
            )
            for app, dups in found
        }
        return RpcReply(ErrorCode.OK, resp)

    async def on_sync(self, req: RpcRequest) -> RpcReply:
        r = req.arg
        resp = dup.duplication_sync_response(err=ErrorCode.OK, dup_map={})
        if not self.enabled:
            resp.err = ErrorCode.SERVICE_NOT_ACTIVE
            return RpcReply(ErrorCode.OK, resp)
        address = unpack_address(r.node or 0)
        if address is None:
            resp.err = ErrorCode.INVALID_PARAMETERS
            return RpcReply(ErrorCode.OK, resp)
        confirms = []
        for gpid, entries in (r.confirm_list or {}).items():
            app_id, pidx = unpack_gpid(gpid)
            for c in entries or []:
                confirms.append(
                    Confirm(
                        app_id=app_id,
                        pidx=pidx,
                        dupid=c.dupid or 0,
                        confirmed_decree=-1 if c.confirmed_decree is None else c.confirmed_decree,
                        checkpoint_prepared=bool(c.checkpoint_prepared),
                        last_committed_decree=c.last_committed_decree,
                    )
                )
        now = _now_ms()
        try:
            async with self._locked():
                await self._run(self.core.plan_sync(address, confirms, now))
                view = self.core.sync_view(address)
                reports = self.core.take_reports((d for ds in view.values() for d in ds), now)
        except (MetaError, StoreError) as e:
            log.info("duplication sync from %s refused: %s", address, e)
            resp.err = e.code
            return RpcReply(ErrorCode.OK, resp)
        for line in reports:
            log.info("%s", line)
        resp.dup_map = {
            app_id: {d.dupid: entry(d, progress=True) for d in dups}
            for app_id, dups in view.items()
        }
        return RpcReply(ErrorCode.OK, resp)

    # -- HTTP -----------------------------------------------------------------------------

    async def on_http(self, query: dict[str, str]) -> HttpResponse:
        if not self.enabled:
            return HttpResponse(404, _TEXT, DISABLED_HINT.encode())
        name = query.get("name", "")
        if not name:
            return HttpResponse(400, _TEXT, b"name should not be empty")
        await self._refresh_if_stale()
        try:
            app, dups = self.core.query(name)
        except MetaError as e:
            return HttpResponse(404, _TEXT, e.code.encode())
        body = json.dumps(http_view(app, dups, _local_time), sort_keys=True, separators=(",", ":"))
        return HttpResponse(200, "application/json", body.encode())


def install(server: "MetaServer") -> DupService:
    """Register the duplication RPCs, the HTTP endpoint and recovery into `server`."""
    service = DupService(server)
    server.extra_handlers.update(
        {
            "RPC_CM_ADD_DUPLICATION": service.on_add,
            "RPC_CM_MODIFY_DUPLICATION": service.on_modify,
            "RPC_CM_QUERY_DUPLICATION": service.on_query,
            "RPC_CM_LIST_DUPLICATION": service.on_list,
            "RPC_CM_DUPLICATION_SYNC": service.on_sync,
        }
    )
    server.http_routes[HTTP_PATH] = service.on_http
    if service.enabled:
        server.load_hooks.append(service.recover)
    return service
