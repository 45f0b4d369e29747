"""The blocking wrapper: its own loop thread, the same methods, errors raised in the caller."""

import asyncio
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import pytest
from client_fakes import FakeCluster, fake_cluster

from dupkv.base.errors import BadInput, DupkvError, ErrorCode
from dupkv.client import CheckType, Mutate, ScanOptions
from dupkv.client.blocking import BlockingClient

T = TypeVar("T")


class ClusterThread:
    """A fake cluster served by an event loop in a thread of its own (the test is sync)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self._cm = fake_cluster(replicas=2)
        self.cluster: FakeCluster = self.run(self._cm.__aenter__())

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def call(self, fn: Callable[[], T]) -> T:
        async def wrapped() -> T:
            return fn()

        return self.run(wrapped())

    def close(self) -> None:
        self.run(self._cm.__aexit__(None, None, None))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def cluster() -> Iterator[ClusterThread]:
    ct = ClusterThread()
    try:
        yield ct
    finally:
        ct.close()


def test_blocking_client_end_to_end(cluster: ClusterThread) -> None:
    c = cluster.cluster
    with BlockingClient(c.meta_address, timeout_ms=2000) as client:
        assert client.create_table("bt", 4) == c.tables["bt"].app_id
        assert [t.name for t in client.list_tables()] == ["bt"]
        assert len(client.list_nodes()) == 2
        table = client.open_table("bt")
        assert (table.name, table.partition_count) == ("bt", 4)

        table.set("h", "s", "v")
        assert table.get(b"h", b"s") == b"v"
        assert table.exist("h", "s") and table.ttl("h", "s") == -1
        table.multi_set(b"h", {b"a": b"1", b"b": b"2"})
        assert table.multi_get(b"h", max_kv_count=2) == ([(b"a", b"1"), (b"b", b"2")], False)
        assert table.sortkey_count(b"h") == 3
        assert table.incr(b"n", b"c", 5) == 5
        assert table.check_and_set(b"h", b"s", CheckType.VALUE_EXIST, b"", b"s", b"w").set_succeed
        r = table.check_and_mutate(b"h", b"s", CheckType.NO_CHECK, b"", [Mutate.delete(b"a")])
        assert r.mutate_succeed
        assert table.batch_get([(b"h", b"s"), (b"h", b"a"), (b"n", b"c")]) == [b"w", None, b"5"]
        with table.get_scanner(b"h", options=ScanOptions(batch_size=1)) as scanner:
            assert [s for _, s, _ in scanner] == [b"b", b"s"]
        with table.get_scanner(b"h", options=ScanOptions(batch_size=1)) as scanner:
            assert next(scanner)[1] == b"b"
        assert sum(len(list(s)) for s in table.get_unordered_scanners(3)) == 3
        assert table.count(2) == 3
        assert table.multi_del(b"h", [b"b", b"s"]) == 2
        table.delete(b"n", b"c")
        assert table.get(b"n", b"c") is None

        with pytest.raises(BadInput, match="hash key must not be empty"):
            table.multi_get(b"")
        for rep in c.replicas:
            rep.hang.add("RPC_RRDB_RRDB_GET")
        with pytest.raises(DupkvError) as info:
            table.get(b"h", b"s", timeout_ms=200)
        assert info.value.code == ErrorCode.TIMEOUT
        client.drop_table("bt")
        loop_thread = client._runner.thread
    assert not loop_thread.is_alive()
    with pytest.raises(DupkvError, match="closed"):
        client.list_tables()


def test_blocking_client_shared_by_threads(cluster: ClusterThread) -> None:
    cluster.call(lambda: cluster.cluster.add_table("t", 4))
    with BlockingClient([cluster.cluster.meta_address]) as client:
        table = client.open_table("t")

        def work(n: int) -> None:
            for i in range(20):
                table.set(f"t{n}", f"{i}", f"{n}.{i}")

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(work, range(8)))
        values = table.batch_get([(f"t{n}", f"{i}") for n in range(8) for i in range(20)])
        assert values == [f"{n}.{i}".encode() for n in range(8) for i in range(20)]


def test_blocking_connect_failures() -> None:
    with pytest.raises(BadInput, match="host:port"):
        BlockingClient("nonsense")
    before = threading.active_count()
    with pytest.raises(DupkvError) as info:
        BlockingClient("127.0.0.1:1", timeout_ms=300)
    assert info.value.code == ErrorCode.NETWORK_FAILURE
    assert threading.active_count() == before  # the loop thread was stopped
