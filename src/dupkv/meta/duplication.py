"""Duplications on the meta server: records, their JSON, progress, and the planning of every
change (pure core).

What this module owns, per table: the duplications (`DuplicationInfo`) with their status,
fail mode and per-partition progress, and the rules of Pegasus's `meta_duplication_service`
(reference/pegasus-duplication.md §2, §4.8) with dupkv's decisions:

- Only incremental duplication exists: an add with `is_duplicating_checkpoint=true` (full
  duplication) is refused, and a new duplication goes straight from DS_INIT to DS_LOG.
- Re-adding an existing (table, remote cluster) pair answers ERR_DUP_EXIST and changes
  nothing (Pegasus may change the status in memory only, which a restart then undoes).
- A replica server's progress counts only for the partitions the meta believes it serves.
- A dupid is never reused in one table while this process runs, even after a removal, so a
  replica server cannot mistake a new duplication for the removed one.

Like `meta/state.py`, a change is planned first — validated and turned into the metadata-store
writes that make it durable (`Plan.ops`) — and applied to memory only after those writes
succeeded (`Plan.apply()`). No IO and no clock: the shell passes `now_ms`, reads the store for
`recover` and asks the remote cluster whether the remote table exists.

Store layout (Pegasus's): `<cluster_root>/apps/<app_id>/duplication/<dupid>` holds the JSON of
§2.6; its child `<pidx>` holds that partition's confirmed decree in decimal, created the first
time the partition's progress is stored.
"""

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from dupkv.base.config import Config
from dupkv.base.errors import ErrorCode
from dupkv.duplication.status import (
    DupStatus,
    FailMode,
    check_transition,
    is_valid_status,
    parse_fail_mode,
    parse_status,
)
from dupkv.meta.state import App, AppStatus, MetaError, MetaState, Plan
from dupkv.meta.store.api import Create, Delete, Op, Set

INVALID_DECREE = -1
MAX_DUPID = 2**31 - 1  # dupid is an i32 on the wire
ERR_NOT_IMPLEMENTED = "ERR_NOT_IMPLEMENTED"  # rDSN's code for an unsupported match type
FULL_DUPLICATION_HINT = "full duplication (-p) is not supported yet; add the duplication without -p"


class MatchType(IntEnum):
    """Pegasus's `pattern_match_type` (the list RPC's `match_type`)."""

    PMT_INVALID = 0
    PMT_MATCH_ALL = 1
    PMT_MATCH_EXACT = 2
    PMT_MATCH_ANYWHERE = 3
    PMT_MATCH_PREFIX = 4
    PMT_MATCH_POSTFIX = 5
    PMT_MATCH_REGEX = 6


_MATCHERS: dict[MatchType, Callable[[str, str], bool]] = {
    MatchType.PMT_MATCH_ALL: lambda name, pattern: True,
    MatchType.PMT_MATCH_EXACT: lambda name, pattern: name == pattern,
    MatchType.PMT_MATCH_ANYWHERE: lambda name, pattern: pattern in name,
    MatchType.PMT_MATCH_PREFIX: lambda name, pattern: name.startswith(pattern),
    MatchType.PMT_MATCH_POSTFIX: lambda name, pattern: name.endswith(pattern),
}


class DupDecodeError(ValueError):
    """A duplication node that cannot be read; the duplication counts as DS_REMOVED."""

    status = DupStatus.DS_REMOVED


@dataclass
class PartitionProgress:
    """One partition's progress as the meta server knows it."""

    stored_decree: int = INVALID_DECREE  # confirmed decree persisted in the store
    volatile_decree: int = INVALID_DECREE  # highest confirmed decree reported, maybe unstored
    last_committed_decree: int = INVALID_DECREE  # as last reported; memory only
    last_persist_ms: int | None = None  # when stored_decree was written; None: not this run
    checkpoint_prepared: bool = False  # full duplication only; memory only


@dataclass
class DuplicationInfo:
    dupid: int
    app_id: int
    app_name: str
    partition_count: int
    remote: str
    status: DupStatus
    fail_mode: FailMode
    create_timestamp_ms: int
    remote_app_name: str
    remote_replica_count: int
    # Initialised partitions only: one whose stored value cannot be read stays out, so it is
    # left out of sync replies and its replica stops duplicating (Pegasus's rule).
    progress: dict[int, PartitionProgress] = field(default_factory=dict)
    # Names of the child nodes known to exist under the dup node (progress nodes, and any
    # foreign node found at recovery), so a removal can delete the subtree leaf by leaf.
    stored_children: set[str] = field(default_factory=set)
    last_report_ms: int | None = None

    def init_progress(self, pidx: int, stored_decree: int) -> None:
        self.progress[pidx] = PartitionProgress(stored_decree, stored_decree)

    def stored_progress(self) -> dict[int, int]:
        """pidx -> stored confirmed decree, for every initialised partition (the sync reply)."""
        return {pidx: p.stored_decree for pidx, p in sorted(self.progress.items())}

    def to_json(self, status: DupStatus | None = None, fail_mode: FailMode | None = None) -> bytes:
        """The node's JSON (§2.6), optionally with the status / fail mode about to be stored."""
        return encode_dup_json(
            remote=self.remote,
            status=self.status if status is None else status,
            create_timestamp_ms=self.create_timestamp_ms,
            fail_mode=self.fail_mode if fail_mode is None else fail_mode,
            remote_app_name=self.remote_app_name,
            remote_replica_count=self.remote_replica_count,
        )


# -- JSON (§2.6) ------------------------------------------------------------------------------


def encode_dup_json(
    *,
    remote: str,
    status: DupStatus,
    create_timestamp_ms: int,
    fail_mode: FailMode,
    remote_app_name: str,
    remote_replica_count: int,
) -> bytes:
    obj = {
        "remote": remote,
        "status": status.name,
        "create_timestamp_ms": create_timestamp_ms,
        "fail_mode": fail_mode.name,
        "remote_app_name": remote_app_name,
        "remote_replica_count": remote_replica_count,
    }
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _field(d: dict[str, Any], name: str, kind: type, default: Any) -> Any:
    if name not in d:
        return default
    value = d[name]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise DupDecodeError(f"field {name!r} is {value!r}, not a {kind.__name__}")
    return value


def decode_dup_json(blob: bytes, dupid: int, app: App) -> DuplicationInfo:
    """Read a dup node: absent fields are tolerated (older nodes lack the last three); a
    present field that does not parse, an unknown status or fail-mode name, an empty or
    non-JSON value raise DupDecodeError. An empty `remote_app_name` becomes the table's name,
    a `remote_replica_count` of 0 the table's replica count."""
    try:
        d = json.loads(blob)
    except ValueError as e:  # also UnicodeDecodeError
        raise DupDecodeError(f"not JSON: {e}") from None
    if not isinstance(d, dict):
        raise DupDecodeError(f"not a JSON object: {blob[:64]!r}")
    try:
        status = parse_status(_field(d, "status", str, DupStatus.DS_INIT.name))
        fail_mode = parse_fail_mode(_field(d, "fail_mode", str, FailMode.FAIL_SLOW.name))
    except DupDecodeError:
        raise
    except ValueError as e:
        raise DupDecodeError(str(e)) from None
    replica_count = _field(d, "remote_replica_count", int, 0)
    if replica_count < 0:
        raise DupDecodeError(f"field 'remote_replica_count' is {replica_count}, below 0")
    return DuplicationInfo(
        dupid=dupid,
        app_id=app.app_id,
        app_name=app.app_name,
        partition_count=app.partition_count,
        remote=_field(d, "remote", str, ""),
        status=status,
        fail_mode=fail_mode,
        create_timestamp_ms=_field(d, "create_timestamp_ms", int, 0),
        remote_app_name=_field(d, "remote_app_name", str, "") or app.app_name,
        remote_replica_count=replica_count or app.max_replica_count,
    )


def parse_decree(blob: bytes | None) -> int | None:
    """A progress node's value (ASCII decimal), or None when it is not a decree."""
    if blob is None:
        return None
    text = blob.decode("ascii", "replace")
    if not text or not (text.isdigit() or (text[0] == "-" and text[1:].isdigit())):
        return None
    value = int(text)
    return value if value >= INVALID_DECREE else None


def _parse_dupid(name: str) -> int | None:
    if not name.isdigit() or str(int(name)) != name or int(name) > MAX_DUPID:
        return None
    return int(name)


# -- requests ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DupSettings:
    """What the duplication core needs from the config."""

    cluster_name: str  # this cluster's duplication name
    dup_group: Mapping[str, int]  # [duplication-group]
    clusters: Mapping[str, Sequence[str]]  # [pegasus.clusters]
    ignore_other_cluster_ids: bool = False
    progress_min_update_period_ms: int = 1000
    progress_min_report_period_ms: int = 300_000

    @classmethod
    def from_config(cls, config: Config) -> "DupSettings":
        return cls(
            cluster_name=config.dup_cluster_name,
            dup_group=dict(config.dup_group),
            clusters={name: list(addrs) for name, addrs in config.clusters.items()},
            ignore_other_cluster_ids=config.get("replication", "dup_ignore_other_cluster_ids"),
            progress_min_update_period_ms=config.get(
                "replication", "dup_progress_min_update_period_ms"
            ),
            progress_min_report_period_ms=config.get(
                "replication", "dup_progress_min_report_period_ms"
            ),
        )


@dataclass(frozen=True)
class AddRequest:
    app_name: str
    remote_cluster_name: str
    is_duplicating_checkpoint: bool = False
    remote_app_name: str | None = None  # None or "": the table's own name
    remote_replica_count: int | None = None  # None or 0: the table's replica count


@dataclass(frozen=True)
class AddCheck:
    """An add that passed validation: either the existing duplication of the pair (the answer
    is ERR_DUP_EXIST), or a new one whose remote table the shell must find first."""

    app: App
    remote_app_name: str
    remote_replica_count: int
    remote_metas: Sequence[str]
    existing: DuplicationInfo | None


@dataclass(frozen=True)
class AddResult:
    err: str  # ERR_OK or ERR_DUP_EXIST
    dup: DuplicationInfo


@dataclass(frozen=True)
class Confirm:
    """One `duplication_confirm_entry` of a replica server's sync, for partition `pidx`."""

    app_id: int
    pidx: int
    dupid: int
    confirmed_decree: int
    checkpoint_prepared: bool = False
    last_committed_decree: int | None = None


@dataclass
class StoredDup:
    """A dup node as read from the store at recovery: its data and its children's data."""

    name: str
    data: bytes | None
    children: dict[str, bytes | None] = field(default_factory=dict)


@dataclass
class StoredApp:
    """`<app>/duplication` as read from the store; `exists` False when the node is absent."""

    exists: bool
    dups: list[StoredDup] = field(default_factory=list)


# -- the core ---------------------------------------------------------------------------------


class Duplications:
    """Every table's duplications, next to the tables of `state` (which it reads, and whose
    `duplicating` flag it keeps up to date through `MetaState.plan_set_duplicating`)."""

    def __init__(self, state: MetaState, settings: DupSettings) -> None:
        self.state = state
        self.settings = settings
        self.by_app: dict[int, dict[int, DuplicationInfo]] = {}
        self._dirs: set[int] = set()  # apps whose <app>/duplication node exists
        self._retired: dict[int, set[int]] = {}  # dupids removed while this process ran

    # -- paths ----------------------------------------------------------------------------

    def dir_path(self, app_id: int) -> str:
        return f"{self.state.app_path(app_id)}/duplication"

    def dup_path(self, app_id: int, dupid: int | str) -> str:
        return f"{self.dir_path(app_id)}/{dupid}"

    def progress_path(self, app_id: int, dupid: int, pidx: int | str) -> str:
        return f"{self.dup_path(app_id, dupid)}/{pidx}"

    # -- queries --------------------------------------------------------------------------

    def dups_of(self, app_id: int) -> list[DuplicationInfo]:
        return [d for _, d in sorted(self.by_app.get(app_id, {}).items())]

    def _available_app(self, name: str) -> App:
        app = self.state.find_app(name)
        if app is None:
            raise MetaError(ErrorCode.APP_NOT_EXIST, f"app {name} was not found")
        if app.status != AppStatus.AVAILABLE:
            raise MetaError(ErrorCode.APP_NOT_EXIST, f"app {name}: status was not AS_AVAILABLE")
        return app

    def query(self, app_name: str) -> tuple[App, list[DuplicationInfo]]:
        app = self._available_app(app_name)
        return app, self.dups_of(app.app_id)

    def list_matching(
        self, pattern: str, match_type: int
    ) -> list[tuple[App, list[DuplicationInfo]]]:
        """The available tables whose name matches, with their duplications (possibly none)."""
        try:
            kind = MatchType(match_type)
        except ValueError:
            kind = MatchType.PMT_INVALID
        matcher = _MATCHERS.get(kind)
        if matcher is None:
            name = kind.name if kind != MatchType.PMT_INVALID else str(match_type)
            supported = ", ".join(m.name for m in _MATCHERS)
            raise MetaError(
                ERR_NOT_IMPLEMENTED,
                f"unsupported pattern_match_type: {name}; supported: {supported}",
            )
        apps = sorted(
            (a for a in self.state.apps.values() if a.status == AppStatus.AVAILABLE),
            key=lambda a: a.app_name,
        )
        return [(a, self.dups_of(a.app_id)) for a in apps if matcher(a.app_name, pattern)]

    # -- add ------------------------------------------------------------------------------

    def check_add(self, req: AddRequest) -> AddCheck:
        """Validate an add in Pegasus's order (§2.5); MetaError with its hint on failure."""
        s = self.settings
        remote = req.remote_cluster_name
        if remote == s.cluster_name:
            raise MetaError(
                ErrorCode.INVALID_PARAMETERS, "illegal operation: adding duplication to itself"
            )
        if not s.ignore_other_cluster_ids and remote not in s.dup_group:
            why = (
                "ERR_INVALID_PARAMETERS: the cluster name is empty"
                if not remote
                else f"ERR_OBJECT_NOT_FOUND: cluster {remote} is not in [duplication-group]"
            )
            raise MetaError(
                ErrorCode.INVALID_PARAMETERS,
                f"get_duplication_cluster_id({remote}) failed, error: {why}",
            )
        metas = s.clusters.get(remote)
        if not metas:
            raise MetaError(
                ErrorCode.INVALID_PARAMETERS,
                f"failed to find cluster[{remote}] address in config [pegasus.clusters]",
            )
        if req.remote_replica_count is not None and req.remote_replica_count < 0:
            raise MetaError(
                ErrorCode.INVALID_PARAMETERS,
                f"remote_replica_count({req.remote_replica_count}) must be >= 0 "
                "(0: the same as the source table)",
            )
        if req.is_duplicating_checkpoint:
            raise MetaError(ErrorCode.INVALID_PARAMETERS, FULL_DUPLICATION_HINT)
        app = self._available_app(req.app_name)
        remote_app_name = req.remote_app_name or app.app_name
        remote_replica_count = req.remote_replica_count or app.max_replica_count
        existing = next((d for d in self.dups_of(app.app_id) if d.remote == remote), None)
        if existing is None:
            for other in self.state.apps.values():
                if other.app_id == app.app_id or other.status != AppStatus.AVAILABLE:
                    continue
                for d in self.dups_of(other.app_id):
                    if d.remote == remote and d.remote_app_name == remote_app_name:
                        raise MetaError(
                            ErrorCode.INVALID_PARAMETERS,
                            f"another app({other.app_name}) is also duplicated to the same "
                            f"remote app({remote}.{remote_app_name}); use another "
                            "remote_app_name",
                        )
        return AddCheck(app, remote_app_name, remote_replica_count, list(metas), existing)

    def plan_add(self, req: AddRequest, now_ms: int) -> Plan:
        """Plan an add; the shell must have found the remote table first. `Plan.result` is an
        AddResult: ERR_DUP_EXIST with the existing duplication (nothing to write), or ERR_OK
        with the new one, stored as DS_LOG with every partition at INVALID_DECREE."""
        check = self.check_add(req)
        if check.existing is not None:
            return Plan([], lambda: None, AddResult(ErrorCode.DUP_EXIST, check.existing))
        app = check.app
        dupid = self._new_dupid(app.app_id, now_ms // 1000)
        info = DuplicationInfo(
            dupid=dupid,
            app_id=app.app_id,
            app_name=app.app_name,
            partition_count=app.partition_count,
            remote=req.remote_cluster_name,
            status=DupStatus.DS_INIT,
            fail_mode=FailMode.FAIL_SLOW,
            create_timestamp_ms=now_ms,
            remote_app_name=check.remote_app_name,
            remote_replica_count=check.remote_replica_count,
        )
        for pidx in range(app.partition_count):
            info.init_progress(pidx, INVALID_DECREE)
        start = DupStatus.DS_LOG
        assert check_transition(info.status, start) == ErrorCode.OK, "INIT -> LOG is legal"
        ops: list[Op] = []
        if app.app_id not in self._dirs:
            ops.append(Create(self.dir_path(app.app_id)))
        ops.append(Create(self.dup_path(app.app_id, dupid), info.to_json(status=start)))
        flag = self.state.plan_set_duplicating(app, True)
        if flag is not None:
            ops += flag.ops

        def apply() -> None:
            self._dirs.add(app.app_id)
            info.status = start
            self.by_app.setdefault(app.app_id, {})[dupid] = info
            if flag is not None:
                flag.apply()

        return Plan(ops, apply, AddResult(ErrorCode.OK, info))

    def _new_dupid(self, app_id: int, now_s: int) -> int:
        """Unix seconds, incremented while taken in this table (§2.7); ids removed while this
        process ran, and ids of nodes recovery could not restore, count as taken too."""
        taken = set(self.by_app.get(app_id, {})) | self._retired.get(app_id, set())
        dupid = now_s
        while dupid in taken:  # at most len(taken) steps
            dupid += 1
        assert 0 < dupid <= MAX_DUPID, f"dupid {dupid} does not fit an i32"
        return dupid

    # -- modify ---------------------------------------------------------------------------

    def plan_modify(
        self, app_name: str, dupid: int, status: int | None, fail_mode: int | None
    ) -> Plan:
        """Change a duplication's status and/or fail mode (§2.4); None keeps the current one.
        `Plan.result` is the app id. DS_REMOVED deletes the dup's subtree."""
        app = self._available_app(app_name)
        info = self.by_app.get(app.app_id, {}).get(dupid)
        if info is None:
            raise MetaError(
                ErrorCode.OBJECT_NOT_FOUND, f"duplication {dupid} of app {app_name} was not found"
            )
        try:
            to_status = info.status if status is None else DupStatus(status)
            to_mode = info.fail_mode if fail_mode is None else FailMode(fail_mode)
        except ValueError as e:
            raise MetaError(ErrorCode.INVALID_PARAMETERS, str(e)) from None
        err = check_transition(info.status, to_status)
        if err != ErrorCode.OK:
            raise MetaError(
                err,
                f"duplication {dupid} of app {app_name} cannot change from "
                f"{info.status.name} to {to_status.name}",
            )
        if to_status == info.status and to_mode == info.fail_mode:
            return Plan([], lambda: None, app.app_id)
        if to_status == DupStatus.DS_REMOVED:
            return self._plan_remove(app, info)
        ops: list[Op] = [Set(self.dup_path(app.app_id, dupid), info.to_json(to_status, to_mode))]

        def apply() -> None:
            info.status = to_status
            info.fail_mode = to_mode

        return Plan(ops, apply, app.app_id)

    def _plan_remove(self, app: App, info: DuplicationInfo) -> Plan:
        # Leaves first and the dup node last, so a removal cut short (the subtree may need
        # several commits) leaves the duplication in place for a retry.
        ops: list[Op] = [
            Delete(self.progress_path(app.app_id, info.dupid, child))
            for child in sorted(info.stored_children)
        ]
        ops.append(Delete(self.dup_path(app.app_id, info.dupid)))
        still = any(is_valid_status(d.status) for d in self.dups_of(app.app_id) if d is not info)
        flag = self.state.plan_set_duplicating(app, still)
        if flag is not None:
            ops += flag.ops

        def apply() -> None:
            info.status = DupStatus.DS_REMOVED
            info.stored_children.clear()
            del self.by_app[app.app_id][info.dupid]
            self._retired.setdefault(app.app_id, set()).add(info.dupid)
            if flag is not None:
                flag.apply()

        return Plan(ops, apply, app.app_id)

    # -- sync -----------------------------------------------------------------------------

    def plan_sync(self, address: str, confirms: Iterable[Confirm], now_ms: int) -> Plan:
        """Take a replica server's progress (§4.8, `alter_progress`): progress only grows; a
        partition's confirmed decree is stored at most once per
        `progress_min_update_period_ms`. Entries for tables without duplications, unknown or
        non-running dupids, and partitions the server does not serve are ignored. Build the
        reply with `sync_view` once the plan is applied."""
        if address not in self.state.nodes:
            raise MetaError(
                ErrorCode.OBJECT_NOT_FOUND, f"node {address} is not known to the meta server"
            )
        served = {(app.app_id, pidx) for app, pidx in self.state.partitions_on(address)}
        merged: dict[tuple[int, int, int], Confirm] = {}
        for c in confirms:
            if (c.app_id, c.pidx) not in served:
                continue
            key = (c.app_id, c.dupid, c.pidx)
            prev = merged.get(key)
            if prev is None or c.confirmed_decree > prev.confirmed_decree:
                merged[key] = c
        period = self.settings.progress_min_update_period_ms
        ops: list[Op] = []
        changes: list[tuple[DuplicationInfo, PartitionProgress, Confirm, int, bool]] = []
        for (app_id, dupid, pidx), c in sorted(merged.items()):
            info = self.by_app.get(app_id, {}).get(dupid)
            if info is None or not is_valid_status(info.status):
                continue
            p = info.progress.get(pidx)
            if p is None:  # not initialised: its stored value was unreadable
                continue
            volatile = max(p.volatile_decree, c.confirmed_decree)
            due = p.last_persist_ms is None or now_ms - p.last_persist_ms >= period
            persist = volatile != p.stored_decree and due
            if persist:
                path = self.progress_path(app_id, dupid, pidx)
                value = str(volatile).encode()
                exists = str(pidx) in info.stored_children
                ops.append(Set(path, value) if exists else Create(path, value))
            changes.append((info, p, c, volatile, persist))

        def apply() -> None:
            for info, p, c, volatile, persist in changes:
                if c.last_committed_decree is not None:
                    p.last_committed_decree = c.last_committed_decree
                p.checkpoint_prepared = c.checkpoint_prepared
                p.volatile_decree = volatile
                if persist:
                    p.stored_decree = volatile
                    p.last_persist_ms = now_ms
                    info.stored_children.add(str(c.pidx))

        return Plan(ops, apply)

    def sync_view(self, address: str) -> dict[int, list[DuplicationInfo]]:
        """The reply's dup_map: for every available table of which `address` serves at least
        one partition, its running duplications (the caller adds each one's
        `stored_progress()`, which covers all initialised partitions of the table)."""
        app_ids = sorted({app.app_id for app, _ in self.state.partitions_on(address)})
        view: dict[int, list[DuplicationInfo]] = {}
        for app_id in app_ids:
            running = [d for d in self.dups_of(app_id) if is_valid_status(d.status)]
            if running:
                view[app_id] = running
        return view

    def take_reports(self, dups: Iterable[DuplicationInfo], now_ms: int) -> list[str]:
        """Progress log lines of the duplications whose report is due (at most one per
        `progress_min_report_period_ms` each)."""
        lines = []
        period = self.settings.progress_min_report_period_ms
        for d in dups:
            if d.last_report_ms is not None and now_ms - d.last_report_ms < period:
                continue
            d.last_report_ms = now_ms
            lines.append(
                f"duplication report: app {d.app_name}({d.app_id}) dupid {d.dupid} "
                f"-> {d.remote}.{d.remote_app_name} {d.status.name} {d.fail_mode.name}, "
                f"confirmed decrees {d.stored_progress()}"
            )
        return lines

    # -- recovery -------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget every duplication (before `recover` reloads them from the store)."""
        self.by_app.clear()
        self._dirs.clear()

    def recover(self, stored: Mapping[int, StoredApp]) -> tuple[Plan | None, list[str]]:
        """Load the duplications read from the store (§2.11). Returns a plan that rewrites the
        `duplicating` flag of tables whose stored flag disagrees with what was restored, and
        warnings about every node that was dropped or partly ignored."""
        warnings: list[str] = []
        flag_plans: list[Plan] = []
        for app_id, app in sorted(self.state.apps.items()):
            if app.status != AppStatus.AVAILABLE:
                continue
            found = stored.get(app_id)
            if found is not None and found.exists:
                self._dirs.add(app_id)
                for sd in found.dups:
                    info = self._recover_dup(app, sd, warnings)
                    if info is not None:
                        self.by_app.setdefault(app_id, {})[info.dupid] = info
                    elif (taken := _parse_dupid(sd.name)) is not None:
                        # Its node is still there: a new duplication must not take its id.
                        self._retired.setdefault(app_id, set()).add(taken)
            running = any(is_valid_status(d.status) for d in self.dups_of(app_id))
            flag = self.state.plan_set_duplicating(app, running)
            if flag is not None:
                flag_plans.append(flag)
        if not flag_plans:
            return None, warnings
        ops = [op for plan in flag_plans for op in plan.ops]

        def apply() -> None:
            for plan in flag_plans:
                plan.apply()

        return Plan(ops, apply), warnings

    def _recover_dup(self, app: App, sd: StoredDup, warnings: list[str]) -> DuplicationInfo | None:
        where = self.dup_path(app.app_id, sd.name)
        dupid = _parse_dupid(sd.name)
        if dupid is None:
            warnings.append(f"{where}: ignored, the name is not a dupid (an i32)")
            return None
        if not sd.data:
            warnings.append(f"{where}: duplication dropped, the node is empty")
            return None
        try:
            info = decode_dup_json(sd.data, dupid, app)
        except DupDecodeError as e:
            warnings.append(f"{where}: duplication dropped, cannot decode it: {e}")
            return None
        if not is_valid_status(info.status):
            warnings.append(f"{where}: duplication not restored, its status is {info.status.name}")
            return None
        if info.remote not in self.settings.clusters:
            warnings.append(
                f"{where}: duplication dropped, remote cluster {info.remote!r} has no address "
                "in [pegasus.clusters]"
            )
            return None
        info.stored_children = set(sd.children)
        for pidx in range(app.partition_count):
            name = str(pidx)
            if name not in sd.children:
                info.init_progress(pidx, INVALID_DECREE)
                continue
            decree = parse_decree(sd.children[name])
            if decree is None:
                warnings.append(
                    f"{where}/{name}: {sd.children[name]!r} is not a decree; partition {pidx} "
                    "stops duplicating until the node is fixed"
                )
                continue
            info.init_progress(pidx, decree)
        return info


# -- HTTP view (§9.3) -------------------------------------------------------------------------


def decree_gap(p: PartitionProgress) -> int:
    """Decrees committed but not yet known to be shipped; -1 while either end is unknown."""
    shipped = max(p.stored_decree, p.volatile_decree)
    if p.last_committed_decree < 0 or shipped < 0:
        return -1
    return max(0, p.last_committed_decree - shipped)


def http_view(
    app: App, dups: Sequence[DuplicationInfo], format_ts: Callable[[int], str]
) -> dict[str, Any]:
    """`/meta/app/duplication?name=` body: {"appid": id, "1": dup, "2": dup, ...}; serialize
    with sorted keys. `format_ts` turns create_timestamp_ms into local time."""
    body: dict[str, Any] = {"appid": app.app_id}
    for i, d in enumerate(dups, 1):
        body[str(i)] = {
            "create_ts": format_ts(d.create_timestamp_ms),
            "dupid": d.dupid,
            "fail_mode": d.fail_mode.name,
            "partition_states": {
                str(pidx): {
                    "confirmed_decree": p.stored_decree,
                    "decree_gap": decree_gap(p),
                    "last_committed_decree": p.last_committed_decree,
                }
                for pidx, p in sorted(d.progress.items())
            },
            "remote": d.remote,
            "remote_app_name": d.remote_app_name,
            "remote_replica_count": d.remote_replica_count,
            "status": d.status.name,
        }
    return body
