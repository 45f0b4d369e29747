"""Route refreshes, retries, backoff, deadlines and meta leader following, against fakes."""

import asyncio
import socket
import time

import pytest
from client_fakes import FakeReplica, FakeTable, fake_cluster, opened_table
from support.aio import run_async

from dupkv.base.crc64 import crc64
from dupkv.base.errors import DupkvError, ErrorCode
from dupkv.client import Client

GET = "RPC_RRDB_RRDB_GET"
PUT = "RPC_RRDB_RRDB_PUT"
INCR = "RPC_RRDB_RRDB_INCR"


def key_on(t: FakeTable, replica: FakeReplica) -> tuple[bytes, int]:
    """A hash key whose partition is on `replica`, and that partition."""
    for i in range(1000):
        hk = f"key{i}".encode()
        pidx = crc64(hk) % t.partition_count
        if t.primaries[pidx] == replica.address:
            return hk, pidx
    raise AssertionError("no key found")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("demote", [True, False], ids=["invalid_state", "object_not_found"])
@run_async
async def test_route_refresh_after_the_primary_moved(demote: bool) -> None:
    async with opened_table(replicas=2) as (c, t, table):
        a, b = c.replicas
        hk, pidx = key_on(t, a)
        c.move(t, pidx, b)
        if demote:
            a.demoted.add((t.app_id, pidx))
        await table.set(hk, b"s", b"v")
        assert len(a.received(PUT)) == 1 and len(b.received(PUT)) == 1
        assert table.refresh_count == 1 and c.meta_calls() == 2
        assert await table.get(hk, b"s") == b"v"
        assert len(a.received(GET)) == 0  # the new route stuck


@run_async
async def test_one_refresh_for_many_concurrent_ops() -> None:
    async with opened_table(replicas=2) as (c, t, table):
        for pidx in range(4):
            c.move(t, pidx, c.replicas[1 - pidx % 2])
        values = await asyncio.gather(*(table.get(f"k{i}", b"s") for i in range(32)))
        assert values == [None] * 32
        assert c.meta_calls() == 2  # open_table + one refresh shared by all 32


@run_async
async def test_replica_that_went_away_and_came_back_on_a_new_port() -> None:
    async with opened_table(replicas=2) as (c, t, table):
        old = c.replicas[0]
        hk, _ = key_on(t, old)
        await table.set(hk, b"s", b"before")
        await old.server.stop()

        async def comes_back() -> None:
            await asyncio.sleep(0.3)
            await c.restart_replica(0)

        start = time.monotonic()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(comes_back())
            value = await table.get(hk, b"s", timeout_ms=3000)
        elapsed = time.monotonic() - start
        assert value == b"before"
        assert 0.3 <= elapsed < 2.0
        assert c.replicas[0].address != old.address
        assert len(c.replicas[0].received(GET)) == 1
        assert c.meta_calls() < 20  # refreshes backed off while the meta had no news


@run_async
async def test_a_handler_that_never_answers_fails_within_the_deadline() -> None:
    async with opened_table(replicas=1) as (c, _, table):
        c.replicas[0].hang.add(GET)
        start = time.monotonic()
        with pytest.raises(DupkvError) as info:
            await table.get(b"h", b"s", timeout_ms=300)
        assert 0.25 <= time.monotonic() - start < 1.0
        assert info.value.code == ErrorCode.TIMEOUT
        assert "get on table 't'" in str(info.value)
        c.replicas[0].hang.clear()
        assert await table.get(b"h", b"s") is None  # the connection is still usable


@run_async
async def test_timeout_retried_without_refresh_but_not_for_non_idempotent_ops() -> None:
    async with opened_table(replicas=1) as (c, _, table):
        rep = c.replicas[0]
        rep.errors[GET] = [ErrorCode.TIMEOUT]
        assert await table.get(b"h", b"s") is None
        assert len(rep.received(GET)) == 2 and table.refresh_count == 0
        rep.errors[INCR] = [ErrorCode.TIMEOUT]
        with pytest.raises(DupkvError, match="may or may not have been applied") as info:
            await table.incr(b"h", b"n")
        assert info.value.code == ErrorCode.TIMEOUT and len(rep.received(INCR)) == 1
        rep.errors[INCR] = [ErrorCode.INVALID_STATE]  # refused: safe to send again
        assert await table.incr(b"h", b"n") == 1
        assert len(rep.received(INCR)) == 3 and table.refresh_count == 1


@run_async
async def test_busy_backs_off_then_succeeds_or_hits_the_deadline() -> None:
    async with opened_table(replicas=1) as (c, _, table):
        rep = c.replicas[0]
        rep.errors[PUT] = [ErrorCode.BUSY] * 3
        start = time.monotonic()
        await table.set(b"h", b"s", b"v")
        assert time.monotonic() - start >= (10 + 20 + 40) / 2 / 1000
        assert len(rep.received(PUT)) == 4 and table.refresh_count == 0
        rep.errors[PUT] = [ErrorCode.BUSY] * 1000
        start = time.monotonic()
        with pytest.raises(DupkvError) as info:
            await table.set(b"h", b"s", b"v", timeout_ms=500)
        assert info.value.code == ErrorCode.TIMEOUT and "ERR_BUSY" in info.value.hint
        assert time.monotonic() - start < 1.0
        assert len(rep.received(PUT)) < 4 + 20  # backed off, did not spin


@run_async
async def test_partition_without_primary_fails_at_the_deadline() -> None:
    async with opened_table(replicas=1, partitions=1) as (c, t, table):
        c.move(t, 0, None)
        start = time.monotonic()
        with pytest.raises(DupkvError, match="no primary") as info:
            await table.get(b"h", b"s", timeout_ms=400)
        assert info.value.code == ErrorCode.TIMEOUT
        assert time.monotonic() - start < 1.0
        assert c.meta_calls() < 15


@run_async
async def test_dropped_table_fails_fast() -> None:
    async with opened_table(replicas=1) as (c, t, table):
        del c.tables["t"]
        for p in range(t.partition_count):
            c.move(t, p, None)
        c.placement.clear()
        start = time.monotonic()
        with pytest.raises(DupkvError, match="table 't' is gone") as info:
            await table.get(b"h", b"s", timeout_ms=3000)
        assert info.value.code == ErrorCode.OBJECT_NOT_FOUND
        assert time.monotonic() - start < 1.0


@run_async
async def test_meta_leader_following() -> None:
    async with fake_cluster(replicas=1) as c:
        c.add_table("t")
        leader = c.metas[0]
        follower = await c.add_meta(leader=leader.address)
        dead = f"127.0.0.1:{closed_port()}"
        # query_cfg: the follower names the leader in partitions[0].primary.
        async with await Client.connect(follower.address) as client:
            table = await client.open_table("t")
            assert table.partition_count == 4 and client.leader == leader.address
            assert follower.calls == ["RPC_CM_QUERY_PARTITION_CONFIG_BY_INDEX"]
        # Other RPCs: a frame-level ERR_FORWARD_TO_OTHERS without a name: try the next one.
        async with await Client.connect([dead, follower.address, leader.address]) as client:
            assert [x.name for x in await client.list_tables()] == ["t"]
            assert client.leader == leader.address
            calls = len(follower.calls)
            await client.list_nodes()  # goes straight to the known leader
            assert len(follower.calls) == calls


@run_async
async def test_no_meta_server_reachable() -> None:
    dead = [f"127.0.0.1:{closed_port()}", f"127.0.0.1:{closed_port()}"]
    start = time.monotonic()
    with pytest.raises(DupkvError) as info:
        await Client.connect(",".join(dead), timeout_ms=500)
    assert info.value.code == ErrorCode.NETWORK_FAILURE and dead[1] in str(info.value)
    async with fake_cluster(replicas=1) as c:
        client = await Client.connect([c.meta_address, dead[0]], timeout_ms=500)
        async with client:
            await c.metas[0].server.stop()
            with pytest.raises(DupkvError) as info:
                await client.list_tables()
            assert info.value.code in (ErrorCode.TIMEOUT, ErrorCode.NETWORK_FAILURE)
    assert time.monotonic() - start < 3.0


@run_async
async def test_lost_connection_on_incr_fails_and_marks_the_route_stale() -> None:
    async with opened_table(replicas=1) as (c, _, table):
        rep = c.replicas[0]
        rep.errors[INCR] = [ErrorCode.SESSION_RESET]
        with pytest.raises(DupkvError, match="may or may not") as info:
            await table.incr(b"h", b"n")
        assert info.value.code == ErrorCode.SESSION_RESET and table.refresh_count == 0
        assert await table.get(b"h", b"n") is None  # re-queries the route first
        assert table.refresh_count == 1 and c.meta_calls() == 2
        await table.get(b"h", b"n")
        assert c.meta_calls() == 2


@run_async
async def test_explicit_refresh_and_closed_client() -> None:
    async with opened_table(replicas=1) as (c, t, table):
        c.move(t, 0, None)
        await table.refresh_route()
        assert table.route.primaries[0] is None and table.refresh_count == 1
        await c.metas[0].server.stop()
        with pytest.raises(DupkvError):
            await table.refresh_route(timeout_ms=300)
        await table._client.close()
        with pytest.raises(DupkvError, match="client closed") as info:
            await table.get(b"h", b"s")
        assert info.value.code == ErrorCode.SESSION_RESET
