"""The meta server's duplication core (`dupkv.meta.duplication`), without IO.

Behaviours 8-38 of reference/pegasus-duplication.md §10, as they apply to incremental
duplication. Plans are carried out on `Tree`, an in-memory tree with the store's commit rules
(a create needs its parent and fails on an existing node, a set needs the node, a delete
takes a leaf), so every test also checks that the writes a plan asks for are possible, and
recovery reads back exactly what earlier plans wrote.
"""

import json
from collections.abc import Iterable

import pytest

from dupkv.base.config import Config
from dupkv.base.errors import ErrorCode
from dupkv.duplication.status import DupStatus, FailMode
from dupkv.meta import codec
from dupkv.meta.duplication import (
    FULL_DUPLICATION_HINT,
    INVALID_DECREE,
    AddRequest,
    Confirm,
    DupDecodeError,
    DuplicationInfo,
    Duplications,
    DupSettings,
    MatchType,
    StoredApp,
    StoredDup,
    decode_dup_json,
    encode_dup_json,
    http_view,
    parse_decree,
)
from dupkv.meta.state import App, AppStatus, MetaError, MetaState, Plan
from dupkv.meta.store.api import Create, Delete, Op, Set
from dupkv.rpc.idl_meta import dup as dup_idl

ROOT = "/pegasus/master-cluster"
NODE0, NODE1 = "127.0.0.1:34801", "127.0.0.1:34802"
NOW_MS = 1_700_000_000_123
REMOTE = "slave-cluster"
LOG, PAUSE, REMOVED = DupStatus.DS_LOG, DupStatus.DS_PAUSE, DupStatus.DS_REMOVED


class Tree:
    """The metadata store's tree and commit rules, in memory."""

    def __init__(self) -> None:
        self.nodes: dict[str, bytes] = {ROOT: b"", f"{ROOT}/apps": b""}

    def children(self, path: str) -> list[str]:
        prefix = path + "/"
        return sorted(
            p[len(prefix) :]
            for p in self.nodes
            if p.startswith(prefix) and "/" not in p[len(prefix) :]
        )

    def commit(self, ops: Iterable[Op]) -> None:
        staged = dict(self.nodes)
        for op in ops:
            parent = op.path.rsplit("/", 1)[0]
            if isinstance(op, Create):
                assert parent in staged, f"create {op.path}: no parent"
                assert op.path not in staged, f"create {op.path}: exists"
                staged[op.path] = op.data
            elif isinstance(op, Set):
                assert op.path in staged, f"set {op.path}: no node"
                staged[op.path] = op.data
            else:
                assert isinstance(op, Delete)
                assert op.path in staged, f"delete {op.path}: no node"
                assert not any(p.startswith(op.path + "/") for p in staged), (
                    f"{op.path}: not a leaf"
                )
                del staged[op.path]
        self.nodes = staged

    def run(self, plan: Plan | None) -> object:
        if plan is None:
            return None
        self.commit(plan.ops)
        plan.apply()
        return plan.result

    def stored_apps(self, state: MetaState) -> dict[int, StoredApp]:
        """What the shell's recovery reads: every available app's duplication subtree."""
        out = {}
        for app_id in state.apps:
            top = f"{state.app_path(app_id)}/duplication"
            if top not in self.nodes:
                out[app_id] = StoredApp(exists=False)
                continue
            dups = []
            for name in self.children(top):
                path = f"{top}/{name}"
                kids = {k: self.nodes[f"{path}/{k}"] for k in self.children(path)}
                dups.append(StoredDup(name, self.nodes[path], kids))
            out[app_id] = StoredApp(True, dups)
        return out


def settings(**kw: object) -> DupSettings:
    base: dict[str, object] = dict(
        cluster_name="master-cluster",
        dup_group={"master-cluster": 1, REMOTE: 2, "cluster_without_address_for_test": 3},
        clusters={"master-cluster": ["127.0.0.1:34601"], REMOTE: ["127.0.0.1:44601"]},
        progress_min_update_period_ms=1000,
    )
    base.update(kw)
    return DupSettings(**base)  # type: ignore[arg-type]


class World:
    """A meta server's state and duplications, on a Tree, with one live replica server."""

    def __init__(self, **kw: object) -> None:
        self.tree = Tree()
        self.state = MetaState(ROOT, lease_ms=5000)
        self.state.heartbeat(NODE0, NOW_MS)
        self.dups = Duplications(self.state, settings(**kw))

    def create_app(self, name: str, partitions: int = 8) -> App:
        plan = self.state.plan_create_app(name, partitions, 1, {}, False, NOW_MS)
        app_id = self.tree.run(plan)
        assert isinstance(app_id, int)
        return self.state.apps[app_id]

    def add(
        self, app: str, remote: str = REMOTE, now_ms: int = NOW_MS, **kw: object
    ) -> tuple[str, DuplicationInfo]:
        req = AddRequest(app, remote, **kw)  # type: ignore[arg-type]
        result = self.tree.run(self.dups.plan_add(req, now_ms))
        return result.err, result.dup  # type: ignore[attr-defined]

    def modify(
        self, app: str, dupid: int, status: int | None = None, fail_mode: int | None = None
    ) -> object:
        return self.tree.run(self.dups.plan_modify(app, dupid, status, fail_mode))

    def sync(
        self, confirms: list[Confirm], now_ms: int = NOW_MS, node: str = NODE0
    ) -> dict[int, dict[int, dict[int, int]]]:
        self.tree.run(self.dups.plan_sync(node, confirms, now_ms))
        return {
            app_id: {d.dupid: d.stored_progress() for d in ds}
            for app_id, ds in self.dups.sync_view(node).items()
        }

    def restarted(self, **kw: object) -> "World":
        """A new meta server on the same store: tables loaded, then duplications recovered."""
        w = World.__new__(World)
        w.tree = self.tree
        w.state = MetaState(ROOT, lease_ms=5000)
        w.state.heartbeat(NODE0, NOW_MS)
        for name in self.tree.children(f"{ROOT}/apps"):
            app_path = f"{ROOT}/apps/{name}"
            parts = {
                int(c): self.tree.nodes[f"{app_path}/{c}"]
                for c in self.tree.children(app_path)
                if c.isdigit()
            }
            w.state.load_app(self.tree.nodes[app_path], parts)
        w.dups = Duplications(w.state, settings(**kw))
        plan, w.warnings = w.dups.recover(self.tree.stored_apps(w.state))
        self.tree.run(plan)
        return w

    def dup_json(self, app: App, dupid: int) -> dict[str, object]:
        return json.loads(self.tree.nodes[self.dups.dup_path(app.app_id, dupid)])

    def stored_duplicating(self, app: App) -> bool:
        return codec.decode_app(self.tree.nodes[self.state.app_path(app.app_id)]).duplicating


def refused(fn: object, *args: object) -> MetaError:
    with pytest.raises(MetaError) as info:
        fn(*args)  # type: ignore[operator]
    return info.value


# -- add (behaviours 8, 18-26) ---------------------------------------------------------------


def test_a_new_duplication_is_stored_as_ds_log_with_every_partition_not_started() -> None:
    w = World()
    app = w.create_app("test_app", partitions=4)
    plan = w.dups.plan_add(AddRequest("test_app", REMOTE), NOW_MS)
    info = plan.result.dup  # type: ignore[attr-defined]
    # Planned, not yet stored: nothing in memory has changed (behaviour 8: INIT until persisted).
    assert info.status == DupStatus.DS_INIT and w.dups.dups_of(app.app_id) == []
    assert not app.duplicating
    w.tree.run(plan)
    assert info.status == LOG and info.fail_mode == FailMode.FAIL_SLOW
    assert info.dupid == NOW_MS // 1000 and info.create_timestamp_ms == NOW_MS
    assert info.stored_progress() == {0: -1, 1: -1, 2: -1, 3: -1}
    assert (info.remote_app_name, info.remote_replica_count) == ("test_app", 1)
    assert app.duplicating and w.stored_duplicating(app)
    path = f"{ROOT}/apps/{app.app_id}/duplication/{info.dupid}"
    assert w.tree.nodes[path] == (
        b'{"remote":"slave-cluster","status":"DS_LOG","create_timestamp_ms":1700000000123,'
        b'"fail_mode":"FAIL_SLOW","remote_app_name":"test_app","remote_replica_count":1}'
    )
    assert w.tree.children(path) == []  # progress nodes appear on the first confirm


def test_add_with_remote_app_name_and_replica_count() -> None:
    w = World()
    w.create_app("test_app")
    err, info = w.add("test_app", remote_app_name="remote_test_app", remote_replica_count=3)
    assert err == ErrorCode.OK
    assert (info.remote_app_name, info.remote_replica_count) == ("remote_test_app", 3)


def test_add_without_remote_app_name_uses_the_source_table_and_its_replica_count() -> None:
    w = World()
    app = w.create_app("test_app")
    app.max_replica_count = 3
    err, info = w.add("test_app", remote_app_name="", remote_replica_count=0)
    assert err == ErrorCode.OK
    assert (info.remote_app_name, info.remote_replica_count) == ("test_app", 3)


def test_re_adding_a_pair_answers_dup_exist_with_the_existing_duplication() -> None:
    w = World()
    app = w.create_app("test_app")
    err, first = w.add("test_app", remote_app_name="remote_test_app")
    assert err == ErrorCode.OK
    w.modify("test_app", first.dupid, status=PAUSE)
    before = dict(w.tree.nodes)
    for later in (NOW_MS + 1000, NOW_MS + 2000):
        err, again = w.add("test_app", now_ms=later)
        assert err == ErrorCode.DUP_EXIST and again is first
    assert again.remote_app_name == "remote_test_app"  # the existing one's, not the default
    assert again.status == PAUSE  # re-adding does not resume it (Pegasus does, in memory only)
    assert w.tree.nodes == before
    _, dups = w.dups.query("test_app")
    assert [d.dupid for d in dups] == [first.dupid] and app.duplicating


def test_add_validation_order_and_hints() -> None:
    w = World()
    w.create_app("test_app")
    cases = [
        # (request, code, hint fragment): every case would also fail the later checks
        (
            AddRequest("nope", "master-cluster"),
            ErrorCode.INVALID_PARAMETERS,
            "adding duplication to itself",
        ),
        (
            AddRequest("nope", "test-invalid-remote"),
            ErrorCode.INVALID_PARAMETERS,
            "get_duplication_cluster_id(test-invalid-remote) failed",
        ),
        (
            AddRequest("nope", "cluster_without_address_for_test"),
            ErrorCode.INVALID_PARAMETERS,
            "failed to find cluster[cluster_without_address_for_test] address in config "
            "[pegasus.clusters]",
        ),
        (
            AddRequest("nope", REMOTE, remote_replica_count=-1),
            ErrorCode.INVALID_PARAMETERS,
            "remote_replica_count(-1) must be >= 0",
        ),
        (
            AddRequest("nope", REMOTE, is_duplicating_checkpoint=True),
            ErrorCode.INVALID_PARAMETERS,
            FULL_DUPLICATION_HINT,
        ),
        (AddRequest("nope", REMOTE), ErrorCode.APP_NOT_EXIST, "app nope was not found"),
    ]
    for req, code, hint in cases:
        e = refused(w.dups.plan_add, req, NOW_MS)
        assert (e.code, hint in e.hint) == (code, True), (req, e)
    assert w.dups.by_app == {}


def test_full_duplication_is_refused_also_for_an_existing_pair() -> None:
    w = World()
    w.create_app("test_app")
    w.add("test_app")
    e = refused(
        w.dups.plan_add, AddRequest("test_app", REMOTE, is_duplicating_checkpoint=True), NOW_MS
    )
    assert (e.code, e.hint) == (ErrorCode.INVALID_PARAMETERS, FULL_DUPLICATION_HINT)


def test_a_remote_outside_the_group_is_accepted_when_other_cluster_ids_are_ignored() -> None:
    w = World(ignore_other_cluster_ids=True, clusters={"elsewhere": ["127.0.0.1:1"]})
    w.create_app("test_app")
    err, info = w.add("test_app", remote="elsewhere")
    assert err == ErrorCode.OK and info.remote == "elsewhere"


def test_two_tables_cannot_duplicate_into_the_same_remote_table() -> None:
    w = World()
    w.create_app("test_app")
    w.create_app("test_app_2")
    w.add("test_app", remote_app_name="remote_test_app")
    e = refused(
        w.dups.plan_add, AddRequest("test_app_2", REMOTE, remote_app_name="remote_test_app"), NOW_MS
    )
    assert e.code == ErrorCode.INVALID_PARAMETERS
    assert (
        "another app(test_app) is also duplicated to the same remote "
        "app(slave-cluster.remote_test_app)" in e.hint
    )
    err, _ = w.add("test_app_2", remote_app_name="remote_test_app_2")
    assert err == ErrorCode.OK


def test_add_query_and_modify_on_a_missing_or_dropped_table_answer_app_not_exist() -> None:
    w = World()
    w.create_app("test_app")
    _, info = w.add("test_app")
    w.tree.run(w.state.plan_drop_app("test_app", False, 3600, NOW_MS))
    for name in ("test_app", "missing"):
        assert (
            refused(w.dups.plan_add, AddRequest(name, REMOTE), NOW_MS).code
            == ErrorCode.APP_NOT_EXIST
        )
        assert refused(w.dups.query, name).code == ErrorCode.APP_NOT_EXIST
        e = refused(w.dups.plan_modify, name, info.dupid, int(REMOVED), None)
        assert e.code == ErrorCode.APP_NOT_EXIST


def test_the_dup_directory_is_created_once_and_the_app_node_written_only_on_change() -> None:
    w = World(
        clusters={REMOTE: ["127.0.0.1:1"], "third": ["127.0.0.1:2"]},
        dup_group={REMOTE: 2, "third": 3},
    )
    w.create_app("test_app")
    first = w.dups.plan_add(AddRequest("test_app", REMOTE), NOW_MS)
    assert [type(op).__name__ for op in first.ops] == ["Create", "Create", "Set"]
    w.tree.run(first)
    second = w.dups.plan_add(AddRequest("test_app", "third"), NOW_MS)
    assert [type(op).__name__ for op in second.ops] == ["Create"]
    w.tree.run(second)
    assert second.result.dup.dupid == first.result.dup.dupid + 1  # type: ignore[attr-defined]


def test_dupids_strictly_increase_and_are_never_reused_within_one_process() -> None:
    w = World()
    app = w.create_app("test_app")
    seen = []
    for _ in range(1000):  # behaviour 28, through add + remove within one second
        _, info = w.add("test_app")
        seen.append(info.dupid)
        w.modify("test_app", info.dupid, status=int(REMOVED))
    assert seen == list(range(NOW_MS // 1000, NOW_MS // 1000 + 1000))
    assert w.dups.dups_of(app.app_id) == []


# -- modify (behaviours 27, 29, 34, 36, 38) ---------------------------------------------------


def test_status_changes_through_modify() -> None:
    w = World()
    w.create_app("test_app")
    _, info = w.add("test_app")
    e = refused(w.dups.plan_modify, "test_app", info.dupid + 1, int(PAUSE), None)
    assert e.code == ErrorCode.OBJECT_NOT_FOUND
    for to, writes in ((PAUSE, 1), (PAUSE, 0), (LOG, 1), (LOG, 0)):
        plan = w.dups.plan_modify("test_app", info.dupid, int(to), None)
        assert len(plan.ops) == writes
        assert info.status != to or writes == 0  # memory changes only once stored
        assert w.tree.run(plan) == info.app_id
        assert (
            info.status == to
            and w.dup_json(w.state.apps[info.app_id], info.dupid)["status"] == to.name
        )
    for to in (DupStatus.DS_INIT, DupStatus.DS_PREPARE, DupStatus.DS_APP):
        assert (
            refused(w.dups.plan_modify, "test_app", info.dupid, int(to), None).code
            == ErrorCode.INVALID_PARAMETERS
        )
    assert (
        refused(w.dups.plan_modify, "test_app", info.dupid, 9, None).code
        == ErrorCode.INVALID_PARAMETERS
    )
    assert (
        refused(w.dups.plan_modify, "test_app", info.dupid, None, 7).code
        == ErrorCode.INVALID_PARAMETERS
    )
    _, dups = w.dups.query("test_app")  # behaviour 34: a rejected change leaves it as it was
    assert [(d.dupid, d.status) for d in dups] == [(info.dupid, LOG)]


def test_fail_mode_changes_keep_the_status_and_survive_status_changes_and_recovery() -> None:
    w = World()
    app = w.create_app("test_app")
    _, info = w.add("test_app")
    assert info.fail_mode == FailMode.FAIL_SLOW
    w.modify("test_app", info.dupid, fail_mode=int(FailMode.FAIL_SKIP))
    assert (info.status, info.fail_mode) == (LOG, FailMode.FAIL_SKIP)
    assert w.dups.plan_modify("test_app", info.dupid, None, int(FailMode.FAIL_SKIP)).ops == []
    w.modify("test_app", info.dupid, status=int(PAUSE))
    w.modify("test_app", info.dupid, status=int(LOG))
    assert info.fail_mode == FailMode.FAIL_SKIP
    assert w.dup_json(app, info.dupid)["fail_mode"] == "FAIL_SKIP"
    assert w.dups.sync_view(NODE0)[app.app_id][0].fail_mode == FailMode.FAIL_SKIP
    w.modify("test_app", info.dupid, status=int(PAUSE), fail_mode=int(FailMode.FAIL_SLOW))
    assert (info.status, info.fail_mode) == (PAUSE, FailMode.FAIL_SLOW)
    w.modify("test_app", info.dupid, fail_mode=int(FailMode.FAIL_SKIP))
    again = w.restarted().dups.dups_of(app.app_id)[0]
    assert (again.status, again.fail_mode) == (PAUSE, FailMode.FAIL_SKIP)


def test_remove_deletes_the_subtree_clears_duplicating_and_stays_removed_after_recovery() -> None:
    w = World()
    app = w.create_app("test_app", partitions=4)
    _, info = w.add("test_app")
    w.sync([Confirm(app.app_id, p, info.dupid, 10 + p) for p in range(4)])
    dup_path = w.dups.dup_path(app.app_id, info.dupid)
    assert w.tree.children(dup_path) == ["0", "1", "2", "3"]
    assert w.modify("test_app", info.dupid, status=int(REMOVED)) == app.app_id
    assert info.status == REMOVED  # the object still held by a caller says so
    assert w.dups.dups_of(app.app_id) == []
    assert not app.duplicating and not w.stored_duplicating(app)
    assert not any(p.startswith(dup_path) for p in w.tree.nodes)
    _, dups = w.dups.query("test_app")
    assert dups == []
    assert (
        refused(w.dups.plan_modify, "test_app", info.dupid, int(LOG), None).code
        == ErrorCode.OBJECT_NOT_FOUND
    )
    assert w.restarted().dups.dups_of(app.app_id) == []
    assert w.sync([Confirm(app.app_id, 0, info.dupid, 50)]) == {}  # behaviour 31


def test_removing_one_of_two_keeps_duplicating() -> None:
    w = World(
        clusters={REMOTE: ["127.0.0.1:1"], "third": ["127.0.0.1:2"]},
        dup_group={REMOTE: 2, "third": 3},
    )
    app = w.create_app("test_app")
    _, a = w.add("test_app")
    w.add("test_app", remote="third")
    plan = w.dups.plan_modify("test_app", a.dupid, int(REMOVED), None)
    assert plan.ops == [Delete(w.dups.dup_path(app.app_id, a.dupid))]
    w.tree.run(plan)
    assert app.duplicating and w.stored_duplicating(app)


def test_re_add_after_remove_gets_a_new_dupid_and_recovery_forgets_the_old_one() -> None:
    w = World()
    app = w.create_app("test_app")
    _, old = w.add("test_app")
    w.modify("test_app", old.dupid, status=int(REMOVED))
    err, new = w.add("test_app", now_ms=NOW_MS + 1000)
    assert err == ErrorCode.OK and new.dupid != old.dupid and new.status == LOG
    assert [d.dupid for d in w.restarted().dups.dups_of(app.app_id)] == [new.dupid]


# -- sync (behaviours 9-14, 30, 31) -----------------------------------------------------------


def test_sync_reports_every_partition_of_every_table_the_node_serves() -> None:
    w = World()
    app = w.create_app("test_app", partitions=8)  # all 8 partitions on NODE0, the only node
    _, info = w.add("test_app")
    confirms = [Confirm(app.app_id, p, info.dupid, d) for p, d in ((1, 5), (2, 6), (3, 7))]
    view = w.sync(confirms)
    assert view == {app.app_id: {info.dupid: {0: -1, 1: 5, 2: 6, 3: 7, 4: -1, 5: -1, 6: -1, 7: -1}}}
    d = w.dups.sync_view(NODE0)[app.app_id][0]
    assert (d.dupid, d.status, d.create_timestamp_ms, d.remote, d.fail_mode) == (
        info.dupid,
        LOG,
        NOW_MS,
        REMOTE,
        FailMode.FAIL_SLOW,
    )
    for pidx, decree in ((1, b"5"), (2, b"6"), (3, b"7")):
        assert w.tree.nodes[w.dups.progress_path(app.app_id, info.dupid, pidx)] == decree


def test_sync_progress_only_grows_and_is_stored_at_most_once_per_period() -> None:
    w = World(progress_min_update_period_ms=10_000)
    app = w.create_app("test_app", partitions=2)
    _, info = w.add("test_app")
    p = info.progress[1]
    path = w.dups.progress_path(app.app_id, info.dupid, 1)

    def confirm(decree: int, lcd: int, now: int, ckpt: bool = False) -> Plan:
        plan = w.dups.plan_sync(NODE0, [Confirm(app.app_id, 1, info.dupid, decree, ckpt, lcd)], now)
        w.tree.run(plan)
        return plan

    # Behaviour 10: the first update is stored at once (the node is created).
    assert confirm(5, 8, NOW_MS, ckpt=True).ops == [Create(path, b"5")]
    assert (p.stored_decree, p.volatile_decree, p.last_committed_decree) == (5, 5, 8)
    assert p.checkpoint_prepared
    # Behaviour 13: too soon after the last write: remembered, not stored.
    assert confirm(15, 25, NOW_MS + 9_999).ops == []
    assert (p.stored_decree, p.volatile_decree, p.last_committed_decree) == (5, 15, 25)
    assert not p.checkpoint_prepared
    # An older report never moves progress back; last_committed_decree is simply the latest.
    assert confirm(3, 24, NOW_MS + 9_999).ops == []
    assert (p.volatile_decree, p.last_committed_decree) == (15, 24)
    # Behaviour 14: once the period has passed the highest decree is stored (set_data).
    assert confirm(12, 26, NOW_MS + 10_000).ops == [Set(path, b"15")]
    assert (p.stored_decree, p.volatile_decree) == (15, 15)
    assert w.sync([], now_ms=NOW_MS + 10_000)[app.app_id][info.dupid] == {0: -1, 1: 15}
    # Nothing new: nothing written even when the period has passed.
    assert confirm(15, 30, NOW_MS + 50_000).ops == []
    # Several entries for one partition in one request: the highest wins, one write.
    plan = w.dups.plan_sync(
        NODE0, [Confirm(app.app_id, 1, info.dupid, d) for d in (40, 42, 41)], NOW_MS + 60_000
    )
    assert plan.ops == [Set(path, b"42")]


def test_sync_ignores_what_it_cannot_place() -> None:
    w = World()
    w.state.heartbeat(NODE1, NOW_MS)
    app = w.create_app("test_app", partitions=2)  # partition 0 on NODE0, 1 on NODE1
    assert app.primaries == [NODE0, NODE1]
    other = w.create_app("no_dups", partitions=2)
    _, info = w.add("test_app")
    confirms = [
        Confirm(app.app_id, 0, info.dupid + 1, 9),  # unknown dupid
        Confirm(99, 0, info.dupid, 9),  # unknown table
        Confirm(other.app_id, 0, info.dupid, 9),  # a table without duplications
        Confirm(app.app_id, 1, info.dupid, 9),  # a partition NODE0 does not serve
        Confirm(app.app_id, 5, info.dupid, 9),  # no such partition
    ]
    plan = w.dups.plan_sync(NODE0, confirms, NOW_MS)
    assert plan.ops == []
    w.tree.run(plan)
    # Every partition's progress is in the reply, also the one NODE0 does not serve.
    assert w.sync([]) == {app.app_id: {info.dupid: {0: -1, 1: -1}}}
    assert w.sync([Confirm(app.app_id, 1, info.dupid, 9)], node=NODE1)[app.app_id] == {
        info.dupid: {0: -1, 1: 9}
    }
    e = refused(w.dups.plan_sync, "127.0.0.9:1", [], NOW_MS)
    assert e.code == ErrorCode.OBJECT_NOT_FOUND


def test_paused_duplications_are_synced_and_the_reply_skips_tables_without_them() -> None:
    w = World()
    app = w.create_app("test_app", partitions=2)
    w.create_app("plain", partitions=2)
    _, info = w.add("test_app")
    w.modify("test_app", info.dupid, status=int(PAUSE))
    view = w.dups.sync_view(NODE0)
    assert list(view) == [app.app_id] and view[app.app_id][0].status == PAUSE
    assert w.sync([Confirm(app.app_id, 0, info.dupid, 4)])[app.app_id][info.dupid][0] == 4


def test_progress_reports_are_rate_limited_per_duplication() -> None:
    w = World(progress_min_report_period_ms=300_000)
    w.create_app("test_app", partitions=2)
    _, info = w.add("test_app")
    assert len(w.dups.take_reports([info], NOW_MS)) == 1
    assert w.dups.take_reports([info], NOW_MS + 299_999) == []
    [line] = w.dups.take_reports([info], NOW_MS + 300_000)
    assert f"dupid {info.dupid}" in line and "DS_LOG" in line


# -- JSON (behaviours 15, 16) -----------------------------------------------------------------


def source_app(replicas: int = 3) -> App:
    return App(2, "test_app", 4, replicas, AppStatus.AVAILABLE, {}, 0)


def test_json_round_trip() -> None:
    w = World()
    w.create_app("test_app", partitions=4)
    _, info = w.add("test_app", remote_app_name="remote_test_app", remote_replica_count=3)
    w.modify("test_app", info.dupid, status=int(PAUSE), fail_mode=int(FailMode.FAIL_SKIP))
    blob = info.to_json()
    back = decode_dup_json(blob, info.dupid, w.state.apps[info.app_id])
    assert back.to_json() == blob
    fields = (
        "remote",
        "status",
        "fail_mode",
        "create_timestamp_ms",
        "remote_app_name",
        "remote_replica_count",
    )
    assert [getattr(back, f) for f in fields] == [getattr(info, f) for f in fields]
    assert list(json.loads(blob)) == [
        "remote",
        "status",
        "create_timestamp_ms",
        "fail_mode",
        "remote_app_name",
        "remote_replica_count",
    ]


def test_unknown_status_or_fail_mode_names_fail_the_decode_as_removed() -> None:
    good = encode_dup_json(
        remote=REMOTE,
        status=DupStatus.DS_APP,
        create_timestamp_ms=1,
        fail_mode=FailMode.FAIL_SKIP,
        remote_app_name="r",
        remote_replica_count=3,
    )
    assert decode_dup_json(good, 1, source_app()).status == DupStatus.DS_APP
    for bad in (
        good.replace(b"DS_APP", b"DS_FOO"),
        good.replace(b"FAIL_SKIP", b"FAIL_NEVER"),
        good.replace(b'"create_timestamp_ms":1', b'"create_timestamp_ms":"1"'),
        good.replace(b'"remote_replica_count":3', b'"remote_replica_count":-3'),
        good.replace(b'"remote":"slave-cluster"', b'"remote":7'),
        b"",
        b"not json",
        b"[1, 2]",
        b"\xff\xfe",
    ):
        with pytest.raises(DupDecodeError) as e:
            decode_dup_json(bad, 1, source_app())
        assert e.value.status == REMOVED


def test_older_nodes_decode_with_the_source_table_defaults() -> None:
    old = b'{"remote":"slave-cluster","status":"DS_LOG","create_timestamp_ms":1537336970000}'
    info = decode_dup_json(old, 1537336970, source_app(replicas=3))
    assert (info.fail_mode, info.remote_app_name, info.remote_replica_count) == (
        FailMode.FAIL_SLOW,
        "test_app",
        3,
    )
    zero = (
        b'{"remote":"slave-cluster","status":"DS_LOG","remote_app_name":"",'
        b'"remote_replica_count":0,"extra":1}'
    )
    info = decode_dup_json(zero, 1, source_app(replicas=3))
    assert (info.remote_app_name, info.remote_replica_count) == ("test_app", 3)


def test_decree_values() -> None:
    assert [
        parse_decree(v) for v in (b"12345", b"0", b"-1", b"", b"xxx", b"-2", b"1e3", b" 1", None)
    ] == [12345, 0, -1, None, None, None, None, None, None]


# -- recovery (behaviours 29, 32, 33, 36) -----------------------------------------------------


def test_recovery_restores_every_duplication_as_it_was() -> None:
    w = World(
        clusters={REMOTE: ["127.0.0.1:1"], "third": ["127.0.0.1:2"]},
        dup_group={REMOTE: 2, "third": 3},
    )
    a = w.create_app("test_app", partitions=8)
    b = w.create_app("test_app_2", partitions=4)
    _, d1 = w.add("test_app")
    _, d2 = w.add("test_app_2", remote="third")
    w.sync([Confirm(a.app_id, p, d1.dupid, v) for p, v in ((1, 1000), (2, 2000), (4, 1000))])
    w.sync([Confirm(b.app_id, 3, d2.dupid, 77)])
    w.sync([Confirm(a.app_id, 1, d1.dupid, 1500, False, 1600)], now_ms=NOW_MS + 10)  # volatile only
    w.modify("test_app_2", d2.dupid, status=int(PAUSE), fail_mode=int(FailMode.FAIL_SKIP))
    r = w.restarted(
        clusters={REMOTE: ["127.0.0.1:1"], "third": ["127.0.0.1:2"]},
        dup_group={REMOTE: 2, "third": 3},
    )
    assert r.warnings == []
    for app, before in ((a, d1), (b, d2)):
        [after] = r.dups.dups_of(app.app_id)
        assert after.to_json() == before.to_json()
        assert after.stored_progress() == before.stored_progress()
        assert r.state.apps[app.app_id].duplicating
    assert r.dups.dups_of(a.app_id)[0].stored_progress() == {
        0: -1,
        1: 1000,
        2: 2000,
        3: -1,
        4: 1000,
        5: -1,
        6: -1,
        7: -1,
    }
    # The restored progress goes on from there; the stored node is updated, not re-created.
    p1 = r.dups.progress_path(a.app_id, d1.dupid, 1)
    plan = r.dups.plan_sync(NODE0, [Confirm(a.app_id, 1, d1.dupid, 1500)], NOW_MS + 20)
    assert plan.ops == [Set(p1, b"1500")]


def corrupted_world() -> tuple[World, App, DuplicationInfo]:
    w = World()
    app = w.create_app("test_app", partitions=4)
    _, info = w.add("test_app")
    return w, app, info


def test_recovery_skips_what_it_cannot_read() -> None:
    # Behaviour 33: a dup node that is not an i32 dupid, or whose value is empty.
    w, app, info = corrupted_world()
    top = w.dups.dir_path(app.app_id)
    w.tree.commit([Delete(w.dups.dup_path(app.app_id, info.dupid))])
    w.tree.commit(
        [
            Create(f"{top}/xxx", info.to_json()),
            Create(f"{top}/0123", info.to_json()),
            Create(f"{top}/99999999999", info.to_json()),
            Create(f"{top}/123", b""),
        ]
    )
    r = w.restarted()
    assert r.dups.dups_of(app.app_id) == []
    assert len(r.warnings) == 4
    # The table's stored `duplicating` flag is corrected to what was restored.
    assert not r.state.apps[app.app_id].duplicating and not r.stored_duplicating(app)


def test_recovery_drops_undecodable_removed_or_unreachable_duplications() -> None:
    w, app, info = corrupted_world()
    path = w.dups.dup_path(app.app_id, info.dupid)
    for blob, fragment in (
        (info.to_json().replace(b"DS_LOG", b"DS_FOO"), "cannot decode"),
        (info.to_json(status=DupStatus.DS_INIT), "status is DS_INIT"),
        (info.to_json(status=REMOVED), "status is DS_REMOVED"),
        (
            info.to_json().replace(b"slave-cluster", b"gone-cluster"),
            "no address in [pegasus.clusters]",
        ),
    ):
        w.tree.commit([Set(path, blob)])
        r = w.restarted()
        assert r.dups.dups_of(app.app_id) == []
        [warning] = r.warnings
        assert fragment in warning and path in warning
        # The node is still there, so a new duplication in the same second gets the next id.
        assert r.add("test_app", now_ms=NOW_MS)[1].dupid == info.dupid + 1
        w.tree.commit([Delete(w.dups.dup_path(app.app_id, info.dupid + 1))])


def test_recovery_leaves_a_partition_with_an_unreadable_decree_uninitialised() -> None:
    w, app, info = corrupted_world()
    w.sync([Confirm(app.app_id, p, info.dupid, 100 + p) for p in (0, 1)])
    w.tree.commit(
        [
            Set(w.dups.progress_path(app.app_id, info.dupid, 0), b"xxx"),
            Create(w.dups.progress_path(app.app_id, info.dupid, "x"), b"7"),
        ]
    )
    r = w.restarted()
    [again] = r.dups.dups_of(app.app_id)
    assert again.stored_progress() == {1: 101, 2: -1, 3: -1}  # partition 0 left out
    [warning] = r.warnings
    assert "partition 0 stops duplicating" in warning
    # Reports for partition 0 are ignored; the others go on.
    plan = r.dups.plan_sync(
        NODE0, [Confirm(app.app_id, p, info.dupid, 200) for p in (0, 2)], NOW_MS
    )
    assert plan.ops == [Create(r.dups.progress_path(app.app_id, info.dupid, 2), b"200")]
    r.tree.run(plan)
    # A removal still deletes every node below the dup, the foreign ones included.
    r.tree.run(r.dups.plan_modify("test_app", info.dupid, int(REMOVED), None))
    assert r.tree.children(r.dups.dir_path(app.app_id)) == []


def test_recovery_ignores_dropped_tables() -> None:
    w, app, info = corrupted_world()
    w.tree.run(w.state.plan_drop_app("test_app", False, 3600, NOW_MS))
    r = w.restarted()
    assert r.dups.by_app == {} and r.warnings == []


# -- list and query (behaviours 34, 35) -------------------------------------------------------


def test_list_matches_table_names() -> None:
    w = World(
        clusters={f"c{i}": ["127.0.0.1:1"] for i in range(3)},
        dup_group={f"c{i}": i + 2 for i in range(3)},
    )
    for name, parts, ndups in (
        ("test_app", 8, 2),
        ("test_list_dup", 4, 1),
        ("list_apps_test", 8, 0),
        ("test_dup_list", 8, 3),
    ):
        w.create_app(name, partitions=parts)
        for i in range(ndups):
            w.add(name, remote=f"c{i}")

    def names(pattern: str, kind: MatchType) -> set[str]:
        return {app.app_name for app, _ in w.dups.list_matching(pattern, int(kind))}

    assert names("", MatchType.PMT_MATCH_ALL) == {
        "test_app",
        "test_list_dup",
        "list_apps_test",
        "test_dup_list",
    }
    assert names("list_apps_test", MatchType.PMT_MATCH_EXACT) == {"list_apps_test"}
    assert names("app", MatchType.PMT_MATCH_ANYWHERE) == {"test_app", "list_apps_test"}
    assert names("test", MatchType.PMT_MATCH_PREFIX) == {
        "test_app",
        "test_list_dup",
        "test_dup_list",
    }
    assert names("test", MatchType.PMT_MATCH_POSTFIX) == {"list_apps_test"}
    for app, dups in w.dups.list_matching("", int(MatchType.PMT_MATCH_ALL)):
        assert all(len(d.progress) == app.partition_count for d in dups)
        assert (
            len(dups)
            == {"test_app": 2, "test_list_dup": 1, "list_apps_test": 0, "test_dup_list": 3}[
                app.app_name
            ]
        )
    for kind in (MatchType.PMT_MATCH_REGEX, MatchType.PMT_INVALID, 42):
        e = refused(w.dups.list_matching, "x", int(kind))
        assert e.code == "ERR_NOT_IMPLEMENTED" and "unsupported pattern_match_type" in e.hint


def test_match_types_mirror_the_thrift_enum() -> None:
    for kind in MatchType:
        assert getattr(dup_idl.pattern_match_type, kind.name) == kind.value


# -- HTTP (behaviour 37) ----------------------------------------------------------------------


def test_http_view_has_pegasus_fields_plus_decree_gap() -> None:
    w = World()
    app = w.create_app("test_app", partitions=2)
    _, info = w.add("test_app", remote_app_name="remote_test_app", remote_replica_count=3)
    w.sync([Confirm(app.app_id, 0, info.dupid, 90, False, 100)])
    body = http_view(app, w.dups.dups_of(app.app_id), lambda ms: f"t{ms}")
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    assert text == (
        '{"1":{"create_ts":"t1700000000123","dupid":1700000000,"fail_mode":"FAIL_SLOW",'
        '"partition_states":{"0":{"confirmed_decree":90,"decree_gap":10,"last_committed_decree":100},'
        '"1":{"confirmed_decree":-1,"decree_gap":-1,"last_committed_decree":-1}},'
        '"remote":"slave-cluster","remote_app_name":"remote_test_app","remote_replica_count":3,'
        '"status":"DS_LOG"},"appid":' + str(app.app_id) + "}"
    )
    assert http_view(app, [], str) == {"appid": app.app_id}


def test_settings_from_config() -> None:
    cfg = Config.parse(
        "[replication]\ncluster_name = master-cluster\ndup_progress_min_update_period_ms = 250\n"
        "[pegasus.clusters]\nslave-cluster = 127.0.0.1:1,127.0.0.1:2\n"
        "[duplication-group]\nmaster-cluster = 1\nslave-cluster = 2\n"
    )
    s = DupSettings.from_config(cfg)
    assert (s.cluster_name, s.progress_min_update_period_ms, s.progress_min_report_period_ms) == (
        "master-cluster",
        250,
        300_000,
    )
    assert s.clusters == {"slave-cluster": ["127.0.0.1:1", "127.0.0.1:2"]}
    assert s.dup_group == {"master-cluster": 1, "slave-cluster": 2}
    assert INVALID_DECREE == -1
