"""A real cluster (a meta server and three replica servers as processes on 127.0.0.1) loses
nothing when its servers are killed: every acknowledged key is readable after a replica
server (its plogs then damaged as by a power cut) and then the meta server are SIGKILLed
and restarted, with the embedded metadata store and with ZooKeeper (where the metadata
must sit in Pegasus's layout and JSON). Dropping a table removes it from listings and its
partitions from the replica servers' disks.
"""

import asyncio
import json
import random
import time
import uuid
from pathlib import Path

import pytest
from kazoo.client import KazooClient
from support.cluster import Cluster, running
from support.power_cut import lose_what_the_slog_holds
from support.zookeeper import ZkServer

from dupkv.base.errors import DupkvError, ErrorCode
from dupkv.client import Client
from dupkv.client.blocking import BlockingClient

KEYS = 10_000
HASH_KEYS = 1_000  # 10 sort keys each
IN_FLIGHT = 64
BATCH = 200  # keys per batch_get when reading everything back
PHASE_TIMEOUT_S = 60.0
GC_TIMEOUT_S = 15.0


def key(i: int) -> tuple[bytes, bytes]:
    return f"user{i % HASH_KEYS:04d}".encode(), f"field{i // HASH_KEYS}".encode()


def value(i: int) -> bytes:
    return f"value-{i}-".encode() * 3


async def write_keys(meta: str, table_name: str, n: int) -> None:
    """Set keys 0..n-1, IN_FLIGHT requests at a time; every set must be acknowledged."""
    async with asyncio.timeout(PHASE_TIMEOUT_S):
        client = await Client.connect(meta)
        try:
            table = await client.open_table(table_name)
            slots = asyncio.Semaphore(IN_FLIGHT)

            async def one(i: int) -> None:
                async with slots:
                    await table.set(*key(i), value(i))

            await asyncio.gather(*(one(i) for i in range(n)))
        finally:
            await client.close()


async def missing_keys(meta: str, table_name: str, n: int) -> list[int]:
    """Indexes of the keys 0..n-1 that a fresh client does not read back intact."""
    async with asyncio.timeout(PHASE_TIMEOUT_S):
        client = await Client.connect(meta)
        try:
            table = await client.open_table(table_name)
            slots = asyncio.Semaphore(8)

            async def batch(start: int) -> list[int]:
                idx = range(start, min(n, start + BATCH))
                async with slots:
                    got = await table.batch_get([key(i) for i in idx])
                return [i for i, v in zip(idx, got, strict=True) if v != value(i)]

            results = await asyncio.gather(*(batch(s) for s in range(0, n, BATCH)))
        finally:
            await client.close()
    return [i for r in results for i in r]


def zookeeper_config(zk: ZkServer) -> str:
    return (
        "[meta_server]\n"
        "meta_state_service_type = meta_state_service_zookeeper\n"
        f"[zookeeper]\nhosts_list = {zk.hosts}\ntimeout_ms = 5000\n"
    )


@pytest.mark.parametrize("backend", ["simple", "zookeeper"])
def test_every_key_survives_sigkill_of_a_replica_server_and_of_the_meta_server(
    tmp_path: Path, request: pytest.FixtureRequest, backend: str
) -> None:
    extra = ""
    if backend == "zookeeper":
        extra = zookeeper_config(request.getfixturevalue("zookeeper"))
    # A unique name: with ZooKeeper the cluster root /pegasus/<name> must be new.
    name = f"restart-{backend}-{uuid.uuid4().hex[:8]}"
    with running(Cluster(name, tmp_path, replicas=3, extra_config=extra)) as c:
        with BlockingClient(c.meta_address) as admin:
            app_id = admin.create_table("restart", partition_count=8)
        asyncio.run(write_keys(c.meta_address, "restart", KEYS))
        assert asyncio.run(missing_keys(c.meta_address, "restart", KEYS)) == []

        c.replica_procs[1].kill()
        # As if the machine had lost power too: what only the shared log made durable in
        # the plogs is damaged; the restart repairs the plogs from the shared log.
        data = c.replica_data_dir(1) / "replica"
        damage = lose_what_the_slog_holds(
            data / "slog",
            lambda gpid: data / "reps" / f"{gpid[0]}.{gpid[1]}.pegasus" / "plog",
            random.Random(backend),
        )
        assert damage, "the shared log held nothing after 10k writes"
        c.restart_replica(1)
        c.wait_nodes_alive()
        assert asyncio.run(missing_keys(c.meta_address, "restart", KEYS)) == [], damage
        assert "shared log: " in c.replica_procs[1].log()

        with BlockingClient(c.meta_address) as reader:
            cached = reader.open_table("restart")
            c.meta.kill()  # type: ignore[union-attr]
            # The data path does not need the meta server: routes are cached.
            assert cached.get(*key(7)) == value(7)
            c.restart_meta()
        assert asyncio.run(missing_keys(c.meta_address, "restart", KEYS)) == []
        with BlockingClient(c.meta_address) as admin:
            tables = {t.name: t for t in admin.list_tables()}
            assert tables["restart"].app_id == app_id
            assert tables["restart"].partition_count == 8
            assert tables["restart"].status == "AVAILABLE"

        if backend == "zookeeper":
            check_zookeeper_layout(
                request.getfixturevalue("zookeeper"), f"/pegasus/{name}", app_id, c
            )


def check_zookeeper_layout(zk: ZkServer, root: str, app_id: int, c: Cluster) -> None:
    """Pegasus's paths and JSON, read with a raw kazoo client."""
    kz = KazooClient(hosts=zk.hosts, timeout=10)
    kz.start(timeout=10)
    try:
        app_json, _ = kz.get(f"{root}/apps/{app_id}")
        app = json.loads(app_json)
        assert app["status"] == "app_status::AS_AVAILABLE"
        assert app["app_name"] == "restart"
        assert app["app_id"] == app_id
        assert app["partition_count"] == 8
        assert app["app_type"] == "pegasus"
        assert app["is_stateful"] in (1, True)
        assert "envs" in app and "create_second" in app
        children = set(kz.get_children(f"{root}/apps/{app_id}"))
        assert {str(p) for p in range(8)} <= children
        servers = {f"127.0.0.1:{p}" for p in c.replica_ports}
        for pidx in range(8):
            part = json.loads(kz.get(f"{root}/apps/{app_id}/{pidx}")[0])
            assert part["pid"] == f"{app_id}.{pidx}"
            assert part["primary"] in servers
            assert part["secondaries"] == []
            assert isinstance(part["ballot"], int)
    finally:
        kz.stop()
        kz.close()


def test_drop_table_unlists_it_and_deletes_its_partitions_from_disk(tmp_path: Path) -> None:
    c = Cluster("drop", tmp_path, replicas=3)
    with running(c), BlockingClient(c.meta_address) as admin:
        gone_id = admin.create_table("gone", partition_count=4)
        kept_id = admin.create_table("kept", partition_count=4)
        for name in ("gone", "kept"):
            table = admin.open_table(name)
            for i in range(100):
                table.set(*key(i), value(i))
        assert len(c.partition_dirs(gone_id)) == 4

        admin.drop_table("gone")

        assert [t.name for t in admin.list_tables()] == ["kept"]
        dropped = [t for t in admin.list_tables(include_dropped=True) if t.name == "gone"]
        assert dropped and dropped[0].status == "DROPPED" and dropped[0].app_id == gone_id
        with pytest.raises(DupkvError) as e:
            admin.open_table("gone")
        assert e.value.code == ErrorCode.OBJECT_NOT_FOUND
        deadline = time.monotonic() + GC_TIMEOUT_S
        while c.partition_dirs(gone_id) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert c.partition_dirs(gone_id) == []
        assert len(c.partition_dirs(kept_id)) == 4
        assert admin.open_table("kept").batch_get([key(i) for i in range(100)]) == [
            value(i) for i in range(100)
        ]
