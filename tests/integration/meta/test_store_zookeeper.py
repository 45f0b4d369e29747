"""The ZooKeeper metadata store (`meta_state_service_zookeeper`) against a real ZooKeeper.

The shared contract runs against the session's ZooKeeper, each test in its own root. The
outage tests start a ZooKeeper of their own, so stopping it disturbs nobody else.
"""

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kazoo.client import KazooClient
from support.aio import run_async
from support.store_contract import (
    MakeStore,
    StoreContract,
    dump,
    layout_ops,
    opened,
    pegasus_layout,
)
from support.zookeeper import ZkServer, free_port, start_zookeeper

from dupkv.meta.store import Create, StoreUnavailable, ZooKeeperStore, open_store

CONTRACT_TIMEOUT_MS = 10_000
OUTAGE_TIMEOUT_MS = 1_000


def unique_root() -> str:
    return f"/dupkv-test/{uuid.uuid4().hex[:12]}"


def zk_store(hosts: str, root: str, timeout_ms: int = CONTRACT_TIMEOUT_MS) -> MakeStore:
    return lambda: open_store(
        "meta_state_service_zookeeper",
        data_dir="/nonexistent/unused-by-zookeeper",
        zk_hosts=hosts,
        zk_timeout_ms=timeout_ms,
        root=root,
    )


class TestZooKeeperStoreContract(StoreContract):
    @pytest.fixture
    def make_store(self, zookeeper: ZkServer) -> MakeStore:
        return zk_store(zookeeper.hosts, unique_root())


def raw_tree(hosts: str, top: str) -> dict[str, bytes]:
    """The subtree as a plain kazoo client sees it, independent of the store."""
    client = KazooClient(hosts=hosts, timeout=10.0)
    client.start(timeout=10)
    try:
        tree: dict[str, bytes] = {}
        pending = [top]
        while pending:
            node = pending.pop()
            data, _stat = client.get(node)
            tree[node] = data
            pending.extend(f"{node}/{name}" for name in client.get_children(node))
        return tree
    finally:
        client.stop()
        client.close()


def test_pegasus_layout_lands_at_the_exact_paths_with_the_exact_bytes(
    zookeeper: ZkServer,
) -> None:
    root = "/pegasus/" + uuid.uuid4().hex[:12]
    layout = pegasus_layout(root)

    @run_async
    async def write() -> None:
        async with opened(zk_store(zookeeper.hosts, root)) as store:
            await store.commit(layout_ops(layout))
            await store.create(f"{root}/apps/3/0", b'{"pid":"3.0"}')  # makes /apps/3 on the way
            await store.set(f"{root}/apps/2/duplication/1700000000/1", b"12345")

    write()
    expected = {root: b"", **layout}
    expected[f"{root}/apps/3"] = b""
    expected[f"{root}/apps/3/0"] = b'{"pid":"3.0"}'
    expected[f"{root}/apps/2/duplication/1700000000/1"] = b"12345"
    assert raw_tree(zookeeper.hosts, root) == expected


# -- outages, on a ZooKeeper of the test's own --


@pytest.fixture
def own_zookeeper(tmp_path: Path) -> Iterator[ZkServer]:
    server = start_zookeeper(tmp_path / "zk")
    try:
        yield server
    finally:
        server.stop()


@run_async
async def test_a_stopped_zookeeper_is_unavailable_within_the_timeout_then_recovers(
    own_zookeeper: ZkServer,
) -> None:
    root = unique_root()
    async with opened(zk_store(own_zookeeper.hosts, root, OUTAGE_TIMEOUT_MS)) as store:
        layout = pegasus_layout(root)
        await store.commit(layout_ops(layout))
        own_zookeeper.stop()

        for name, call in [
            ("get", lambda: store.get(f"{root}/apps")),
            ("children", lambda: store.children(f"{root}/apps/2")),
            ("set", lambda: store.set(f"{root}/apps", b"lock")),
            ("commit", lambda: store.commit([Create(f"{root}/apps/9")])),
            ("delete", lambda: store.delete(f"{root}/apps/2")),
        ]:
            began = time.monotonic()
            with pytest.raises(StoreUnavailable) as err:
                await call()
            waited = time.monotonic() - began
            assert waited < OUTAGE_TIMEOUT_MS / 1000 + 1.0, (name, waited)
            assert err.value.code == "ERR_TIMEOUT"

        restarted = start_zookeeper(own_zookeeper.workdir, port=own_zookeeper.port)
        try:
            # kazoo reconnects on its own (backoff capped at 1 s); the first call waits for it.
            deadline = time.monotonic() + 15
            while True:
                try:
                    tree = await dump(store)
                    break
                except StoreUnavailable:
                    assert time.monotonic() < deadline, "the store did not reconnect"
            assert tree == {root: b"", **layout}
            await store.set(f"{root}/apps", b"lock")
            await store.create(f"{root}/apps/9", b"{}")
            assert await store.children(f"{root}/apps") == ["2", "9"]
            assert await store.get(f"{root}/apps") == b"lock"
        finally:
            restarted.stop()


@run_async
async def test_no_zookeeper_at_all_is_unavailable_within_the_timeout(tmp_path: Path) -> None:
    store = ZooKeeperStore(f"127.0.0.1:{free_port()}", unique_root(), timeout_ms=1000)
    try:
        began = time.monotonic()
        with pytest.raises(StoreUnavailable, match="within 1000 ms"):
            await store.exists(store.root)
        assert time.monotonic() - began < 2.0
    finally:
        await store.close()
