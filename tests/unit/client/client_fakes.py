"""Fake meta and replica servers for the client's tests (test support).

Real `dupkv.rpc.server.RpcServer`s on 127.0.0.1 (ephemeral ports) whose handlers emulate
just enough of a cluster to check the client's encoding, decoding, routing and retries:

- `FakeMeta`: query_cfg from the cluster's partition map, create/drop/list tables, list
  nodes, cluster info. As a follower (`leader` set) it answers query_cfg with
  ERR_FORWARD_TO_OTHERS naming the leader, and every other RPC with a frame-level
  ERR_FORWARD_TO_OTHERS.
- `FakeReplica`: the rrdb RPCs over an in-memory dict per partition (shared by the cluster,
  so a partition keeps its data when it moves), served only for the partitions placed on
  it (ERR_OBJECT_NOT_FOUND otherwise). Every request is recorded with its header fields;
  faults are injected per task code: queued frame errors, hanging handlers, a delay.
"""

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from dupkv.base.errors import DupkvError, ErrorCode
from dupkv.base.timeutil import EPOCH_BEGIN
from dupkv.client import Client, Table
from dupkv.rpc.codes import TASK_CODES
from dupkv.rpc.idl_meta import meta
from dupkv.rpc.ids import pack_address, pack_gpid
from dupkv.rpc.server import RpcReply, RpcRequest, RpcServer
from dupkv.rpc.thrift import rrdb
from dupkv.storage.schema import decode_key, encode_key, hash_key_prefix, next_blob

Store = dict[bytes, tuple[bytes, int]]  # encoded key -> (user value, expire_ts)

RRDB_CODES = [c for c, (svc, m) in TASK_CODES.items() if svc == "rrdb" and m != "duplicate"]
QUERY_CFG = "RPC_CM_QUERY_PARTITION_CONFIG_BY_INDEX"
STOP_TIMEOUT_S = 0.2


def epoch_now() -> int:
    return int(time.time()) - EPOCH_BEGIN


def live(entry: tuple[bytes, int] | None) -> bool:
    return entry is not None and (entry[1] == 0 or entry[1] > epoch_now())


@dataclass
class FakeTable:
    name: str
    app_id: int
    partition_count: int
    primaries: list[str | None]
    replica_count: int = 1
    status: int = 1  # AS_AVAILABLE
    envs: dict[str, str] = field(default_factory=dict)


@dataclass
class Recorded:
    name: str
    app_id: int
    partition_index: int
    partition_hash: int
    arg: Any
    server: str


class FakeReplica:
    def __init__(self, cluster: "FakeCluster", port: int = 0) -> None:
        self.cluster = cluster
        self.server = RpcServer(
            "127.0.0.1",
            port,
            {code: self.handle for code in RRDB_CODES},
            stop_timeout_s=STOP_TIMEOUT_S,
        )
        self.requests: list[Recorded] = []
        self.errors: dict[str, list[str]] = {}  # task code or "*" -> frame errors to answer
        self.hang: set[str] = set()  # task codes whose handler never answers
        self.status: dict[str, int] = {}  # task code -> RocksDB status to answer with
        self.delay_s = 0.0
        self.demoted: set[tuple[int, int]] = set()  # gpids answered with ERR_INVALID_STATE
        self.inflight = 0
        self.max_inflight = 0
        self.scanners: dict[int, tuple[list[Any], int, bool]] = {}
        self._scanner_ids = itertools.count(1)
        self.decree = 0

    @property
    def address(self) -> str:
        return self.server.address

    def received(self, name: str) -> list[Recorded]:
        return [r for r in self.requests if r.name == name]

    async def handle(self, req: RpcRequest) -> RpcReply:
        h = req.header
        self.requests.append(
            Recorded(req.name, h.app_id, h.partition_index, h.partition_hash, req.arg, self.address)
        )
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        try:
            queue = self.errors.get(req.name) or self.errors.get("*")
            if queue:
                raise DupkvError(queue.pop(0))
            if req.name in self.hang:
                await asyncio.Event().wait()
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            gpid = (h.app_id, h.partition_index)
            if gpid in self.demoted:
                raise DupkvError(ErrorCode.INVALID_STATE)
            if self.cluster.placement.get(gpid) != self.address:
                raise DupkvError(ErrorCode.OBJECT_NOT_FOUND)
            store = self.cluster.data.setdefault(gpid, {})
            op = req.name.removeprefix("RPC_RRDB_RRDB_").lower()
            resp = getattr(self, "op_" + op)(store, req.arg)
            if resp is not None:
                resp.error = self.status.get(req.name, resp.error)
                resp.app_id, resp.partition_index, resp.server = (
                    h.app_id,
                    h.partition_index,
                    (self.address),
                )
            return RpcReply(ErrorCode.OK, resp)
        finally:
            self.inflight -= 1

    # -- writes --------------------------------------------------------------------------

    def _update(self, error: int = 0) -> Any:
        self.decree += 1
        return rrdb.update_response(error=error, decree=self.decree)

    def op_put(self, store: Store, r: Any) -> Any:
        store[r.key] = (r.value or b"", r.expire_ts_seconds or 0)
        return self._update()

    def op_multi_put(self, store: Store, r: Any) -> Any:
        if not r.kvs:
            return self._update(4)
        for kv in r.kvs:
            store[encode_key(r.hash_key, kv.key)] = (kv.value or b"", r.expire_ts_seconds or 0)
        return self._update()

    def op_remove(self, store: Store, key: bytes) -> Any:
        store.pop(key, None)
        return self._update()

    def op_multi_remove(self, store: Store, r: Any) -> Any:
        for sk in r.sort_keys:
            store.pop(encode_key(r.hash_key, sk), None)
        self.decree += 1
        return rrdb.multi_remove_response(error=0, count=len(r.sort_keys), decree=self.decree)

    def op_incr(self, store: Store, r: Any) -> Any:
        old = store.get(r.key)
        exists = live(old)
        try:
            base = int(old[0]) if exists and old and old[0] else 0
        except ValueError:
            return rrdb.incr_response(error=4, new_value=0)
        new = base + r.increment
        ts = r.expire_ts_seconds
        if ts == 0:
            ts = old[1] if exists and old else 0
        elif ts < 0:
            ts = 0
        store[r.key] = (str(new).encode(), ts)
        self.decree += 1
        return rrdb.incr_response(error=0, new_value=new, decree=self.decree)

    @staticmethod
    def _check(store: Store, hk: bytes, check_sk: bytes, ctype: int, operand: bytes) -> Any:
        entry = store.get(encode_key(hk, check_sk))
        exist = live(entry)
        value = entry[0] if exist and entry else b""
        checks = {
            0: lambda: True,
            1: lambda: not exist,
            3: lambda: exist,
            10: lambda: exist and value == operand,
            13: lambda: exist and int(value) < int(operand),
        }
        return checks[ctype](), exist, value

    def op_check_and_set(self, store: Store, r: Any) -> Any:
        passed, exist, value = self._check(
            store, r.hash_key, r.check_sort_key, r.check_type, r.check_operand
        )
        if passed:
            sk = r.set_sort_key if r.set_diff_sort_key else r.check_sort_key
            store[encode_key(r.hash_key, sk)] = (r.set_value, r.set_expire_ts_seconds)
        resp = rrdb.check_and_set_response(error=0 if passed else 13)
        if r.return_check_value:
            resp.check_value_returned, resp.check_value_exist = True, exist
            resp.check_value = value if exist else None
        return resp

    def op_check_and_mutate(self, store: Store, r: Any) -> Any:
        passed, exist, value = self._check(
            store, r.hash_key, r.check_sort_key, r.check_type, r.check_operand
        )
        if passed:
            for m in r.mutate_list:
                key = encode_key(r.hash_key, m.sort_key)
                if m.operation == 0:
                    store[key] = (m.value, m.set_expire_ts_seconds)
                else:
                    store.pop(key, None)
        resp = rrdb.check_and_mutate_response(error=0 if passed else 13)
        if r.return_check_value:
            resp.check_value_returned, resp.check_value_exist = True, exist
            resp.check_value = value if exist else None
        return resp

    # -- reads ---------------------------------------------------------------------------

    def op_get(self, store: Store, key: bytes) -> Any:
        entry = store.get(key)
        if not live(entry):
            return rrdb.read_response(error=1)
        assert entry is not None
        return rrdb.read_response(error=0, value=entry[0])

    def op_ttl(self, store: Store, key: bytes) -> Any:
        entry = store.get(key)
        if not live(entry):
            return rrdb.ttl_response(error=1)
        assert entry is not None
        return rrdb.ttl_response(error=0, ttl_seconds=entry[1] - epoch_now() if entry[1] else -1)

    def op_sortkey_count(self, store: Store, hk: bytes) -> Any:
        prefix = hash_key_prefix(hk)
        n = sum(1 for k, e in store.items() if k.startswith(prefix) and live(e))
        return rrdb.count_response(error=0, count=n)

    def op_multi_get(self, store: Store, r: Any) -> Any:
        prefix = hash_key_prefix(r.hash_key)
        if r.sort_keys:
            keys = [encode_key(r.hash_key, sk) for sk in r.sort_keys]
        else:
            start = encode_key(r.hash_key, r.start_sortkey)
            stop = encode_key(r.hash_key, r.stop_sortkey) if r.stop_sortkey else next_blob(prefix)
            stop_inclusive = bool(r.stop_sortkey) and r.stop_inclusive
            keys = sorted(
                k
                for k in store
                if k.startswith(prefix)
                and (k > start or (k == start and r.start_inclusive))
                and (k < stop or (k == stop and stop_inclusive))
            )
            if r.reverse:
                keys.reverse()
        kvs, error = [], 0
        for k in keys:
            if not live(store.get(k)):
                continue
            if len(kvs) >= r.max_kv_count:
                error = 7
                break
            value = b"" if r.no_value else store[k][0]
            kvs.append(rrdb.key_value(key=decode_key(k)[1], value=value))
        kvs.sort(key=lambda kv: kv.key)
        return rrdb.multi_get_response(error=error, kvs=kvs)

    def op_batch_get(self, store: Store, r: Any) -> Any:
        data = []
        for fk in r.keys:
            entry = store.get(encode_key(fk.hash_key, fk.sort_key))
            if live(entry):
                assert entry is not None
                data.append(
                    rrdb.full_data(hash_key=fk.hash_key, sort_key=fk.sort_key, value=entry[0])
                )
        return rrdb.batch_get_response(error=0, data=data)

    # -- scanners ------------------------------------------------------------------------

    def op_get_scanner(self, store: Store, r: Any) -> Any:
        rows = [
            rrdb.key_value(key=k, value=b"" if r.no_value else e[0])
            for k, e in sorted(store.items())
            if live(e)
            and (k > r.start_key or (k == r.start_key and r.start_inclusive))
            and (k < r.stop_key or (k == r.stop_key and r.stop_inclusive))
        ]
        return self._batch(rows, r.batch_size, bool(r.only_return_count), None)

    def op_scan(self, store: Store, r: Any) -> Any:
        ctx = self.scanners.pop(r.context_id, None)
        if ctx is None:
            return rrdb.scan_response(error=1, kvs=[], context_id=-2)
        rows, batch_size, only_count = ctx
        return self._batch(rows, batch_size, only_count, r.context_id)

    def _batch(
        self, rows: list[Any], batch_size: int, only_count: bool, context_id: int | None
    ) -> Any:
        batch, rest = rows[:batch_size], rows[batch_size:]
        resp = rrdb.scan_response(error=0, kvs=[] if only_count else batch, context_id=-1)
        if only_count:
            resp.kv_count = len(batch)
        if rest:
            cid = context_id if context_id is not None else next(self._scanner_ids)
            self.scanners[cid] = (rest, batch_size, only_count)
            resp.context_id = cid
        return resp

    def op_clear_scanner(self, store: Store, context_id: int) -> None:
        self.scanners.pop(context_id, None)


class FakeMeta:
    def __init__(self, cluster: "FakeCluster", leader: str | None = None) -> None:
        self.cluster = cluster
        self.leader = leader  # None: this one is the leader
        handlers = {
            QUERY_CFG: self.on_query_cfg,
            "RPC_CM_CREATE_APP": self.on_create_app,
            "RPC_CM_DROP_APP": self.on_drop_app,
            "RPC_CM_LIST_APPS": self.on_list_apps,
            "RPC_CM_LIST_NODES": self.on_list_nodes,
            "RPC_CM_CLUSTER_INFO": self.on_cluster_info,
        }
        self.server = RpcServer(
            "127.0.0.1",
            0,
            {c: self._wrap(c, h) for c, h in handlers.items()},
            stop_timeout_s=STOP_TIMEOUT_S,
        )
        self.calls: list[str] = []

    @property
    def address(self) -> str:
        return self.server.address

    def _wrap(self, code: str, handler: Any) -> Any:
        async def run(req: RpcRequest) -> RpcReply:
            self.calls.append(code)
            if self.leader is not None and code != QUERY_CFG:
                raise DupkvError(ErrorCode.FORWARD_TO_OTHERS)
            return RpcReply(ErrorCode.OK, await handler(req.arg))

        return run

    async def on_query_cfg(self, q: Any) -> Any:
        if self.leader is not None:
            pc = meta.partition_configuration(primary=pack_address(self.leader))
            return meta.query_cfg_response(err=ErrorCode.FORWARD_TO_OTHERS, partitions=[pc])
        t = self.cluster.tables.get(q.app_name)
        if t is None or t.status != 1:
            err = ErrorCode.OBJECT_NOT_FOUND if t is None else ErrorCode.BUSY_DROPPING
            return meta.query_cfg_response(err=err, partitions=[])
        self.cluster.before_query_cfg(t)
        partitions = [
            meta.partition_configuration(
                pid=pack_gpid(t.app_id, i),
                ballot=1 if p else 0,
                max_replica_count=t.replica_count,
                primary=pack_address(p) if p else 0,
                secondaries=[],
                last_drops=[],
            )
            for i, p in enumerate(t.primaries)
        ]
        return meta.query_cfg_response(
            err=ErrorCode.OK,
            app_id=t.app_id,
            partition_count=t.partition_count,
            is_stateful=True,
            partitions=partitions,
        )

    async def on_create_app(self, r: Any) -> Any:
        existing = self.cluster.tables.get(r.app_name)
        if existing is not None and existing.status == 1:
            if r.options.success_if_exist:
                return meta.configuration_create_app_response(
                    err=ErrorCode.OK, appid=existing.app_id
                )
            return meta.configuration_create_app_response(err=ErrorCode.APP_EXIST, appid=0)
        t = self.cluster.add_table(
            r.app_name,
            r.options.partition_count,
            replica_count=r.options.replica_count,
            envs=dict(r.options.envs or {}),
            placed=not self.cluster.create_unplaced,
        )
        return meta.configuration_create_app_response(err=ErrorCode.OK, appid=t.app_id)

    async def on_drop_app(self, r: Any) -> Any:
        t = self.cluster.tables.get(r.app_name)
        if t is None or t.status != 1:
            return meta.configuration_drop_app_response(err=ErrorCode.APP_NOT_EXIST)
        t.status = 6  # AS_DROPPED
        return meta.configuration_drop_app_response(err=ErrorCode.OK)

    async def on_list_apps(self, r: Any) -> Any:
        infos = [
            meta.app_info(
                status=t.status,
                app_type="pegasus",
                app_name=t.name,
                app_id=t.app_id,
                partition_count=t.partition_count,
                envs=t.envs,
                is_stateful=True,
                max_replica_count=t.replica_count,
                expire_second=0,
                create_second=1700000000,
                drop_second=0,
            )
            for t in self.cluster.tables.values()
        ]
        return meta.configuration_list_apps_response(err=ErrorCode.OK, infos=infos)

    async def on_list_nodes(self, r: Any) -> Any:
        infos = [
            meta.node_info(status=1, address=pack_address(rep.address))
            for rep in self.cluster.replicas
        ]
        return meta.configuration_list_nodes_response(err=ErrorCode.OK, infos=infos)

    async def on_cluster_info(self, r: Any) -> Any:
        return meta.configuration_cluster_info_response(
            err=ErrorCode.OK,
            keys=["meta_servers", "primary_meta_server"],
            values=[self.address, self.address],
        )


class FakeCluster:
    def __init__(self) -> None:
        self.metas: list[FakeMeta] = []
        self.replicas: list[FakeReplica] = []
        self.tables: dict[str, FakeTable] = {}
        self.data: dict[tuple[int, int], Store] = {}
        self.placement: dict[tuple[int, int], str] = {}  # gpid -> replica address
        self.create_unplaced = False  # create_app leaves partitions without primary
        self.place_after_queries = 0  # ...until query_cfg was asked this many times
        self._next_app_id = 1

    @property
    def meta_address(self) -> str:
        return self.metas[0].address

    def meta_calls(self, code: str = QUERY_CFG) -> int:
        return sum(m.calls.count(code) for m in self.metas)

    def add_table(
        self,
        name: str,
        partition_count: int = 4,
        *,
        replica_count: int = 1,
        envs: dict[str, str] | None = None,
        placed: bool = True,
    ) -> FakeTable:
        t = FakeTable(name, self._next_app_id, partition_count, [None] * partition_count)
        t.replica_count, t.envs = replica_count, envs or {}
        self._next_app_id += 1
        self.tables[name] = t
        if placed:
            self.place(t)
        return t

    def place(self, t: FakeTable) -> None:
        for i in range(t.partition_count):
            self.move(t, i, self.replicas[i % len(self.replicas)])

    def move(self, t: FakeTable, pidx: int, replica: FakeReplica | None) -> None:
        """Make `replica` the partition's primary, as far as the meta and replicas know."""
        address = replica.address if replica is not None else None
        t.primaries[pidx] = address
        if address is None:
            self.placement.pop((t.app_id, pidx), None)
        else:
            self.placement[(t.app_id, pidx)] = address

    def before_query_cfg(self, t: FakeTable) -> None:
        if self.place_after_queries > 0:
            self.place_after_queries -= 1
            if self.place_after_queries == 0:
                self.place(t)

    async def add_meta(self, leader: str | None = None) -> FakeMeta:
        m = FakeMeta(self, leader)
        await m.server.start()
        self.metas.append(m)
        return m

    async def restart_replica(self, index: int) -> FakeReplica:
        """Stop a replica and start a new one on another port serving the same partitions."""
        old = self.replicas[index]
        await old.server.stop()
        new = FakeReplica(self)
        await new.server.start()
        self.replicas[index] = new
        for t in self.tables.values():
            for i, p in enumerate(t.primaries):
                if p == old.address:
                    self.move(t, i, new)
        return new

    def partition_of(self, t: FakeTable, replica: FakeReplica) -> list[int]:
        return [i for i, p in enumerate(t.primaries) if p == replica.address]

    async def stop(self) -> None:
        for s in [*self.metas, *self.replicas]:
            await s.server.stop()


@asynccontextmanager
async def fake_cluster(replicas: int = 2, metas: int = 1) -> AsyncIterator[FakeCluster]:
    cluster = FakeCluster()
    try:
        for _ in range(replicas):
            rep = FakeReplica(cluster)
            await rep.server.start()
            cluster.replicas.append(rep)
        for _ in range(metas):
            await cluster.add_meta()
        yield cluster
    finally:
        await cluster.stop()


@asynccontextmanager
async def opened_table(
    replicas: int = 2, partitions: int = 4, name: str = "t"
) -> AsyncIterator[tuple[FakeCluster, FakeTable, Table]]:
    """A fake cluster with one table, and that table opened by a connected client."""
    async with fake_cluster(replicas) as c:
        t = c.add_table(name, partitions)
        async with await Client.connect(c.meta_address) as client:
            yield c, t, await client.open_table(name)
