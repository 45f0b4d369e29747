"""Table admin, node and cluster queries, and generic meta calls, against a fake meta."""

import time

import pytest
from client_fakes import fake_cluster
from support.aio import run_async

from dupkv.base.errors import BadInput, DupkvError, ErrorCode
from dupkv.client import Client, NodeInfo
from dupkv.rpc.idl_meta import meta


@run_async
async def test_create_open_list_drop() -> None:
    async with fake_cluster(replicas=2) as c, await Client.connect(c.meta_address) as client:
        app_id = await client.create_table("orders", 8, envs={"default_ttl": "0"})
        assert app_id == c.tables["orders"].app_id
        table = await client.open_table("orders")
        assert (table.app_id, table.partition_count) == (app_id, 8)
        await table.set(b"h", b"s", b"v")

        with pytest.raises(DupkvError) as info:
            await client.create_table("orders", 8)
        assert info.value.code == ErrorCode.APP_EXIST and "orders" in info.value.hint
        assert await client.create_table("orders", 8, success_if_exist=True) == app_id

        await client.create_table("logs", 2, wait_ready_s=0)
        (orders, logs) = await client.list_tables()
        assert (orders.name, orders.status, orders.partition_count) == (
            "orders",
            "AVAILABLE",
            8,
        )
        assert orders.envs == {"default_ttl": "0"} and logs.name == "logs"

        await client.drop_table("logs")
        assert [t.name for t in await client.list_tables()] == ["orders"]
        everything = await client.list_tables(include_dropped=True)
        assert [(t.name, t.status) for t in everything] == [
            ("orders", "AVAILABLE"),
            ("logs", "DROPPED"),
        ]
        with pytest.raises(DupkvError) as info:
            await client.drop_table("logs")
        assert info.value.code == ErrorCode.APP_NOT_EXIST
        with pytest.raises(DupkvError) as info:
            await client.open_table("logs")
        assert info.value.code == ErrorCode.BUSY_DROPPING
        with pytest.raises(DupkvError) as info:
            await client.open_table("nothing")
        assert info.value.code == ErrorCode.OBJECT_NOT_FOUND


@run_async
async def test_create_waits_until_every_partition_has_a_primary() -> None:
    async with fake_cluster(replicas=2) as c, await Client.connect(c.meta_address) as client:
        c.create_unplaced, c.place_after_queries = True, 3
        await client.create_table("slow", 4)
        assert c.meta_calls() == 3
        assert all(c.tables["slow"].primaries)

        start = time.monotonic()
        with pytest.raises(DupkvError, match="still have no primary: \\[0, 1\\]") as info:
            await client.create_table("never", 2, wait_ready_s=0.3)
        assert info.value.code == ErrorCode.TIMEOUT
        assert 0.3 <= time.monotonic() - start < 1.0
        assert "never" in c.tables  # the table exists anyway


@run_async
async def test_admin_input_is_checked_before_sending() -> None:
    async with fake_cluster(replicas=1) as c, await Client.connect(c.meta_address) as client:
        cases = [
            (client.create_table("bad name"), "accepted: one or more of the characters"),
            (client.create_table(""), "table name ''"),
            (client.create_table("t", 3), "accepted: a power of two"),
            (client.create_table("t", 0), "accepted: a power of two"),
            (client.create_table("t", 4, 0), "replica_count is 0"),
            (client.create_table("t", envs={"k": 1}), "str -> str"),  # type: ignore[dict-item]
            (client.open_table("a/b"), "table name 'a/b'"),
            (client.drop_table("a b"), "table name"),
        ]
        for coro, message in cases:
            with pytest.raises(BadInput, match=message):
                await coro
        assert c.metas[0].calls == []
    with pytest.raises(BadInput, match="host:port"):
        await Client.connect("localhost")
    with pytest.raises(BadInput, match="meta_servers is empty"):
        await Client.connect([])


@run_async
async def test_nodes_cluster_info_and_generic_meta_call() -> None:
    async with fake_cluster(replicas=2) as c:
        c.add_table("t")
        async with await Client.connect(c.meta_address) as client:
            nodes = await client.list_nodes()
            assert nodes == [NodeInfo(r.address, "ALIVE") for r in c.replicas]
            info = await client.cluster_info()
            assert info["primary_meta_server"] == c.meta_address
            resp = await client.meta_call(
                "RPC_CM_QUERY_PARTITION_CONFIG_BY_INDEX",
                meta.query_cfg_request(app_name="nothing", partition_indices=[]),
            )
            assert resp.err == ErrorCode.OBJECT_NOT_FOUND  # the response as sent, err included
            with pytest.raises(BadInput, match="unknown task code"):
                await client.meta_call("RPC_NOT_A_CODE", None)
