"""Duplication under load and under faults: 100k writes, a source replica server killed
mid-shipping, the remote cluster down for 30 s, pause/start/remove, FAIL_SKIP, atomic
writes — two real clusters on 127.0.0.1."""

import asyncio
import json
import random
import time

import pytest
from support.cluster import Cluster, free_port, http_get
from support.dup import (
    SOURCE,
    TARGET,
    add_dup,
    dump,
    metric_sum,
    modify_dup,
    replica_dup_status,
    two_clusters,
    wait_equal,
)

from dupkv.base.errors import DupkvError, ErrorCode
from dupkv.client import Client
from dupkv.client.blocking import BlockingClient
from dupkv.duplication.status import DupStatus, FailMode


def setup_table(ca, cb, app, src=4, dst=4):
    ca.create_table(app, partition_count=src)
    cb.create_table(app, partition_count=dst)
    dupid = add_dup(ca, app, TARGET)
    time.sleep(1.5)  # the replicas learn about it at their next sync
    return dupid


async def write_many(meta: str, app: str, n: int, seed: int, concurrency: int = 64) -> dict:
    """n writes (puts, multi_puts, removes, TTLs) with `concurrency` in flight; returns the
    expected final content of the table."""
    rng = random.Random(seed)
    plan = []
    for i in range(n):
        hk = b"k%d" % rng.randrange(n // 4)
        r = rng.random()
        if r < 0.7:
            plan.append(("set", hk, b"s", b"v%d" % i, 3600 if i % 5 == 0 else 0))
        elif r < 0.85:
            plan.append(("mset", hk, {b"a": b"x%d" % i, b"b": b"y%d" % i}))
        else:
            plan.append(("del", hk, b"s"))
    expected: dict = {}
    # Writes to one hash key must not race each other for `expected` to be exact: shard
    # the plan by hash key, one sequential worker per shard.
    shards: list[list] = [[] for _ in range(concurrency)]
    for op in plan:
        shards[hash(op[1]) % concurrency].append(op)
    async with await Client.connect(meta) as client:
        table = await client.open_table(app)

        async def worker(ops):
            for op in ops:
                if op[0] == "set":
                    await table.set(op[1], op[2], op[3], ttl_seconds=op[4])
                elif op[0] == "mset":
                    await table.multi_set(op[1], op[2])
                else:
                    await table.delete(op[1], op[2])

        await asyncio.gather(*(worker(s) for s in shards))
    for op in plan:
        if op[0] == "set":
            expected[(op[1], op[2])] = op[3]
        elif op[0] == "mset":
            expected.update({(op[1], sk): v for sk, v in op[2].items()})
        else:
            expected.pop((op[1], op[2]), None)
    return expected


def test_100k_writes_arrive_byte_identical(clients, clusters):
    ca, cb = clients
    setup_table(ca, cb, "big", 8, 4)
    expected = asyncio.run(write_many(clusters[0].meta_address, "big", 100_000, seed=1))
    wait_equal(ca, cb, "big", "big", timeout_s=120, expected=expected)


def test_sigkill_of_a_source_replica_server_loses_nothing(clients, clusters):
    a, _ = clusters
    ca, cb = clients
    setup_table(ca, cb, "kill", 4, 4)
    t = ca.open_table("kill")
    expected = {}
    for i in range(2000):
        t.set(b"k%d" % i, b"s", b"v%d" % i)
        expected[(b"k%d" % i, b"s")] = b"v%d" % i
        if i == 1000:
            a.replica_procs[0].kill()  # mid-shipping: whatever was in flight is lost there
            a.restart_replica(0)
    wait_equal(ca, cb, "kill", "kill", timeout_s=90, expected=expected)


def test_remote_down_30s_backlog_grows_then_drains(clients, clusters):
    a, b = clusters
    ca, cb = clients
    setup_table(ca, cb, "outage", 4, 4)
    app_id = ca.open_table("outage").app_id
    for p in b.replica_procs:
        p.stop()
    t = ca.open_table("outage")
    expected = {}
    started = time.monotonic()
    i = 0
    while time.monotonic() - started < 30:
        t.set(b"k%d" % i, b"s", b"v%d" % i)
        expected[(b"k%d" % i, b"s")] = b"v%d" % i
        i += 1
        time.sleep(0.01)
    backlog = metric_sum(a, "dup.pending_mutations_count")
    failed = metric_sum(a, "dup_failed_shipping_ops")
    status = replica_dup_status(a, app_id)
    not_dup = sum(d["not_duplicated_mutations_num"] for p in status.values() for d in p.values())
    assert backlog > 100 and not_dup > 100 and failed > 0, (backlog, not_dup, failed)
    for n in range(len(b.replica_procs)):
        b.restart_replica(n)
    wait_equal(ca, cb, "outage", "outage", timeout_s=90, expected=expected)
    deadline = time.monotonic() + 15
    while metric_sum(a, "dup.pending_mutations_count") > 0 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert metric_sum(a, "dup.pending_mutations_count") == 0
    # Writes made during the outage waited for the remote: the lag percentiles show it.
    assert metric_sum(a, "dup.time_lag_ms", "p99") > 1000


def test_pause_start_remove(clients, clusters):
    ca, cb = clients
    dupid = setup_table(ca, cb, "pausing", 2, 2)
    ta, tb = ca.open_table("pausing"), cb.open_table("pausing")
    ta.set(b"before", b"s", b"1")
    wait_equal(ca, cb, "pausing", "pausing")
    assert modify_dup(ca, "pausing", dupid, status=DupStatus.DS_PAUSE) == ErrorCode.OK
    time.sleep(1.5)
    ta.set(b"paused", b"s", b"2")
    time.sleep(3)
    assert tb.get(b"paused", b"s") is None  # nothing ships while paused
    assert modify_dup(ca, "pausing", dupid, status=DupStatus.DS_LOG) == ErrorCode.OK
    wait_equal(ca, cb, "pausing", "pausing")  # the backlog kept in the log arrives
    assert modify_dup(ca, "pausing", dupid, status=DupStatus.DS_REMOVED) == ErrorCode.OK
    time.sleep(1.5)
    ta.set(b"removed", b"s", b"3")
    time.sleep(3)
    assert tb.get(b"removed", b"s") is None
    # Illegal requests get Pegasus's codes.
    assert modify_dup(ca, "pausing", dupid, status=DupStatus.DS_LOG) == ErrorCode.OBJECT_NOT_FOUND
    assert modify_dup(ca, "nosuchtable", dupid, status=DupStatus.DS_LOG) == ErrorCode.APP_NOT_EXIST


def test_atomic_writes_duplicate_or_are_refused(clients, clusters):
    ca, cb = clients
    setup_table(ca, cb, "atomic", 2, 2)
    ta = ca.open_table("atomic")
    assert ta.incr(b"n", b"c", 5) == 5
    assert ta.incr(b"n", b"c", 2) == 7
    result = ta.check_and_set(b"n", b"c", 15, b"7", b"d", b"done")  # CT_VALUE_INT_EQUAL
    assert result.set_succeed
    wait_equal(ca, cb, "atomic", "atomic", expected={(b"n", b"c"): b"7", (b"n", b"d"): b"done"})
    ca.create_table("refuse", partition_count=2, envs={"duplication.reject_atomic_writes": "true"})
    cb.create_table("refuse", partition_count=2)
    add_dup(ca, "refuse", TARGET)
    time.sleep(2.5)  # the table becomes duplicating on the replicas
    tr = ca.open_table("refuse")
    with pytest.raises(DupkvError) as e:
        tr.incr(b"n", b"c", 1)
    assert e.value.code == ErrorCode.OPERATION_DISABLED
    assert metric_sum(clusters[0], "dup.disabled_non_idempotent_write_count") >= 1


def test_fail_skip_counts_and_skips_what_cannot_be_shipped(tmp_path):
    """The remote does not list the source's cluster id, so it rejects every write:
    FAIL_SLOW keeps retrying (no progress); FAIL_SKIP skips after bounded retries."""
    a_port, c_port = free_port(), free_port()
    a = Cluster(
        SOURCE,
        tmp_path / "a",
        replicas=1,
        cluster_id=1,
        meta_port=a_port,
        peers={"strict": (f"127.0.0.1:{c_port}", 3)},
    )
    c = Cluster("strict", tmp_path / "c", replicas=1, cluster_id=3, meta_port=c_port)
    try:
        a.start()
        c.start()
        with BlockingClient(a.meta_address) as ca, BlockingClient(c.meta_address) as cc:
            ca.create_table("skip", partition_count=1)
            cc.create_table("skip", partition_count=1)
            dupid = add_dup(ca, "skip", "strict")
            time.sleep(1.5)
            t = ca.open_table("skip")
            for i in range(20):
                t.set(b"k%d" % i, b"s", b"v")
            time.sleep(3)
            assert metric_sum(a, "dup_failed_shipping_ops") > 0
            assert metric_sum(a, "dup.skipped_writes") == 0  # FAIL_SLOW: retried, not skipped
            assert modify_dup(ca, "skip", dupid, fail_mode=FailMode.FAIL_SKIP) == ErrorCode.OK
            deadline = time.monotonic() + 60
            while metric_sum(a, "dup.skipped_writes") < 20 and time.monotonic() < deadline:
                time.sleep(0.5)
            assert metric_sum(a, "dup.skipped_writes") >= 20
            assert dump(cc, "skip") == {}  # rejected writes never landed
            app_id = ca.open_table("skip").app_id
            status = replica_dup_status(a, app_id)
            (entry,) = status["0"].values()
            assert entry["fail_mode"] == "FAIL_SKIP"
            assert entry["shipped_decree"] >= entry["last_committed_decree"] - 1
            assert "rejected" in a.replica_procs[0].log() or "skipped" in a.replica_procs[0].log()
    finally:
        a.stop()
        c.stop()


def test_plog_is_kept_for_a_paused_dup_and_released_by_remove(tmp_path):
    """Log GC never removes what a duplication has not confirmed; removing it releases the
    log. Segments of 1 MiB and a checkpoint every 5 s make this quick to see."""
    small = "[replication]\nlog_private_file_size_mb = 1\ncheckpoint_interval_seconds = 2\n"
    with (
        two_clusters(tmp_path, replicas=1, extra_config=small) as (a, b),
        BlockingClient(a.meta_address) as ca,
        BlockingClient(b.meta_address) as cb,
    ):
        dupid = setup_table(ca, cb, "gc", 1, 1)
        t = ca.open_table("gc")
        t.set(b"first", b"s", b"v")
        wait_equal(ca, cb, "gc", "gc")
        assert modify_dup(ca, "gc", dupid, status=DupStatus.DS_PAUSE) == ErrorCode.OK
        time.sleep(1.5)
        value = b"x" * 1000
        for i in range(4000):  # ~4 MiB of log: several segments
            t.set(b"k%d" % (i % 50), b"s", value)
        app_id = t.app_id

        def plog():
            (part,) = json.loads(http_get(a.replica_ports[0], "/replica/partitions")).values()
            return part

        time.sleep(6)  # a few checkpoints
        status = replica_dup_status(a, app_id)["0"][str(dupid)]
        assert plog()["plog_first_decree"] <= status["confirmed_decree"] + 1
        assert plog()["plog_bytes"] > 3 << 20
        assert modify_dup(ca, "gc", dupid, status=DupStatus.DS_REMOVED) == ErrorCode.OK
        deadline = time.monotonic() + 30
        while plog()["plog_bytes"] > 2 << 20 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert plog()["plog_bytes"] <= 2 << 20, plog()


def test_http_endpoints_show_status_progress_and_lag(clients, clusters):
    a, _ = clusters
    ca, cb = clients
    dupid = setup_table(ca, cb, "observe", 2, 2)
    t = ca.open_table("observe")
    for i in range(50):
        t.set(b"k%d" % i, b"s", b"v")
    wait_equal(ca, cb, "observe", "observe")
    time.sleep(2)  # a sync round persists progress
    meta_view = json.loads(http_get(a.meta_port, "/meta/app/duplication?name=observe"))
    (entry,) = [v for k, v in meta_view.items() if k != "appid"]
    assert entry["dupid"] == dupid and entry["status"] == "DS_LOG" and entry["remote"] == TARGET
    assert set(entry["partition_states"]) == {"0", "1"}
    for state in entry["partition_states"].values():
        assert state["confirmed_decree"] >= 1
    replica_view = replica_dup_status(a, t.app_id)
    assert set(replica_view) == {"0", "1"}
    states = [part[str(dupid)] for part in replica_view.values()]
    assert sum(d["shipped_writes"] for d in states) == 50
    assert 1 <= sum(d["shipped_batches"] for d in states) <= 50
    for part in replica_view.values():
        d = part[str(dupid)]
        assert d["duplicating"] and d["status"] == "DS_LOG"
        assert d["not_duplicated_mutations_num"] == 0
        assert d["time_lag_ms_p99"] >= 0
    prom = http_get(a.replica_ports[0], "/metrics?format=prometheus").decode()
    assert "dupkv_dup_time_lag_ms" in prom and "dupkv_dup_shipped_ops" in prom
