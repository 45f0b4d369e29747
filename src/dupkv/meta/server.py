"""The meta server process (asyncio shell around `meta.state.MetaState`).

Owns the metadata store connection, the RPC server (THFT + HTTP on one port) and the
handlers of the meta RPCs: routing (`query_cfg`), table admin, node listing, cluster info,
and the replica servers' `config_sync` heartbeat. Every change follows the same three
steps under one lock: plan (pure, validates), persist (store commit), apply (memory).
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from dupkv.base.config import Config
from dupkv.base.errors import DupkvError, ErrorCode
from dupkv.http.common import VersionInfo, common_routes
from dupkv.http.router import HttpRouter
from dupkv.meta.dup_service import install as install_duplication
from dupkv.meta.http import install_routes
from dupkv.meta.state import AppStatus, MetaError, MetaState, Plan
from dupkv.meta.store import MetaStore, open_store
from dupkv.metrics import Registry
from dupkv.rpc.idl_meta import meta
from dupkv.rpc.ids import pack_address, pack_gpid, unpack_address, unpack_gpid
from dupkv.rpc.server import RpcReply, RpcRequest, RpcServer

log = logging.getLogger(__name__)

Handler = Callable[[RpcRequest], Awaitable[RpcReply]]


def now_ms() -> int:
    return int(time.time() * 1000)


class MetaServer:
    def __init__(self, config: Config, *, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.config = config
        self.host = host
        self.port = port if port is not None else config.get("apps.meta", "ports")
        self.address = f"{host}:{self.port}"
        self.state = MetaState(
            config.cluster_root, config.get("meta_server", "replica_server_lease_ms")
        )
        self.store: MetaStore | None = None
        self.rpc: RpcServer | None = None
        self.started_at = time.time()
        self._lock = asyncio.Lock()
        self.extra_handlers: dict[str, Handler] = {}
        # path -> async handler(query) returning an HttpResponse or a JSON-able object;
        # registered into the router at start (duplication adds its endpoint here).
        self.http_routes: dict[str, Callable[[dict[str, str]], Awaitable[Any]]] = {}
        # Called in order once the tables are loaded, before serving (e.g. duplications).
        self.load_hooks: list[Callable[[], Awaitable[None]]] = []
        self.registry = Registry("meta", config.cluster_name, host, self.port)
        self.router = HttpRouter()
        common_routes(self.router, self.registry, VersionInfo(), self.started_at)
        install_routes(self)

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        cfg = self.config
        self.store = open_store(
            cfg.get("meta_server", "meta_state_service_type"),
            data_dir=f"{cfg.get('replication', 'data_dirs')}/meta",
            zk_hosts=cfg.get("zookeeper", "hosts_list"),
            zk_timeout_ms=cfg.get("zookeeper", "timeout_ms"),
            root=cfg.cluster_root,
        )
        install_duplication(self)
        await self._load()
        handlers: dict[str, Handler] = {
            "RPC_CM_QUERY_PARTITION_CONFIG_BY_INDEX": self.on_query_cfg,
            "RPC_CM_CREATE_APP": self.on_create_app,
            "RPC_CM_DROP_APP": self.on_drop_app,
            "RPC_CM_LIST_APPS": self.on_list_apps,
            "RPC_CM_LIST_NODES": self.on_list_nodes,
            "RPC_CM_CLUSTER_INFO": self.on_cluster_info,
            "RPC_CM_CONFIG_SYNC": self.on_config_sync,
            **self.extra_handlers,
        }
        for path, route in self.http_routes.items():
            self.router.add(path, _query_only(route), f"ip:port{path}")
        self.rpc = RpcServer(self.host, self.port, handlers, self.router)
        await self.rpc.start()
        log.info("meta server of %s serving on %s", cfg.cluster_name, self.address)

    async def stop(self) -> None:
        if self.rpc is not None:
            await self.rpc.stop()
        if self.store is not None:
            await self.store.close()

    async def _load(self) -> None:
        store = self.store
        assert store is not None
        apps_path = self.state.apps_path
        if not await store.exists(apps_path):
            await store.create(apps_path, b"", make_parents=True)
        for name in await store.children(apps_path):
            if not name.isdigit():
                log.warning("ignoring unexpected node %s/%s", apps_path, name)
                continue
            app_path = f"{apps_path}/{name}"
            app_json = await store.get(app_path)
            if app_json is None:
                continue
            partitions = {}
            for child in await store.children(app_path):
                if child.isdigit():
                    blob = await store.get(f"{app_path}/{child}")
                    if blob is not None:
                        partitions[int(child)] = blob
            self.state.load_app(app_json, partitions)
        log.info("loaded %d tables from %s", len(self.state.apps), apps_path)
        for hook in self.load_hooks:
            await hook()

    async def run_plan(self, plan: Plan | None) -> Any:
        """Persist a plan's writes, then apply it to memory. Call with `_lock` held."""
        if plan is None:
            return None
        assert self.store is not None
        if plan.ops:
            await self.store.commit(plan.ops)
        plan.apply()
        return plan.result

    # -- RPC handlers ------------------------------------------------------------------

    async def on_query_cfg(self, req: RpcRequest) -> RpcReply:
        q = req.arg
        resp = meta.query_cfg_response(err=ErrorCode.OK, partitions=[])
        app = self.state.find_app(q.app_name or "")
        if app is None:
            resp.err = ErrorCode.OBJECT_NOT_FOUND
            return RpcReply(ErrorCode.OK, resp)
        now = now_ms()
        indices = q.partition_indices or range(app.partition_count)
        resp.app_id = app.app_id
        resp.partition_count = app.partition_count
        resp.is_stateful = True
        for pidx in indices:
            if not 0 <= pidx < app.partition_count:
                resp.err = ErrorCode.INVALID_PARAMETERS
                resp.partitions = []
                return RpcReply(ErrorCode.OK, resp)
            resp.partitions.append(self._partition_config(app, pidx, now))
        return RpcReply(ErrorCode.OK, resp)

    def _partition_config(self, app: Any, pidx: int, now: int) -> Any:
        primary = self.state.primary_of(app, pidx, now)
        return meta.partition_configuration(
            pid=pack_gpid(app.app_id, pidx),
            ballot=1,
            max_replica_count=app.max_replica_count,
            primary=pack_address(primary) if primary else 0,
            secondaries=[],
            last_drops=[],
            last_committed_decree=0,
            partition_flags=0,
        )

    async def on_create_app(self, req: RpcRequest) -> RpcReply:
        r = req.arg
        opts = r.options or meta.create_app_options()
        resp = meta.configuration_create_app_response(err=ErrorCode.OK, appid=0)
        try:
            async with self._lock:
                plan = self.state.plan_create_app(
                    r.app_name or "",
                    opts.partition_count or 0,
                    opts.replica_count or 0,
                    dict(opts.envs or {}),
                    bool(opts.success_if_exist),
                    now_ms(),
                )
                resp.appid = await self.run_plan(plan)
        except MetaError as e:
            log.info("create table %r refused: %s", r.app_name, e)
            resp.err = e.code
        else:
            log.info("created table %r (app_id %d)", r.app_name, resp.appid)
        return RpcReply(ErrorCode.OK, resp)

    async def on_drop_app(self, req: RpcRequest) -> RpcReply:
        r = req.arg
        opts = r.options or meta.drop_app_options()
        reserve = opts.reserve_seconds or self.config.get(
            "meta_server", "hold_seconds_for_dropped_app"
        )
        resp = meta.configuration_drop_app_response(err=ErrorCode.OK)
        try:
            async with self._lock:
                plan = self.state.plan_drop_app(
                    r.app_name or "", bool(opts.success_if_not_exist), reserve, now_ms()
                )
                await self.run_plan(plan)
        except MetaError as e:
            resp.err = e.code
        else:
            log.info("dropped table %r", r.app_name)
        return RpcReply(ErrorCode.OK, resp)

    async def on_list_apps(self, req: RpcRequest) -> RpcReply:
        wanted = req.arg.status if req.arg is not None else 0
        infos = [
            self.app_info(app)
            for app in sorted(self.state.apps.values(), key=lambda a: a.app_id)
            if not wanted or app.status == wanted
        ]
        return RpcReply(
            ErrorCode.OK, meta.configuration_list_apps_response(err=ErrorCode.OK, infos=infos)
        )

    @staticmethod
    def app_info(app: Any) -> Any:
        return meta.app_info(
            status=app.status,
            app_type=app.app_type,
            app_name=app.app_name,
            app_id=app.app_id,
            partition_count=app.partition_count,
            envs=dict(app.envs),
            is_stateful=True,
            max_replica_count=app.max_replica_count,
            expire_second=app.expire_second,
            create_second=app.create_second,
            drop_second=app.drop_second,
            duplicating=app.duplicating,
            init_partition_count=app.partition_count,
            is_bulk_loading=False,
            atomic_idempotent=app.atomic_idempotent,
        )

    async def on_list_nodes(self, req: RpcRequest) -> RpcReply:
        now = now_ms()
        wanted = req.arg.status if req.arg is not None else 0
        infos = []
        for address in sorted(self.state.nodes):
            status = 1 if self.state.is_alive(address, now) else 2
            if not wanted or wanted == status:
                infos.append(meta.node_info(status=status, address=pack_address(address)))
        resp = meta.configuration_list_nodes_response(err=ErrorCode.OK, infos=infos)
        return RpcReply(ErrorCode.OK, resp)

    def cluster_info(self) -> dict[str, str]:
        cfg = self.config
        zk = cfg.get("meta_server", "meta_state_service_type").endswith("zookeeper")
        return {
            "meta_servers": ",".join(cfg.get("meta_server", "server_list").split(",")),
            "primary_meta_server": self.address,
            "zookeeper_hosts": cfg.get("zookeeper", "hosts_list") if zk else "",
            "zookeeper_root": cfg.cluster_root if zk else "",
            "meta_state_service_type": cfg.get("meta_server", "meta_state_service_type"),
            "meta_function_level": "steady",
            "balance_operation_count": "0",
            "primary_replica_count_stddev": "0",
            "total_replica_count_stddev": "0",
            "cluster_name": cfg.cluster_name,
        }

    async def on_cluster_info(self, req: RpcRequest) -> RpcReply:
        info = self.cluster_info()
        resp = meta.configuration_cluster_info_response(
            err=ErrorCode.OK, keys=list(info), values=list(info.values())
        )
        return RpcReply(ErrorCode.OK, resp)

    async def on_config_sync(self, req: RpcRequest) -> RpcReply:
        r = req.arg
        address = unpack_address(r.node or 0)
        if address is None:
            raise DupkvError(ErrorCode.INVALID_PARAMETERS, "config_sync without a node address")
        now = now_ms()
        async with self._lock:
            if self.state.heartbeat(address, now):
                log.info("replica server %s is alive", address)
            await self.run_plan(self.state.place_orphans(now))
        stored = [unpack_gpid(rep.pid) for rep in (r.stored_replicas or [])]
        placed = self.state.partitions_on(address)
        apps = {app.app_id: app for app, _ in placed}
        resp = meta.config_sync_response(
            err=ErrorCode.OK,
            apps=[self.app_info(app) for app in apps.values()],
            partitions=[pack_gpid(app.app_id, pidx) for app, pidx in placed],
            gc_replicas=[pack_gpid(a, p) for a, p in self.state.gc_on(address, stored)],
        )
        return RpcReply(ErrorCode.OK, resp)

    # -- HTTP --------------------------------------------------------------------------

    def apps_json(self) -> dict[str, Any]:
        general = {}
        for app in sorted(self.state.apps.values(), key=lambda a: a.app_id):
            if app.status != AppStatus.AVAILABLE:
                continue
            general[str(app.app_id)] = {
                "app_id": str(app.app_id),
                "status": "AS_AVAILABLE",
                "app_name": app.app_name,
                "app_type": app.app_type,
                "partition_count": str(app.partition_count),
                "replica_count": str(app.max_replica_count),
                "is_stateful": "true",
                "create_time": time.strftime(
                    "%Y-%m-%d_%H:%M:%S", time.localtime(app.create_second)
                ),
                "drop_time": "-",
                "drop_expire": "-",
                "envs_count": str(len(app.envs)),
            }
        return {"general_info": general, "summary": {"total_app_count": str(len(general))}}

    def app_json(self, name: str) -> dict[str, Any] | None:
        app = self.state.find_app(name)
        if app is None:
            return None
        now = now_ms()
        replicas = {}
        nodes: dict[str, int] = {}
        for pidx in range(app.partition_count):
            primary = self.state.primary_of(app, pidx, now)
            replicas[str(pidx)] = {
                "pidx": str(pidx),
                "ballot": "1",
                "replica_count": f"{1 if primary else 0}/{app.max_replica_count}",
                "primary": primary or "-",
                "secondaries": "[]",
            }
            if primary:
                nodes[primary] = nodes.get(primary, 0) + 1
        healthy = sum(1 for r in replicas.values() if r["primary"] != "-")
        return {
            "general": {
                "app_name": app.app_name,
                "app_id": str(app.app_id),
                "partition_count": str(app.partition_count),
                "max_replica_count": str(app.max_replica_count),
            },
            "replicas": replicas,
            "nodes": {
                n: {"node": n, "primary": str(c), "secondary": "0", "total": str(c)}
                for n, c in sorted(nodes.items())
            },
            "healthy": {
                "fully_healthy_partition_count": str(healthy),
                "unhealthy_partition_count": str(app.partition_count - healthy),
                "write_unhealthy_partition_count": str(app.partition_count - healthy),
                "read_unhealthy_partition_count": str(app.partition_count - healthy),
            },
        }

    def nodes_json(self) -> dict[str, Any]:
        now = now_ms()
        load = self.state.partition_load()
        details = {}
        for address in sorted(self.state.nodes):
            alive = self.state.is_alive(address, now)
            details[address] = {
                "address": address,
                "status": "ALIVE" if alive else "UNALIVE",
                "replica_count": str(load.get(address, 0)),
                "primary_count": str(load.get(address, 0)),
                "secondary_count": "0",
            }
        alive_count = sum(1 for d in details.values() if d["status"] == "ALIVE")
        return {
            "details": details,
            "summary": {
                "total_node_count": str(len(details)),
                "alive_node_count": str(alive_count),
                "unalive_node_count": str(len(details) - alive_count),
            },
        }


def _query_only(
    route: Callable[[dict[str, str]], Awaitable[Any]],
) -> Callable[[dict[str, str], bytes], Awaitable[Any]]:
    async def handler(query: dict[str, str], body: bytes) -> Any:
        return await route(query)

    return handler
