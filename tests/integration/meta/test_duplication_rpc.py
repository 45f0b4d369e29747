"""The meta server's duplication RPCs and HTTP endpoint, against real meta processes.

Two clusters: the source (`bjsrv-account`) and the remote (`tjsrv-account`), each a meta
server without replica servers. The test plays the replica server itself: it heartbeats with
`config_sync` under a made-up address, so new tables are placed on that "node", and sends
`duplication_sync` as a replica server would. Every error code of §2.4-2.5 is checked, then the
meta server is restarted and everything (status, fail mode, stored progress) must be back; the
same again with the ZooKeeper backend, whose nodes a raw kazoo client reads byte for byte.
"""

import asyncio
import json
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kazoo.client import KazooClient
from support.aio import run_async
from support.cluster import Cluster, free_port, http_get
from support.zookeeper import ZkServer

from dupkv.base.config import Config
from dupkv.base.errors import ErrorCode
from dupkv.duplication.status import DupStatus, FailMode
from dupkv.meta.server import MetaServer
from dupkv.meta.store import StoreUnavailable
from dupkv.rpc.client import ConnectionPool
from dupkv.rpc.idl_meta import dup, meta
from dupkv.rpc.ids import pack_address, pack_gpid

SOURCE, REMOTE = "bjsrv-account", "tjsrv-account"
NODE = "127.0.0.1:39999"  # the replica server this test plays; nothing listens there
LOG, PAUSE, REMOVED = DupStatus.DS_LOG, DupStatus.DS_PAUSE, DupStatus.DS_REMOVED
FULL_HINT = "full duplication (-p) is not supported yet; add the duplication without -p"
REMOTE_TIMEOUT_MS = 1000


# -- talking to a meta server -----------------------------------------------------------------


def call(address: str, code: str, arg: Any) -> Any:
    async def go() -> Any:
        pool = ConnectionPool()
        try:
            async with asyncio.timeout(10):
                err, resp = await pool.call(address, code, arg, timeout_ms=8000)
        finally:
            await pool.close()
        assert err == ErrorCode.OK, f"{code} -> {err}"
        return resp

    return asyncio.run(go())


class Meta:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    @property
    def address(self) -> str:
        return self.cluster.meta_address

    def heartbeat(self, node: str = NODE) -> None:
        req = meta.config_sync_request(node=pack_address(node), stored_replicas=[])
        assert call(self.address, "RPC_CM_CONFIG_SYNC", req).err == ErrorCode.OK

    def create_app(self, name: str, partitions: int = 4) -> int:
        self.heartbeat()  # alive, so the new table's partitions are placed on NODE
        opts = meta.create_app_options(partition_count=partitions, replica_count=1, envs={})
        req = meta.configuration_create_app_request(app_name=name, options=opts)
        resp = call(self.address, "RPC_CM_CREATE_APP", req)
        assert resp.err == ErrorCode.OK, resp
        return resp.appid

    def app_info(self, name: str) -> Any:
        resp = call(self.address, "RPC_CM_LIST_APPS", meta.configuration_list_apps_request())
        return next(info for info in resp.infos if info.app_name == name)

    def add(
        self, app: str, remote: str = REMOTE, checkpoint: bool | None = False, **kw: Any
    ) -> Any:
        req = dup.duplication_add_request(app_name=app, remote_cluster_name=remote, **kw)
        if checkpoint is not None:
            req.is_duplicating_checkpoint = checkpoint
        return call(self.address, "RPC_CM_ADD_DUPLICATION", req)

    def modify(
        self, app: str, dupid: int, status: int | None = None, mode: int | None = None
    ) -> Any:
        req = dup.duplication_modify_request(
            app_name=app, dupid=dupid, status=status, fail_mode=mode
        )
        return call(self.address, "RPC_CM_MODIFY_DUPLICATION", req)

    def query(self, app: str) -> Any:
        req = dup.duplication_query_request(app_name=app)
        return call(self.address, "RPC_CM_QUERY_DUPLICATION", req)

    def list_dups(self, pattern: str, match_type: int) -> Any:
        req = dup.duplication_list_request(app_name_pattern=pattern, match_type=match_type)
        return call(self.address, "RPC_CM_LIST_DUPLICATION", req)

    def sync(self, confirms: dict[tuple[int, int], list[Any]], node: str = NODE) -> Any:
        req = dup.duplication_sync_request(
            node=pack_address(node),
            confirm_list={pack_gpid(a, p): entries for (a, p), entries in confirms.items()},
        )
        return call(self.address, "RPC_CM_DUPLICATION_SYNC", req)

    def http(self, app: str) -> tuple[int, bytes]:
        import urllib.error

        try:
            return 200, http_get(self.cluster.meta_port, f"/meta/app/duplication?name={app}")
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def restart(self) -> None:
        assert self.cluster.meta is not None
        self.cluster.meta.stop()
        self.cluster.meta.start()


def confirm(dupid: int, decree: int, lcd: int | None = None) -> Any:
    return dup.duplication_confirm_entry(
        dupid=dupid, confirmed_decree=decree, checkpoint_prepared=False, last_committed_decree=lcd
    )


@pytest.fixture(scope="module")
def silent_meta() -> Iterator[int]:
    """A port that accepts connections and never answers: a remote meta that hangs."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield s.getsockname()[1]


def pair(
    root: Path, silent_port: int, replication: str = "", extra: str = ""
) -> tuple[Cluster, Cluster]:
    """The source and the remote cluster; `replication` adds lines to the source's
    [replication] section, `extra` whole sections."""
    a_port, b_port = free_port(), free_port()
    source_extra = f"""
[replication]
dup_progress_min_update_period_ms = 1000
dup_remote_meta_timeout_ms = {REMOTE_TIMEOUT_MS}
{replication}
[pegasus.clusters]
dead-cluster = 127.0.0.1:{free_port()}
silent-cluster = 127.0.0.1:{silent_port}
[duplication-group]
cluster_without_address = 3
dead-cluster = 4
silent-cluster = 5
{extra}
"""
    a = Cluster(
        SOURCE, root / "a", replicas=0, cluster_id=1, meta_port=a_port,
        peers={REMOTE: (f"127.0.0.1:{b_port}", 2)}, extra_config=source_extra,
    )  # fmt: skip
    b = Cluster(
        REMOTE, root / "b", replicas=0, cluster_id=2, meta_port=b_port,
        peers={SOURCE: (f"127.0.0.1:{a_port}", 1)},
    )  # fmt: skip
    return a, b


@pytest.fixture(scope="module")
def metas(
    tmp_path_factory: pytest.TempPathFactory, silent_meta: int
) -> Iterator[tuple[Meta, Meta]]:
    a, b = pair(tmp_path_factory.mktemp("dup-rpc"), silent_meta)
    try:
        a.start()
        b.start()
        source, remote = Meta(a), Meta(b)
        source.heartbeat()
        yield source, remote
    except BaseException:
        print(a.logs(), b.logs())
        raise
    finally:
        a.stop()
        b.stop()


# -- add ------------------------------------------------------------------------------------


def test_add_answers_every_error_of_the_add_rpc(metas: tuple[Meta, Meta]) -> None:
    source, remote = metas
    source.create_app("add_errors")
    source.create_app("add_errors_2")
    remote.create_app("add_errors")
    bad = ErrorCode.INVALID_PARAMETERS
    cases = [
        (dict(remote=SOURCE), bad, "adding duplication to itself"),
        (dict(remote="nowhere"), bad, "get_duplication_cluster_id(nowhere)"),
        (dict(remote="cluster_without_address"), ErrorCode.INVALID_PARAMETERS,
         "failed to find cluster[cluster_without_address] address in config [pegasus.clusters]"),
        (dict(remote_replica_count=-1), ErrorCode.INVALID_PARAMETERS, "remote_replica_count(-1)"),
        (dict(checkpoint=True), ErrorCode.INVALID_PARAMETERS, FULL_HINT),
        (dict(checkpoint=None), ErrorCode.INVALID_PARAMETERS, FULL_HINT),  # Thrift default: true
        (dict(app="no_such_app"), ErrorCode.APP_NOT_EXIST, "app no_such_app was not found"),
        (dict(app="add_errors_2"), ErrorCode.APP_NOT_EXIST,
         f"table add_errors_2 does not exist in cluster {REMOTE}"),
        (dict(remote_app_name="elsewhere"), ErrorCode.APP_NOT_EXIST,
         f"table elsewhere does not exist in cluster {REMOTE}"),
        (dict(remote="dead-cluster"), ErrorCode.TIMEOUT, "cannot reach cluster dead-cluster"),
    ]  # fmt: skip
    for kw, code, hint in cases:
        resp = source.add(kw.pop("app", "add_errors"), **kw)
        assert (resp.err, hint in (resp.hint or "")) == (code, True), (kw, resp)
    # A remote meta that accepts the connection and never answers costs the time limit only.
    begin = time.monotonic()
    resp = source.add("add_errors", remote="silent-cluster")
    took = time.monotonic() - begin
    assert resp.err == ErrorCode.TIMEOUT and "silent-cluster" in resp.hint
    assert REMOTE_TIMEOUT_MS / 1000 * 0.9 <= took < REMOTE_TIMEOUT_MS / 1000 + 1.5
    assert source.query("add_errors").entry_list == []
    assert not source.app_info("add_errors").duplicating

    ok = source.add("add_errors")
    assert ok.err == ErrorCode.OK and ok.dupid > 0
    again = source.add("add_errors", remote_app_name="whatever")
    assert (again.err, again.dupid, again.remote_app_name) == (
        ErrorCode.DUP_EXIST,
        ok.dupid,
        "add_errors",
    )
    # Another table cannot duplicate into the same remote table.
    clash = source.add("add_errors_2", remote_app_name="add_errors")
    assert clash.err == ErrorCode.INVALID_PARAMETERS and "another app(add_errors)" in clash.hint


def test_add_query_modify_list_and_remove(metas: tuple[Meta, Meta]) -> None:
    source, remote = metas
    app_id = source.create_app("lifecycle", partitions=4)
    remote.create_app("lifecycle_copy")
    resp = source.add("lifecycle", remote_app_name="lifecycle_copy", remote_replica_count=3)
    assert (resp.err, resp.appid, resp.remote_app_name, resp.remote_replica_count) == (
        ErrorCode.OK,
        app_id,
        "lifecycle_copy",
        3,
    )
    dupid = resp.dupid
    assert abs(dupid - time.time()) < 60
    assert source.app_info("lifecycle").duplicating

    q = source.query("lifecycle")
    assert (q.err, q.appid) == (ErrorCode.OK, app_id)
    [e] = q.entry_list
    assert (e.dupid, e.status, e.remote, e.fail_mode) == (dupid, LOG, REMOTE, FailMode.FAIL_SLOW)
    assert (e.remote_app_name, e.remote_replica_count) == ("lifecycle_copy", 3)
    assert abs(e.create_ts - time.time() * 1000) < 60_000

    # Modify: every answer of §2.4.
    for status, mode, err in (
        (PAUSE, None, ErrorCode.OK),
        (PAUSE, None, ErrorCode.OK),
        (DupStatus.DS_PREPARE, None, ErrorCode.INVALID_PARAMETERS),
        (DupStatus.DS_INIT, None, ErrorCode.INVALID_PARAMETERS),
        (LOG, None, ErrorCode.OK),
        (None, FailMode.FAIL_SKIP, ErrorCode.OK),
        (LOG, None, ErrorCode.OK),
    ):
        m = source.modify("lifecycle", dupid, status, mode)
        assert m.err == err, (status, mode, m)
        if err == ErrorCode.OK:
            assert m.appid == app_id
    assert source.modify("lifecycle", dupid + 1, PAUSE).err == ErrorCode.OBJECT_NOT_FOUND
    assert source.modify("no_such_app", dupid, PAUSE).err == ErrorCode.APP_NOT_EXIST
    [e] = source.query("lifecycle").entry_list
    assert (e.status, e.fail_mode) == (LOG, FailMode.FAIL_SKIP)

    # List: partition states of every partition.
    listed = source.list_dups("lifecycle", dup.pattern_match_type.PMT_MATCH_EXACT)
    assert listed.err == ErrorCode.OK and list(listed.app_states) == ["lifecycle"]
    state = listed.app_states["lifecycle"]
    assert (state.appid, state.app_name, state.partition_count) == (app_id, "lifecycle", 4)
    assert set(state.duplications[dupid].partition_states) == {0, 1, 2, 3}
    assert (
        "lifecycle"
        in source.list_dups("cycle", dup.pattern_match_type.PMT_MATCH_POSTFIX).app_states
    )
    bad = source.list_dups("x", dup.pattern_match_type.PMT_MATCH_REGEX)
    assert bad.err == "ERR_NOT_IMPLEMENTED" and "PMT_MATCH_REGEX" in bad.hint_message

    # HTTP.
    status, body = source.http("lifecycle")
    assert status == 200
    doc = json.loads(body)
    assert doc["appid"] == app_id and doc["1"]["dupid"] == dupid
    assert doc["1"]["status"] == "DS_LOG" and doc["1"]["fail_mode"] == "FAIL_SKIP"
    assert doc["1"]["partition_states"]["3"] == {
        "confirmed_decree": -1,
        "decree_gap": -1,
        "last_committed_decree": -1,
    }
    assert time.strptime(doc["1"]["create_ts"], "%Y-%m-%d %H:%M:%S")
    assert source.http("no_such_app") == (404, b"ERR_APP_NOT_EXIST")
    assert source.http("") == (400, b"name should not be empty")

    # Remove.
    assert source.modify("lifecycle", dupid, REMOVED).err == ErrorCode.OK
    assert source.query("lifecycle").entry_list == []
    assert not source.app_info("lifecycle").duplicating
    assert source.modify("lifecycle", dupid, LOG).err == ErrorCode.OBJECT_NOT_FOUND
    assert json.loads(source.http("lifecycle")[1]) == {"appid": app_id}
    again = source.add("lifecycle", remote_app_name="lifecycle_copy")
    assert again.err == ErrorCode.OK and again.dupid != dupid


def test_sync_reports_every_partition_and_stores_progress(metas: tuple[Meta, Meta]) -> None:
    source, remote = metas
    app_id = source.create_app("synced", partitions=8)
    remote.create_app("synced")
    dupid = source.add("synced").dupid
    before = source.query("synced").entry_list[0]

    resp = source.sync(
        {(app_id, p): [confirm(dupid, d, d + 10)] for p, d in ((1, 5), (2, 6), (3, 7))}
    )
    assert resp.err == ErrorCode.OK
    entry = resp.dup_map[app_id][dupid]
    assert entry.progress == {0: -1, 1: 5, 2: 6, 3: 7, 4: -1, 5: -1, 6: -1, 7: -1}
    assert (entry.status, entry.remote, entry.create_ts, entry.fail_mode) == (
        LOG,
        REMOTE,
        before.create_ts,
        FailMode.FAIL_SLOW,
    )
    # Unknown dupids and tables are ignored; an unknown node is refused.
    resp = source.sync({(app_id, 4): [confirm(dupid + 1, 9)], (999, 0): [confirm(dupid, 9)]})
    assert resp.dup_map[app_id][dupid].progress[4] == -1
    assert source.sync({}, node="127.0.0.1:39998").err == ErrorCode.OBJECT_NOT_FOUND
    # The HTTP view shows what the replica reported, and how far behind it is.
    part = json.loads(source.http("synced")[1])["1"]["partition_states"]["1"]
    assert part == {"confirmed_decree": 5, "decree_gap": 10, "last_committed_decree": 15}


def test_a_restart_keeps_status_fail_mode_and_stored_progress(metas: tuple[Meta, Meta]) -> None:
    source, remote = metas
    app_id = source.create_app("durable", partitions=4)
    remote.create_app("durable")
    dupid = source.add("durable").dupid
    source.sync({(app_id, 0): [confirm(dupid, 100)], (app_id, 2): [confirm(dupid, 300)]})
    # Within dup_progress_min_update_period_ms: kept in memory, not stored.
    resp = source.sync({(app_id, 0): [confirm(dupid, 150)]})
    assert resp.dup_map[app_id][dupid].progress[0] == 100
    assert source.modify("durable", dupid, PAUSE, FailMode.FAIL_SKIP).err == ErrorCode.OK
    before = source.query("durable").entry_list

    source.restart()
    assert source.query("durable").entry_list == before
    [e] = before
    assert (e.status, e.fail_mode) == (PAUSE, FailMode.FAIL_SKIP)
    assert source.app_info("durable").duplicating
    # The node is unknown until it heartbeats again, as after any meta restart.
    assert source.sync({}).err == ErrorCode.OBJECT_NOT_FOUND
    source.heartbeat()
    progress = source.sync({}).dup_map[app_id][dupid].progress
    assert progress == {0: 100, 1: -1, 2: 300, 3: -1}
    # Progress never goes back; the first report after a restart is stored at once.
    progress = source.sync({(app_id, 0): [confirm(dupid, 90)], (app_id, 1): [confirm(dupid, 7)]})
    assert progress.dup_map[app_id][dupid].progress == {0: 100, 1: 7, 2: 300, 3: -1}
    assert source.modify("durable", dupid, LOG).err == ErrorCode.OK


def test_duplication_disabled(tmp_path: Path, silent_meta: int) -> None:
    a, _ = pair(tmp_path, silent_meta, replication="duplication_enabled = false")
    try:
        a.start()
        source = Meta(a)
        source.heartbeat()
        source.create_app("off")
        assert source.add("off").err == ErrorCode.SERVICE_NOT_ACTIVE
        assert source.modify("off", 1, PAUSE).err == ErrorCode.SERVICE_NOT_ACTIVE
        assert source.query("off").err == ErrorCode.SERVICE_NOT_ACTIVE
        assert (
            source.list_dups("", dup.pattern_match_type.PMT_MATCH_ALL).err
            == ErrorCode.SERVICE_NOT_ACTIVE
        )
        assert source.sync({}).err == ErrorCode.SERVICE_NOT_ACTIVE
        status, body = source.http("off")
        assert (status, b"duplication is not enabled" in body) == (404, True)
    finally:
        a.stop()


# -- ZooKeeper ------------------------------------------------------------------------------


def test_zookeeper_layout_and_restart(
    tmp_path: Path, silent_meta: int, zookeeper: ZkServer
) -> None:
    root = f"/dupkv-test/{uuid.uuid4().hex[:12]}/{SOURCE}"
    zk_config = (
        f"[meta_server]\nmeta_state_service_type = meta_state_service_zookeeper\n"
        f"cluster_root = {root}\n[zookeeper]\nhosts_list = {zookeeper.hosts}\n"
    )
    a, b = pair(tmp_path, silent_meta, extra=zk_config)
    zk = KazooClient(hosts=zookeeper.hosts, timeout=10.0)
    try:
        a.start()
        b.start()
        source, remote = Meta(a), Meta(b)
        source.heartbeat()
        app_id = source.create_app("zk_app", partitions=4)
        remote.create_app("zk_copy")
        added = source.add("zk_app", remote_app_name="zk_copy", remote_replica_count=3)
        assert added.err == ErrorCode.OK
        dupid = added.dupid
        source.sync({(app_id, 1): [confirm(dupid, 4321)], (app_id, 3): [confirm(dupid, 0)]})
        assert source.modify("zk_app", dupid, PAUSE, FailMode.FAIL_SKIP).err == ErrorCode.OK
        create_ts = source.query("zk_app").entry_list[0].create_ts

        zk.start(timeout=10)
        dup_path = f"{root}/apps/{app_id}/duplication/{dupid}"
        data, _ = zk.get(dup_path)
        assert data == (
            b'{"remote":"tjsrv-account","status":"DS_PAUSE","create_timestamp_ms":%d,'
            b'"fail_mode":"FAIL_SKIP","remote_app_name":"zk_copy","remote_replica_count":3}'
            % create_ts
        )
        assert sorted(zk.get_children(dup_path)) == ["1", "3"]
        assert zk.get(f"{dup_path}/1")[0] == b"4321" and zk.get(f"{dup_path}/3")[0] == b"0"
        app_node = json.loads(zk.get(f"{root}/apps/{app_id}")[0])
        assert app_node["duplicating"] == 1

        before = source.query("zk_app").entry_list
        source.restart()
        assert source.query("zk_app").entry_list == before
        source.heartbeat()
        assert source.sync({}).dup_map[app_id][dupid].progress == {0: -1, 1: 4321, 2: -1, 3: 0}

        # Behaviour 33 on a real store: damaged nodes written behind the meta server's back.
        assert a.meta is not None
        a.meta.stop()
        zk.set(f"{dup_path}/1", b"xxx")
        zk.create(f"{dup_path}/x", b"5")
        top = f"{root}/apps/{app_id}/duplication"
        zk.create(f"{top}/not-a-dupid", b"{}")
        zk.create(f"{top}/123", b"")
        a.meta.start()
        source.heartbeat()
        [e] = source.query("zk_app").entry_list
        assert (e.dupid, e.status) == (dupid, PAUSE)
        progress = source.sync({}).dup_map[app_id][dupid].progress
        assert progress == {0: -1, 2: -1, 3: 0}  # partition 1 stops duplicating
        assert "stops duplicating" in a.meta.log()

        # Removal deletes the whole subtree, foreign children included.
        assert source.modify("zk_app", dupid, REMOVED).err == ErrorCode.OK
        assert not zk.exists(dup_path)
        assert not json.loads(zk.get(f"{root}/apps/{app_id}")[0])["duplicating"]
    except BaseException:
        print(a.logs(), b.logs())
        raise
    finally:
        if zk.connected:
            zk.stop()
        zk.close()
        a.stop()
        b.stop()


# -- a store write whose outcome is unknown ---------------------------------------------------


def in_process_config(name: str, data: Path, peers: dict[str, str]) -> Config:
    clusters = "\n".join(f"{n} = {addr}" for n, addr in peers.items())
    group = "\n".join(f"{n} = {i}" for i, n in enumerate([name, *peers], 1))
    return Config.parse(
        f"[replication]\ncluster_name = {name}\ndata_dirs = {data}\n"
        f"[pegasus.clusters]\n{clusters}\n[duplication-group]\n{group}\n"
    )


@run_async
async def test_a_write_that_may_have_happened_is_reread_from_the_store(tmp_path: Path) -> None:
    remote = MetaServer(in_process_config(REMOTE, tmp_path / "b", {}), port=0)
    await remote.start()
    cfg = in_process_config(SOURCE, tmp_path / "a", {REMOTE: f"127.0.0.1:{remote.rpc.port}"})  # type: ignore[union-attr]
    source = MetaServer(cfg, port=0)
    await source.start()
    pool = ConnectionPool()

    async def rpc(server: MetaServer, code: str, arg: Any) -> Any:
        assert server.rpc is not None
        err, resp = await pool.call(server.rpc.address, code, arg, timeout_ms=5000)
        assert err == ErrorCode.OK
        return resp

    store = source.store
    assert store is not None
    real_commit = store.commit

    async def commit_then_lose_the_answer(ops: Any) -> None:
        store.commit = real_commit  # type: ignore[method-assign]
        await real_commit(ops)
        raise StoreUnavailable("", "injected: the write went through, its answer was lost")

    try:
        for server in (source, remote):
            opts = meta.create_app_options(partition_count=2, replica_count=1, envs={})
            req = meta.configuration_create_app_request(app_name="t", options=opts)
            assert (await rpc(server, "RPC_CM_CREATE_APP", req)).err == ErrorCode.OK
        add = dup.duplication_add_request(
            app_name="t", remote_cluster_name=REMOTE, is_duplicating_checkpoint=False
        )
        store.commit = commit_then_lose_the_answer  # type: ignore[method-assign]
        lost = await rpc(source, "RPC_CM_ADD_DUPLICATION", add)
        assert lost.err == ErrorCode.TIMEOUT
        # The next request reloads from the store: the duplication is there, and only once.
        again = await rpc(source, "RPC_CM_ADD_DUPLICATION", add)
        assert again.err == ErrorCode.DUP_EXIST
        store.commit = commit_then_lose_the_answer  # type: ignore[method-assign]
        pause = dup.duplication_modify_request(app_name="t", dupid=again.dupid, status=PAUSE)
        assert (await rpc(source, "RPC_CM_MODIFY_DUPLICATION", pause)).err == ErrorCode.TIMEOUT
        query = dup.duplication_query_request(app_name="t")
        [entry] = (await rpc(source, "RPC_CM_QUERY_DUPLICATION", query)).entry_list
        assert (entry.dupid, entry.status) == (again.dupid, PAUSE)
    finally:
        await pool.close()
        await source.stop()
        await remote.stop()
