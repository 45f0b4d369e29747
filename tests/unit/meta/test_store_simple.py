"""The embedded metadata store (`meta_state_service_simple`) and the store's pure rules."""

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from support.aio import run_async
from support.store_contract import MakeStore, StoreContract, opened

from dupkv.base.errors import BadInput
from dupkv.meta.store import (
    KINDS,
    MAX_COMMIT_BYTES,
    MAX_COMMIT_OPS,
    Create,
    Delete,
    SimpleStore,
    StoreUnavailable,
    ZooKeeperStore,
    open_store,
)
from dupkv.meta.store.api import ancestors, check_path, check_root, chunked, leaf_first

ROOT = "/pegasus/onebox"


def simple(data_dir: Path, **kwargs: int) -> SimpleStore:
    return SimpleStore(str(data_dir), ROOT, **kwargs)


class TestSimpleStoreContract(StoreContract):
    @pytest.fixture
    def make_store(self, tmp_path: Path) -> MakeStore:
        return lambda: open_store(
            "meta_state_service_simple",
            data_dir=str(tmp_path / "meta"),
            zk_hosts="",
            zk_timeout_ms=1000,
            root=ROOT,
        )


# -- the embedded backend's own promises --


@run_async
async def test_nodes_live_in_meta_db_under_the_data_dir(tmp_path: Path) -> None:
    async with opened(lambda: simple(tmp_path / "meta")) as store:
        await store.create(f"{ROOT}/apps/2", b'{"app_id":2}')
    with sqlite3.connect(tmp_path / "meta" / "meta.db") as db:
        rows = dict(db.execute("SELECT path, data FROM nodes").fetchall())
        (mode,) = db.execute("PRAGMA journal_mode").fetchone()
    db.close()
    assert mode == "wal"
    assert rows == {
        "/pegasus": b"",
        ROOT: b"",
        f"{ROOT}/apps": b"",
        f"{ROOT}/apps/2": b'{"app_id":2}',
    }


@run_async
async def test_a_second_store_on_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    async with opened(lambda: simple(tmp_path)) as first:
        await first.create(f"{ROOT}/apps")
        async with opened(lambda: simple(tmp_path)) as second:
            with pytest.raises(StoreUnavailable, match="locked"):
                await second.get(f"{ROOT}/apps")
        await first.set(f"{ROOT}/apps", b"still mine")
        assert await first.get(f"{ROOT}/apps") == b"still mine"


@run_async
async def test_an_unusable_data_dir_is_unavailable_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    async with opened(lambda: simple(tmp_path / "file")) as store:
        with pytest.raises(StoreUnavailable):
            await store.exists(ROOT)


@run_async
async def test_a_call_that_outlives_its_timeout_is_unavailable(tmp_path: Path) -> None:
    async with opened(lambda: simple(tmp_path, op_timeout_ms=200)) as store:
        await store.create(f"{ROOT}/apps")
        # Occupy the store's only worker the way a stalled disk would.
        stall = asyncio.get_running_loop().run_in_executor(store._worker, time.sleep, 1.0)
        began = time.monotonic()
        with pytest.raises(StoreUnavailable, match="200 ms"):
            await store.get(f"{ROOT}/apps")
        assert time.monotonic() - began < 0.8
        await stall
        assert await store.get(f"{ROOT}/apps") == b""


_CRASH_WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from dupkv.meta.store import Create, SimpleStore

    async def main(data_dir):
        store = SimpleStore(data_dir, "/pegasus/onebox")
        root = store.root + "/apps/2/duplication/1"
        await store.create(root, b"{}")
        print("ready", flush=True)
        decree = 0
        while True:
            decree += 1
            if decree % 2:
                await store.create(f"{root}/{decree}", b"%d" % decree)
            else:
                await store.commit([Create(f"{root}/{decree}", b"%d" % decree)])
            await store.set(root, b"%d" % decree)
            print(decree, flush=True)

    asyncio.run(main(sys.argv[1]))
    """
)


def test_a_killed_process_loses_no_acknowledged_write(tmp_path: Path) -> None:
    data_dir = tmp_path / "meta"
    child = subprocess.Popen(
        [sys.executable, "-c", _CRASH_WRITER, str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    acked = 0
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready", child.stderr
        deadline = time.monotonic() + 30
        while acked < 300 and time.monotonic() < deadline:
            line = child.stdout.readline()
            assert line, "the writer died early"
            acked = int(line)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.communicate(timeout=10)
    assert acked >= 300
    assert child.returncode == -signal.SIGKILL

    async def check() -> None:
        async with opened(lambda: simple(data_dir)) as store:
            root = f"{ROOT}/apps/2/duplication/1"
            names = await store.children(root)
            decrees = sorted(int(name) for name in names)
            # Every acknowledged decree is there; at most the one in flight follows it.
            assert decrees[:acked] == list(range(1, acked + 1))
            assert len(decrees) <= acked + 1
            for decree in range(1, acked + 1):
                assert await store.get(f"{root}/{decree}") == b"%d" % decree
            assert int(await store.get(root) or b"0") >= acked

    asyncio.run(check())


# -- the factory and the pure rules shared by both backends --


def test_open_store_picks_the_backend_by_pegasus_name(tmp_path: Path) -> None:
    common = {"data_dir": str(tmp_path), "zk_hosts": "127.0.0.1:2181", "zk_timeout_ms": 1000}
    assert isinstance(open_store("meta_state_service_simple", root=ROOT, **common), SimpleStore)
    zk = open_store("meta_state_service_zookeeper", root=ROOT, **common)
    assert isinstance(zk, ZooKeeperStore)
    assert KINDS == ("meta_state_service_simple", "meta_state_service_zookeeper")


def test_an_unknown_kind_names_the_accepted_ones(tmp_path: Path) -> None:
    with pytest.raises(BadInput) as err:
        open_store("etcd", data_dir=str(tmp_path), zk_hosts="", zk_timeout_ms=1000, root=ROOT)
    assert "meta_state_service_type" in str(err.value)
    assert "meta_state_service_simple, meta_state_service_zookeeper" in str(err.value)


@pytest.mark.parametrize(
    ("hosts", "timeout_ms", "message"),
    [("", 1000, "hosts_list"), ("127.0.0.1:2181", 0, "timeout_ms")],
)
def test_bad_zookeeper_settings_are_bad_input(hosts: str, timeout_ms: int, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        ZooKeeperStore(hosts, ROOT, timeout_ms=timeout_ms)


@pytest.mark.parametrize("root", ["/", "/zookeeper", "/zookeeper/quota", "pegasus", "/pegasus/"])
def test_a_root_must_be_a_dedicated_subtree(root: str) -> None:
    with pytest.raises(BadInput):
        check_root(root)


@pytest.mark.parametrize(
    "path", ["/pegasus/onebox/apps/2/duplication/1700000000/0", "/a", "/", "/a-b_c.d/é"]
)
def test_well_formed_paths_pass(path: str) -> None:
    assert check_path(path) == path


@pytest.mark.parametrize(
    ("path", "rule"),
    [
        ("", "absolute"),
        ("a/b", "absolute"),
        ("/a/", "end with"),
        ("/a//b", "segment"),
        ("/a/./b", "segment"),
        ("/a/..", "segment"),
        ("/a\x00", r"U\+0000"),
        ("/a\ud800", r"U\+D800"),
        ("/" + "a" * 1024, "longer than"),
        (b"/a", "must be a str"),
    ],
)
def test_malformed_paths_name_the_rule(path: object, rule: str) -> None:
    with pytest.raises(BadInput, match=rule):
        check_path(path)


def test_ancestors_and_leaf_first_order() -> None:
    assert ancestors("/a/b/c") == ["/a", "/a/b"]
    assert ancestors("/a") == []
    tree = {"/t": ["x", "y"], "/t/x": ["1"], "/t/x/1": [], "/t/y": []}
    order = leaf_first(tree, "/t")
    assert sorted(order) == ["/t", "/t/x", "/t/x/1", "/t/y"]
    for node in order:
        for name in tree[node]:
            assert order.index(f"{node}/{name}") < order.index(node)


def test_chunked_keeps_order_and_respects_both_limits() -> None:
    many = [Delete(f"/r/{i}") for i in range(2 * MAX_COMMIT_OPS + 1)]
    chunks = list(chunked(many))
    assert [len(c) for c in chunks] == [MAX_COMMIT_OPS, MAX_COMMIT_OPS, 1]
    assert [op for c in chunks for op in c] == many
    heavy = [Create(f"/r/{i}", b"x" * (MAX_COMMIT_BYTES // 3)) for i in range(4)]
    assert [len(c) for c in chunked(heavy)] == [2, 2]
