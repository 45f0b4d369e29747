"""The MetaStore contract, written once and run against every backend (test support).

A test module subclasses `StoreContract` as `Test...` and provides the fixture `make_store`:
a callable that opens a new store on the same data (the same data dir or ZooKeeper, the same
root) each time it is called, so reopening can be checked.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from dupkv.base.errors import BadInput, ErrorCode
from dupkv.meta.store import (
    MAX_COMMIT_OPS,
    MAX_DATA_BYTES,
    Create,
    Delete,
    MetaStore,
    NodeExists,
    NoNode,
    NotEmpty,
    Op,
    Set,
    StoreUnavailable,
)
from support.aio import run_async

MakeStore = Callable[[], MetaStore]

APP_INFO = (
    b'{"status":"app_status::AS_AVAILABLE","app_type":"pegasus","app_name":"temp",'
    b'"app_id":2,"partition_count":4,"envs":{},"is_stateful":1,"max_replica_count":1}'
)
DUP_INFO = (
    b'{"remote":"target","status":"DS_LOG","create_timestamp_ms":1700000000000,'
    b'"fail_mode":"FAIL_SLOW","remote_app_name":"temp","remote_replica_count":1}'
)


@contextlib.asynccontextmanager
async def opened(make_store: MakeStore) -> AsyncIterator[MetaStore]:
    store = make_store()
    try:
        yield store
    finally:
        await store.close()


async def dump(store: MetaStore, path: str | None = None) -> dict[str, bytes]:
    """Every node of the subtree at `path` (default: the root) with its data."""
    top = store.root if path is None else path
    tree: dict[str, bytes] = {}
    pending = [top]
    while pending:
        node = pending.pop()
        data = await store.get(node)
        assert data is not None, node
        tree[node] = data
        pending.extend(f"{node}/{name}" for name in await store.children(node))
    return tree


def pegasus_layout(root: str) -> dict[str, bytes]:
    """One table with 4 partitions and one duplication, as Pegasus's meta lays it out."""
    app = f"{root}/apps/2"
    dup = f"{app}/duplication/1700000000"
    nodes = {f"{root}/apps": b"unlock", app: APP_INFO, f"{app}/duplication": b"", dup: DUP_INFO}
    for pidx in range(4):
        nodes[f"{app}/{pidx}"] = b'{"pid":"2.%d","ballot":1}' % pidx
        nodes[f"{dup}/{pidx}"] = b"%d" % (100 * pidx)
    return nodes


def layout_ops(nodes: dict[str, bytes]) -> list[Op]:
    # Parents sort before their children, so one ordered commit creates the whole tree.
    return [Create(path, data) for path, data in sorted(nodes.items())]


class StoreContract:
    """What every MetaStore backend must do."""

    @pytest.fixture
    def make_store(self) -> MakeStore:
        raise NotImplementedError("a backend's test class provides make_store")

    # -- create / get / exists --

    @run_async
    async def test_root_exists_and_starts_empty(self, make_store: MakeStore) -> None:
        async with opened(make_store) as store:
            assert await store.exists(store.root)
            assert await store.get(store.root) == b""
            assert await store.children(store.root) == []

    @run_async
    async def test_create_then_get_returns_exact_bytes(self, make_store: MakeStore) -> None:
        async with opened(make_store) as store:
            blob = bytes(range(256))
            await store.create(f"{store.root}/apps", b"unlock")
            await store.create(f"{store.root}/apps/2", blob)
            await store.create(f"{store.root}/apps/3")
            assert await store.get(f"{store.root}/apps") == b"unlock"
            assert await store.get(f"{store.root}/apps/2") == blob
            assert await store.get(f"{store.root}/apps/3") == b""
            assert await store.exists(f"{store.root}/apps/3")

    @run_async
    async def test_absent_node_reads_as_none(self, make_store: MakeStore) -> None:
        async with opened(make_store) as store:
            assert await store.get(f"{store.root}/apps") is None
            assert not await store.exists(f"{store.root}/apps")
            assert not await store.exists(f"{store.root}/apps/2/0")

    @run_async
    async def test_create_existing_raises_node_exists(self, make_store: MakeStore) -> None:
        async with opened(make_store) as store:
            path = f"{store.root}/apps"
            await store.create(path, b"lock")
            with pytest.raises(NodeExists) as err:
                await store.create(path, b"other")
            assert err.value.path == path
            assert err.value.code == "ERR_NODE_ALREADY_EXIST"
            assert await store.get(path) == b"lock"
            with pytest.raises(NodeExists):
                await store.create(store.root)

    @run_async
    async def test_create_needs_parent_unless_make_parents(self, make_store: MakeStore) -> None:
        async with opened(make_store) as store:
            deep = f"{store.root}/apps/2/duplication/7/0"
            with pytest.raises(NoNode) as err:
                await store.create(deep, b"5", make_parents=False)
            assert err.value.code == ErrorCode.OBJECT_NOT_FOUND
            assert not await store.exists(f"{store.root}/apps")

            await store.create(deep, b"5")
            assert await store.get(deep) == b"5"
            for ancestor in ("apps", "apps/2", "apps/2/duplication", "apps/2/duplication/7"):
                assert await store.get(f"{store.root}/{ancestor}") == b""

            await store.create(f"{store.root}/apps/2/duplication/7/1", b"6", make_parents=False)
            assert await store.children(f"{store.root}/apps/2/duplication/7") == ["0", "1"]

    # -- set --

    @run_async
    async def test_set_replaces_data_and_needs_the_node(self, make_store: MakeStore) -> None:
        async with opened(make_store) as store:
            path = f"{store.root}/apps"
            await store.create(path, b"lock")
            await store.set(path, b"unlock")
            assert await store.get(path) == b"unlock"
            await store.set(path, b"")
            assert await store.get(path) == b""
            with pytest.raises(NoNode) as err:
                await store.set(f"{path}/2", b"{}")
            assert err.value.path == f"{path}/2"
            assert not await store.exists(f"{path}/2")

    # -- children --

    @run_async
    async def test_children_are_sorted_names(self, make_store: MakeStore) -> None:
        async with opened(make_store) as store:
            app = f"{store.root}/apps/2"
            for name in ("2", "10", "duplication", "1", "0"):
                await store.create(f"{app}/{name}")
            await store.create(f"{app}/duplication/5/0")
            assert await store.children(app) == ["0", "1", "10", "2", "duplication"]
            assert await store.children(f"{app}/10") == []
            assert await store.children(store.root) == ["apps"]
            with pytest.raises(NoNode):
                await store.children(f"{store.root}/nothing")

    # -- delete --

    @run_async
    async def test_delete_removes_the_subtree_only(self, make_store: MakeStore) -> None:
        async with opened(make_store) as store:
            apps = f"{store.root}/apps"
            # Siblings that share the prefix "2" must survive deleting /apps/2.
            for path in ("2/0", "2/1", "2/duplication/9/0", "20/0", "2-x", "2_y"):
                await store.create(f"{apps}/{path}", b"x")
            await store.delete(f"{apps}/2")
            assert not await store.exists(f"{apps}/2")
            assert not await store.exists(f"{apps}/2/duplication/9/0")
            assert await store.children(apps) == ["2-x", "20", "2_y"]
            assert await store.get(f"{apps}/20/0") == b"x"

    @run_async
    async def test_delete_absent_is_not_an_error(self, make_store: MakeStore) -> None:
        async with opened(make_store) as store:
            await store.delete(f"{store.root}/apps/2")
            await store.delete(f"{store.root}/apps/2", recursive=False)

    @run_async
    async def test_delete_non_recursive_removes_only_leaves(self, make_store: MakeStore) -> None:
        async with opened(make_store) as store:
            app = f"{store.root}/apps/2"
            await store.create(f"{app}/0", b"p0")
            with pytest.raises(NotEmpty) as err:
                await store.delete(app, recursive=False)
            assert err.value.code == ErrorCode.INVALID_PARAMETERS
            assert await store.get(f"{app}/0") == b"p0"
            await store.delete(f"{app}/0", recursive=False)
            await store.delete(app, recursive=False)
            assert not await store.exists(app)

    @run_async
    async def test_delete_of_a_subtree_larger_than_a_commit(self, make_store: MakeStore) -> None:
        async with opened(make_store) as store:
            app = f"{store.root}/apps/2"
            await store.create(app)
            count = MAX_COMMIT_OPS + 500
            ops: list[Op] = [Create(f"{app}/{i}", b"%d" % i) for i in range(count)]
            for start in range(0, count, 500):
                await store.commit(ops[start : start + 500])
            assert len(await store.children(app)) == count
            await store.delete(app)
            assert not await store.exists(app)
            assert await store.children(store.root) == ["apps"]

    # -- commit --

    @run_async
    async def test_commit_applies_every_operation(self, make_store: MakeStore) -> None:
        async with opened(make_store) as store:
            layout = pegasus_layout(store.root)
            await store.commit(layout_ops(layout))
            assert await dump(store) == {store.root: b"", **layout}

            dup = f"{store.root}/apps/2/duplication/1700000000"
            await store.commit(
                [
                    Set(f"{dup}/0", b"150"),
                    Delete(f"{dup}/3"),
                    Create(f"{store.root}/apps/3", b"{}"),
                    Create(f"{store.root}/apps/3/0", b"{}"),
                ]
            )
            assert await store.get(f"{dup}/0") == b"150"
            assert await store.children(dup) == ["0", "1", "2"]
            assert await store.children(f"{store.root}/apps/3") == ["0"]

    @pytest.mark.parametrize(
        ("failing", "error"),
        [
            (lambda root: Create(f"{root}/apps/2", b"again"), NodeExists),
            (lambda root: Create(f"{root}/apps/9/0", b"{}"), NoNode),
            (lambda root: Set(f"{root}/apps/9", b"{}"), NoNode),
            (lambda root: Delete(f"{root}/apps/9"), NoNode),
            (lambda root: Delete(f"{root}/apps/2"), NotEmpty),
        ],
        ids=["create-existing", "create-orphan", "set-absent", "delete-absent", "delete-parent"],
    )
    @run_async
    async def test_commit_is_all_or_nothing(
        self, make_store: MakeStore, failing: Callable[[str], Op], error: type[Exception]
    ) -> None:
        async with opened(make_store) as store:
            root = store.root
            await store.commit(layout_ops(pegasus_layout(root)))
            before = await dump(store)
            bad = failing(root)
            ops: list[Op] = [
                Set(f"{root}/apps", b"lock"),
                Create(f"{root}/apps/3", b"{}"),
                Create(f"{root}/apps/3/0", b"{}"),
                Delete(f"{root}/apps/2/0"),
                bad,
                Set(f"{root}/apps/2", b"never"),
            ]
            with pytest.raises(error) as err:
                await store.commit(ops)
            assert getattr(err.value, "path", None) == bad.path
            assert await dump(store) == before

    @run_async
    async def test_commit_of_nothing_does_nothing(self, make_store: MakeStore) -> None:
        async with opened(make_store) as store:
            await store.commit([])
            assert await store.children(store.root) == []

    @run_async
    async def test_commit_limits_are_checked_before_anything_runs(
        self, make_store: MakeStore
    ) -> None:
        async with opened(make_store) as store:
            app = f"{store.root}/apps"
            with pytest.raises(BadInput, match="at most"):
                await store.commit([Create(f"{app}/{i}") for i in range(MAX_COMMIT_OPS + 1)])
            with pytest.raises(BadInput, match="at most"):
                await store.commit([Create(app, b"x" * (MAX_DATA_BYTES + 1))])
            with pytest.raises(BadInput, match="at most"):
                await store.create(app, b"x" * (MAX_DATA_BYTES + 1))
            with pytest.raises(BadInput):
                await store.commit([Create(app), "not an op"])  # type: ignore[list-item]
            assert await store.children(store.root) == []

    # -- paths --

    @pytest.mark.parametrize(
        "suffix", ["/", "//apps", "/apps/", "/apps//2", "/./apps", "/apps/..", "/a\x00b", "/a\nb"]
    )
    @run_async
    async def test_malformed_paths_are_bad_input(self, make_store: MakeStore, suffix: str) -> None:
        async with opened(make_store) as store:
            path = store.root + suffix
            calls: list[Callable[[], Awaitable[object]]] = [
                lambda: store.create(path),
                lambda: store.set(path, b""),
                lambda: store.get(path),
                lambda: store.exists(path),
                lambda: store.children(path),
                lambda: store.delete(path),
                lambda: store.commit([Create(path)]),
            ]
            for call in calls:
                with pytest.raises(BadInput):
                    await call()
            assert await store.children(store.root) == []

    @run_async
    async def test_paths_outside_the_root_are_bad_input(self, make_store: MakeStore) -> None:
        async with opened(make_store) as store:
            for path in ("/elsewhere", store.root + "-sibling", "apps", "/"):
                with pytest.raises(BadInput):
                    await store.get(path)
                with pytest.raises(BadInput):
                    await store.create(path)
            with pytest.raises(BadInput, match="cannot be deleted"):
                await store.delete(store.root)
            with pytest.raises(BadInput, match="cannot be deleted"):
                await store.commit([Delete(store.root)])

    # -- ordering, durability, closing --

    @run_async
    async def test_calls_take_effect_in_the_order_they_were_made(
        self, make_store: MakeStore
    ) -> None:
        async with opened(make_store) as store:
            path = f"{store.root}/apps/2/duplication/1/0"
            writes = [store.create(path, b"0")]
            writes += [store.set(path, b"%d" % decree) for decree in range(1, 50)]
            await asyncio.gather(*writes)
            assert await store.get(path) == b"49"

            app = f"{store.root}/apps/2"
            await asyncio.gather(
                store.delete(app),
                store.create(f"{app}/0", b"new"),
                store.set(f"{app}/0", b"newer"),
                store.create(f"{app}/1", b"{}", make_parents=False),
            )
            assert await store.children(app) == ["0", "1"]
            assert await store.get(f"{app}/0") == b"newer"

    @run_async
    async def test_a_reopened_store_has_everything(self, make_store: MakeStore) -> None:
        layout: dict[str, bytes] = {}
        async with opened(make_store) as store:
            layout = pegasus_layout(store.root)
            await store.commit(layout_ops(layout))
            await store.set(f"{store.root}/apps", b"lock")
            layout[f"{store.root}/apps"] = b"lock"
            expected = {store.root: b"", **layout}
        async with opened(make_store) as store:
            assert await dump(store) == expected

    @run_async
    async def test_a_closed_store_is_unavailable(self, make_store: MakeStore) -> None:
        store = make_store()
        await store.create(f"{store.root}/apps")
        await store.close()
        await store.close()
        with pytest.raises(StoreUnavailable, match="closed"):
            await store.get(f"{store.root}/apps")
        with pytest.raises(StoreUnavailable):
            await store.create(f"{store.root}/apps/2")
