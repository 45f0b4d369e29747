"""The data API against fake replicas: routing, encoding and decoding of every op."""

import asyncio
import time

import pytest
from client_fakes import FakeCluster, opened_table
from support.aio import run_async

from dupkv.base.crc64 import crc64
from dupkv.base.errors import BadInput
from dupkv.base.timeutil import EPOCH_BEGIN
from dupkv.client import CheckType, Mutate, PegasusError


def all_requests(c: FakeCluster, name: str) -> list:
    return [r for rep in c.replicas for r in rep.received(name)]


@run_async
async def test_each_key_goes_to_its_partition_primary_with_header_fields() -> None:
    async with opened_table(replicas=3, partitions=8, name="routes") as (c, t, table):
        assert (table.app_id, table.partition_count) == (t.app_id, 8)
        keys = [f"user{i}".encode() for i in range(40)]
        for hk in keys:
            await table.set(hk, b"sk", hk)
        await table.set(b"", b"only-sort-key", b"v")  # empty hash key: hash the sort key
        puts = all_requests(c, "RPC_RRDB_RRDB_PUT")
        assert len(puts) == 41
        for r in puts:
            hk = r.arg.key[2 : 2 + int.from_bytes(r.arg.key[:2], "big")]
            h = crc64(hk) if hk else crc64(b"only-sort-key")
            assert r.app_id == t.app_id
            assert r.partition_hash == h
            assert r.partition_index == h % 8
            assert r.server == t.primaries[h % 8]
        assert c.meta_calls() == 1  # no refresh was needed
        for hk in keys:
            assert await table.get(hk, b"sk") == hk
        assert await table.get(b"", b"only-sort-key") == b"v"


@run_async
async def test_single_key_ops_and_ttl() -> None:
    async with opened_table(replicas=2) as (c, _, table):
        assert await table.get("h", "s") is None
        assert await table.ttl("h", "s") is None
        assert await table.exist("h", "s") is False
        await table.set("h", "s", "v")
        assert await table.ttl("h", "s") == -1
        assert await table.exist(b"h", b"s") is True
        before = int(time.time()) - EPOCH_BEGIN
        await table.set(b"h", b"t", b"w", ttl_seconds=100)
        put = all_requests(c, "RPC_RRDB_RRDB_PUT")[-1]
        assert before + 100 <= put.arg.expire_ts_seconds <= before + 102
        assert 98 <= (await table.ttl(b"h", b"t") or 0) <= 100
        await table.delete(b"h", b"s")
        assert await table.get(b"h", b"s") is None


@run_async
async def test_incr_ttl_mapping_and_errors() -> None:
    async with opened_table(replicas=2) as (c, _, table):
        assert await table.incr(b"h", b"n") == 1
        assert await table.incr(b"h", b"n", 41, ttl_seconds=60) == 42
        assert await table.incr(b"h", b"n", -2, ttl_seconds=-1) == 40
        sent = [r.arg.expire_ts_seconds for r in all_requests(c, "RPC_RRDB_RRDB_INCR")]
        now = int(time.time()) - EPOCH_BEGIN
        assert sent[0] == 0 and now + 58 <= sent[1] <= now + 61 and sent[2] == -1
        assert await table.ttl(b"h", b"n") == -1
        await table.set(b"h", b"text", b"not a number")
        with pytest.raises(PegasusError) as info:
            await table.incr(b"h", b"text")
        assert info.value.code == "PERR_INVALID_ARGUMENT" and "incr" in str(info.value)


@run_async
async def test_multi_ops() -> None:
    async with opened_table(replicas=2) as (c, _, table):
        await table.multi_set(b"h", {b"a": b"1", b"b": b"2", b"c": b"3"})
        await table.multi_set(b"h", [(b"d", b"4")], ttl_seconds=30)
        assert await table.sortkey_count(b"h") == 4
        kvs, all_fetched = await table.multi_get(b"h")
        assert kvs == [(b"a", b"1"), (b"b", b"2"), (b"c", b"3"), (b"d", b"4")]
        assert all_fetched
        kvs, all_fetched = await table.multi_get(b"h", [b"b", b"zz"])
        assert kvs == [(b"b", b"2")] and all_fetched
        kvs, all_fetched = await table.multi_get(b"h", max_kv_count=2)
        assert kvs == [(b"a", b"1"), (b"b", b"2")] and not all_fetched
        kvs, _ = await table.multi_get(b"h", max_kv_count=2, reverse=True, no_value=True)
        assert kvs == [(b"c", b""), (b"d", b"")]
        kvs, _ = await table.multi_get(
            b"h", start_sortkey=b"b", stop_sortkey=b"d", stop_inclusive=True
        )
        assert [k for k, _ in kvs] == [b"b", b"c", b"d"]
        req = all_requests(c, "RPC_RRDB_RRDB_MULTI_GET")[-1].arg
        assert (req.max_kv_count, req.max_kv_size, req.start_inclusive) == (
            100,
            1_000_000,
            True,
        )
        assert await table.multi_del(b"h", [b"a", b"b", b"nothing"]) == 3
        assert await table.sortkey_count(b"h") == 2


@run_async
async def test_check_and_set_and_mutate() -> None:
    async with opened_table(replicas=2) as (c, _, table):
        r = await table.check_and_set(b"h", b"c", CheckType.VALUE_NOT_EXIST, b"", b"c", b"v1")
        assert r.set_succeed and not r.check_value_returned
        r = await table.check_and_set(
            b"h", b"c", CheckType.VALUE_NOT_EXIST, b"", b"c", b"v2", return_check_value=True
        )
        assert not r.set_succeed  # TryAgain is a result, not an exception
        assert r.check_value_returned and r.check_value_exist and r.check_value == b"v1"
        r = await table.check_and_set(
            b"h", b"c", CheckType.VALUE_BYTES_EQUAL, b"v1", b"other", b"x", ttl_seconds=5
        )
        assert r.set_succeed and await table.get(b"h", b"other") == b"x"
        assert 3 <= (await table.ttl(b"h", b"other") or 0) <= 5
        m = await table.check_and_mutate(
            b"h",
            b"c",
            CheckType.VALUE_EXIST,
            b"",
            [Mutate.put(b"m1", b"1"), Mutate.delete(b"other")],
            return_check_value=True,
        )
        assert m.mutate_succeed and m.check_value == b"v1"
        assert await table.get(b"h", b"m1") == b"1" and not await table.exist(b"h", b"other")
        m = await table.check_and_mutate(
            b"h", b"absent", CheckType.VALUE_EXIST, b"", [Mutate.delete(b"m1")]
        )
        assert not m.mutate_succeed and m.check_value is None
        assert await table.exist(b"h", b"m1")


@run_async
async def test_batch_get_sends_one_rpc_per_partition() -> None:
    async with opened_table(replicas=2, partitions=4) as (c, t, table):
        keys = [(f"hk{i}".encode(), b"s") for i in range(20)]
        for hk, sk in keys[::2]:
            await table.set(hk, sk, hk + b"!")
        asked = [*keys, (b"hk0", b"s"), (b"", b"empty-hk")]
        values = await table.batch_get(asked)
        assert values == [hk + b"!" if i % 2 == 0 else None for i, (hk, _) in enumerate(keys)] + [
            b"hk0!",
            None,
        ]
        rpcs = all_requests(c, "RPC_RRDB_RRDB_BATCH_GET")
        by_pidx = {r.partition_index: r for r in rpcs}
        assert len(rpcs) == len(by_pidx)  # one per partition
        for r in rpcs:
            assert r.server == t.primaries[r.partition_index]
            for fk in r.arg.keys:
                h = crc64(fk.hash_key or fk.sort_key)
                assert h % 4 == r.partition_index
        assert sum(len(r.arg.keys) for r in rpcs) == len(asked)
        assert await table.batch_get([]) == []


@run_async
async def test_64_concurrent_ops_share_connections() -> None:
    async with opened_table(replicas=2, partitions=4) as (c, _, table):
        for rep in c.replicas:
            rep.delay_s = 0.02
        start = time.monotonic()
        await asyncio.gather(*(table.set(f"k{i}", b"s", f"v{i}") for i in range(64)))
        values = await asyncio.gather(*(table.get(f"k{i}", b"s") for i in range(64)))
        elapsed = time.monotonic() - start
        assert values == [f"v{i}".encode() for i in range(64)]
        assert max(rep.max_inflight for rep in c.replicas) > 8
        assert elapsed < 64 * 0.02  # not one at a time
        assert sum(rep.server.connection_count for rep in c.replicas) == 2


@run_async
async def test_validation_errors_send_nothing() -> None:
    async with opened_table(replicas=2) as (c, _, table):
        long_hk = b"x" * 65535
        cases = [
            (table.set(long_hk, b"s", b"v"), "shorter than 65535"),
            (table.get(long_hk, b"s"), "shorter than 65535"),
            (table.set(b"h", b"s", b"v", ttl_seconds=-1), "ttl_seconds is -1"),
            (table.multi_set(b"", {b"s": b"v"}), "multi_set: hash key must not be empty"),
            (table.multi_set(b"h", {}), "at least one"),
            (table.multi_get(b""), "multi_get: hash key must not be empty"),
            (table.multi_del(b"", [b"s"]), "multi_del: hash key must not be empty"),
            (table.multi_del(b"h", []), "at least one sort key"),
            (table.sortkey_count(b""), "sortkey_count: hash key must not be empty"),
            (
                table.check_and_set(b"", b"c", 0, b"", b"c", b"v"),
                "check_and_set: hash key must not be empty",
            ),
            (
                table.check_and_mutate(b"", b"c", 0, b"", [Mutate.delete(b"x")]),
                "check_and_mutate: hash key must not be empty",
            ),
            (table.incr(b"h", b"s", ttl_seconds=-5), "-1 \\(clear it\\)"),
            (table.get(b"h", b"s", timeout_ms=0), "timeout_ms"),
        ]
        for coro, message in cases:
            with pytest.raises(BadInput, match=message):
                await coro
        with pytest.raises(BadInput, match="get_scanner: hash key must not be empty"):
            table.get_scanner(b"")
        with pytest.raises(BadInput, match="max_count"):
            table.get_unordered_scanners(0)
        assert all(not rep.requests for rep in c.replicas)


@run_async
async def test_other_rocksdb_statuses_raise_pegasus_error() -> None:
    async with opened_table(replicas=1) as (c, _, table):
        c.replicas[0].status["RPC_RRDB_RRDB_GET"] = 5  # IOError
        with pytest.raises(PegasusError) as info:
            await table.get(b"h", b"s")
        assert info.value.code == "PERR_IO_ERROR" and info.value.op == "get"
        assert c.replicas[0].address in str(info.value)
        c.replicas[0].status["RPC_RRDB_RRDB_CHECK_AND_SET"] = 4
        with pytest.raises(PegasusError, match="INVALID_ARGUMENT"):
            await table.check_and_set(b"h", b"c", 0, b"", b"c", b"v")
