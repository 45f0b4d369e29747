"""Scanners against fake replicas: paging, context loss, early close, unordered scans, count."""

import asyncio
from collections.abc import Callable

import pytest
from client_fakes import opened_table
from support.aio import run_async

from dupkv.base.crc64 import crc64
from dupkv.base.errors import ErrorCode
from dupkv.client import FilterType, PegasusError, ScanOptions
from dupkv.client.scanner import MAX_RESTARTS
from dupkv.storage.schema import encode_key

GET_SCANNER = "RPC_RRDB_RRDB_GET_SCANNER"
SCAN = "RPC_RRDB_RRDB_SCAN"
CLEAR_SCANNER = "RPC_RRDB_RRDB_CLEAR_SCANNER"


async def eventually(condition: Callable[[], bool], timeout_s: float = 2.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.005)


def sk(i: int) -> bytes:
    return f"s{i:03d}".encode()


@run_async
async def test_scanner_pages_in_batches_and_restarts_after_context_loss() -> None:
    async with opened_table(replicas=1) as (c, _, table):
        rep = c.replicas[0]
        await table.multi_set(b"h", {sk(i): b"v%d" % i for i in range(25)})
        await table.set(b"other", b"x", b"not in the scan")
        got = [r async for r in table.get_scanner(b"h", options=ScanOptions(batch_size=4))]
        assert got == [(b"h", sk(i), b"v%d" % i) for i in range(25)]
        assert len(rep.received(GET_SCANNER)) == 1 and len(rep.received(SCAN)) == 6
        first = rep.received(GET_SCANNER)[0]
        assert first.partition_hash == crc64(b"h") and first.arg.batch_size == 4
        assert first.arg.start_key == encode_key(b"h", b"") and not first.arg.full_scan

        # The server forgets the context after the first batch: restart from the last key.
        scanner = table.get_scanner(b"h", sk(3), sk(20), ScanOptions(batch_size=5))
        got = [await scanner.next() for _ in range(2)]
        rep.scanners.clear()
        got += [r async for r in scanner]
        assert [s for _, s, _ in got] == [sk(i) for i in range(3, 20)]  # nothing twice
        restart = rep.received(GET_SCANNER)[-1].arg
        assert restart.start_key == encode_key(b"h", sk(7)) and not restart.start_inclusive
        assert restart.stop_key == encode_key(b"h", sk(20)) and not restart.stop_inclusive


@run_async
async def test_scan_batch_timeout_restarts_instead_of_resending() -> None:
    async with opened_table(replicas=1) as (c, _, table):
        rep = c.replicas[0]
        await table.multi_set(b"h", {sk(i): b"v" for i in range(10)})
        scanner = table.get_scanner(b"h", options=ScanOptions(batch_size=3))
        assert (await scanner.next()) == (b"h", sk(0), b"v")
        rep.errors[SCAN] = [ErrorCode.TIMEOUT]  # the server may have moved its cursor
        rest = [s async for _, s, _ in scanner]
        assert rest == [sk(i) for i in range(1, 10)]
        assert len(rep.received(GET_SCANNER)) == 2


@run_async
async def test_scanner_gives_up_after_repeated_restarts_without_progress() -> None:
    async with opened_table(replicas=1) as (c, _, table):
        rep = c.replicas[0]
        await table.multi_set(b"h", {sk(i): b"v" for i in range(10)})
        rep.status[SCAN] = 1  # every scan batch: context not found
        # A count-only scan restarts from its start each time: no progress to keep.
        opts = ScanOptions(batch_size=1, only_return_count=True)
        with pytest.raises(PegasusError, match="without progress"):
            await table.get_scanner(b"h", options=opts).count()
        assert len(rep.received(GET_SCANNER)) == 1 + MAX_RESTARTS
        # Records scans keep their progress through get_scanner, so they finish.
        scanner = table.get_scanner(b"h", options=ScanOptions(batch_size=1))
        assert len([r async for r in scanner]) == 10


@run_async
async def test_closing_early_clears_the_server_context() -> None:
    async with opened_table(replicas=1) as (c, _, table):
        rep = c.replicas[0]
        await table.multi_set(b"h", {sk(i): b"v" for i in range(10)})
        async with table.get_scanner(b"h", options=ScanOptions(batch_size=4)) as scanner:
            async for _, s, _ in scanner:
                if s == sk(1):
                    break
        assert scanner.closed and await scanner.next() is None
        await eventually(lambda: rep.scanners == {})  # clear_scanner is oneway
        (clear,) = rep.received(CLEAR_SCANNER)
        assert clear.arg == 1 and clear.partition_hash == crc64(b"h")
        # A scanner that ran to its end has nothing to clear.
        async with table.get_scanner(b"h", options=ScanOptions(batch_size=4)) as scanner:
            assert len([r async for r in scanner]) == 10
        assert len(rep.received(CLEAR_SCANNER)) == 1


@run_async
async def test_scanner_range_options() -> None:
    async with opened_table(replicas=1) as (c, _, table):
        rep = c.replicas[0]
        await table.multi_set(b"h", {b"a1": b"1", b"b1": b"2", b"b2": b"3", b"c1": b"4"})
        opts = ScanOptions(
            sort_key_filter_type=FilterType.MATCH_PREFIX,
            sort_key_filter_pattern=b"b",
            no_value=True,
        )
        got = [r async for r in table.get_scanner(b"h", options=opts)]
        assert got == [(b"h", b"b1", b""), (b"h", b"b2", b"")]
        req = rep.received(GET_SCANNER)[-1].arg
        assert req.start_key == encode_key(b"h", b"b") and req.stop_key == encode_key(b"h", b"c")
        assert req.sort_key_filter_type == 2 and req.no_value
        empty = table.get_scanner(b"h", b"z", b"a")
        assert [r async for r in empty] == []
        assert len(rep.received(GET_SCANNER)) == 1  # an empty range asks nothing
        opts = ScanOptions(start_inclusive=False, stop_inclusive=True)
        got = [s async for _, s, _ in table.get_scanner(b"h", b"a1", b"b2", opts)]
        assert got == [b"b1", b"b2"]


@run_async
async def test_unordered_scanners_cover_every_partition() -> None:
    async with opened_table(replicas=2, partitions=8) as (c, t, table):
        expected = set()
        for i in range(60):
            hk = f"user{i}".encode()
            await table.set(hk, b"s", hk)
            expected.add((hk, b"s", hk))
        scanners = table.get_unordered_scanners(3, ScanOptions(batch_size=7))
        assert len(scanners) == 3
        got: list = []
        for s in scanners:
            got += [r async for r in s]
        assert len(got) == 60 and set(got) == expected
        reqs = [r for rep in c.replicas for r in rep.received(GET_SCANNER)]
        assert sorted(r.partition_index for r in reqs) == list(range(8))
        for r in reqs:
            assert r.partition_hash == r.partition_index
            assert r.server == t.primaries[r.partition_index]
            assert (r.arg.start_key, r.arg.stop_key) == (b"\x00\x00", b"\xff\xff")
            assert r.arg.start_inclusive and not r.arg.stop_inclusive
            assert r.arg.full_scan and r.arg.validate_partition_hash
        assert len(table.get_unordered_scanners(100)) == 8

        assert await table.count(max_scanners=3) == 60
        counts = [r for rep in c.replicas for r in rep.received(GET_SCANNER)[4:]]
        assert len(counts) == 8
        assert all(r.arg.only_return_count for r in counts)
        # A count scan that loses its context recounts that partition from its start.
        opts = ScanOptions(batch_size=2, only_return_count=True)
        (whole,) = table.get_unordered_scanners(1, opts)
        for rep in c.replicas:
            rep.errors[SCAN] = [ErrorCode.TIMEOUT]
        assert await whole.count() == 60


@run_async
async def test_incomplete_scan_delivers_then_fails() -> None:
    async with opened_table(replicas=1) as (c, _, table):
        rep = c.replicas[0]
        await table.multi_set(b"h", {sk(i): b"v" for i in range(4)})
        rep.status[GET_SCANNER] = 7  # Incomplete: the server's time limit
        scanner = table.get_scanner(b"h", options=ScanOptions(batch_size=2))
        got = [await scanner.next(), await scanner.next()]
        assert [s for _, s, _ in got] == [sk(0), sk(1)]
        with pytest.raises(PegasusError, match="INCOMPLETE"):
            await scanner.next()
        assert scanner.closed
