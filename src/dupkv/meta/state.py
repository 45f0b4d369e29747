"""The meta server's tables, partition placement and replica-server liveness (pure core).

No IO and no clock: callers pass `now_ms`. A change is planned first — validated, and
turned into the metadata-store writes that make it durable (`Plan.ops`) — and applied to
memory only after those writes succeeded (`Plan.apply()`), so memory never holds what the
store might not. Paths and JSON follow Pegasus's layout (see `meta/codec.py`).

Placement: each partition has one replica (replication inside a cluster is 1 for now), and
it stays on the replica server it was first placed on, because its data lives on that
server's disk. While that server is not alive the partition has no primary and clients get
an error they retry on; when the server comes back it serves the partition again.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from dupkv.base.errors import ErrorCode
from dupkv.meta import codec
from dupkv.meta.store.api import Create, Delete, Op, Set

APP_NAME_RE = re.compile(r"^[0-9a-zA-Z._:]+$")
MAX_PARTITION_COUNT = 65536


class AppStatus:
    AVAILABLE = 1
    CREATING = 2
    DROPPING = 4
    DROPPED = 6


@dataclass
class App:
    app_id: int
    app_name: str
    partition_count: int
    max_replica_count: int
    status: int
    envs: dict[str, str]
    create_second: int
    drop_second: int = 0
    expire_second: int = 0
    duplicating: bool = False
    atomic_idempotent: bool = False
    app_type: str = "pegasus"
    primaries: list[str] = field(default_factory=list)  # pidx -> "ip:port" (sticky)


@dataclass
class Node:
    address: str
    last_seen_ms: int


@dataclass
class Plan:
    """Store writes to make durable, then `apply()` to change memory; `result` for the caller."""

    ops: list[Op]
    apply: Callable[[], None]
    result: object = None


class MetaError(Exception):
    def __init__(self, code: str, hint: str = "") -> None:
        super().__init__(f"{code}: {hint}")
        self.code = code
        self.hint = hint


class MetaState:
    def __init__(self, root: str, lease_ms: int) -> None:
        self.root = root.rstrip("/") or ""
        self.lease_ms = lease_ms
        self.apps: dict[int, App] = {}
        self.nodes: dict[str, Node] = {}

    # -- paths -------------------------------------------------------------------------

    @property
    def apps_path(self) -> str:
        return f"{self.root}/apps"

    def app_path(self, app_id: int) -> str:
        return f"{self.apps_path}/{app_id}"

    # -- loading -----------------------------------------------------------------------

    def load_app(self, app_json: bytes, partition_jsons: dict[int, bytes]) -> None:
        """Restore one table from the store (meta start)."""
        app = codec.decode_app(app_json)
        primaries = [""] * app.partition_count
        for pidx, blob in partition_jsons.items():
            if 0 <= pidx < app.partition_count:
                primaries[pidx] = codec.decode_partition_primary(blob)
        app.primaries = primaries
        self.apps[app.app_id] = app

    # -- queries -----------------------------------------------------------------------

    def find_app(self, name: str) -> App | None:
        for app in self.apps.values():
            if app.app_name == name and app.status != AppStatus.DROPPED:
                return app
        return None

    def is_alive(self, address: str, now_ms: int) -> bool:
        node = self.nodes.get(address)
        return node is not None and now_ms - node.last_seen_ms <= self.lease_ms

    def alive_nodes(self, now_ms: int) -> list[str]:
        return sorted(a for a in self.nodes if self.is_alive(a, now_ms))

    def primary_of(self, app: App, pidx: int, now_ms: int) -> str:
        """The serving address of a partition, or "" while its server is not alive."""
        address = app.primaries[pidx]
        return address if address and self.is_alive(address, now_ms) else ""

    def partitions_on(self, address: str) -> list[tuple[App, int]]:
        return [
            (app, pidx)
            for app in self.apps.values()
            if app.status == AppStatus.AVAILABLE
            for pidx, primary in enumerate(app.primaries)
            if primary == address
        ]

    def gc_on(self, address: str, stored: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """Stored partitions the server must delete: their table was dropped."""
        out = []
        for app_id, pidx in stored:
            app = self.apps.get(app_id)
            if app is not None and app.status == AppStatus.DROPPED:
                out.append((app_id, pidx))
        return out

    def partition_load(self) -> dict[str, int]:
        load = {a: 0 for a in self.nodes}
        for app in self.apps.values():
            if app.status == AppStatus.DROPPED:
                continue
            for primary in app.primaries:
                if primary:
                    load[primary] = load.get(primary, 0) + 1
        return load

    # -- liveness ----------------------------------------------------------------------

    def heartbeat(self, address: str, now_ms: int) -> bool:
        """Record a replica server's heartbeat; True if it was not alive before."""
        was_alive = self.is_alive(address, now_ms)
        node = self.nodes.get(address)
        if node is None:
            self.nodes[address] = Node(address, now_ms)
        else:
            node.last_seen_ms = now_ms
        return not was_alive

    def place_orphans(self, now_ms: int) -> Plan | None:
        """Place partitions that have no server yet (a table created with no live servers)."""
        alive = self.alive_nodes(now_ms)
        if not alive:
            return None
        load = self.partition_load()
        changes: list[tuple[App, int, str]] = []
        for app in self.apps.values():
            if app.status != AppStatus.AVAILABLE:
                continue
            for pidx, primary in enumerate(app.primaries):
                if not primary:
                    target = min(alive, key=lambda a: (load.get(a, 0), a))
                    load[target] = load.get(target, 0) + 1
                    changes.append((app, pidx, target))
        if not changes:
            return None
        ops: list[Op] = [
            Set(f"{self.app_path(app.app_id)}/{pidx}", codec.encode_partition(app, pidx, target))
            for app, pidx, target in changes
        ]

        def apply() -> None:
            for app, pidx, target in changes:
                app.primaries[pidx] = target

        return Plan(ops, apply)

    # -- tables ------------------------------------------------------------------------

    def plan_create_app(
        self,
        name: str,
        partition_count: int,
        replica_count: int,
        envs: dict[str, str],
        success_if_exist: bool,
        now_ms: int,
    ) -> Plan:
        if not name or not APP_NAME_RE.match(name):
            raise MetaError(
                ErrorCode.INVALID_PARAMETERS,
                f"invalid table name {name!r}: use letters, digits, '.', '_' and ':'",
            )
        if partition_count <= 0 or partition_count & (partition_count - 1):
            raise MetaError(
                ErrorCode.INVALID_PARAMETERS,
                f"partition count {partition_count} must be a power of two",
            )
        if partition_count > MAX_PARTITION_COUNT:
            raise MetaError(
                ErrorCode.INVALID_PARAMETERS,
                f"partition count {partition_count} exceeds {MAX_PARTITION_COUNT}",
            )
        if replica_count not in (0, 1):
            raise MetaError(
                ErrorCode.INVALID_PARAMETERS,
                f"replica count {replica_count}: dupkv keeps one replica per partition",
            )
        existing = self.find_app(name)
        if existing is not None:
            if success_if_exist and existing.partition_count == partition_count:
                return Plan([], lambda: None, existing.app_id)
            raise MetaError(ErrorCode.APP_EXIST, f"table {name!r} already exists")
        alive = self.alive_nodes(now_ms)
        app_id = max(self.apps, default=1) + 1  # ids are never reused; Pegasus starts at 2
        load = self.partition_load()
        primaries = []
        for _ in range(partition_count):
            target = min(alive, key=lambda a: (load.get(a, 0), a)) if alive else ""
            if target:
                load[target] = load.get(target, 0) + 1
            primaries.append(target)
        app = App(
            app_id=app_id,
            app_name=name,
            partition_count=partition_count,
            max_replica_count=1,
            status=AppStatus.AVAILABLE,
            envs=dict(envs),
            create_second=now_ms // 1000,
            atomic_idempotent=envs.get("atomic_idempotent", "false") == "true",
            primaries=primaries,
        )
        ops: list[Op] = [Create(self.app_path(app_id), codec.encode_app(app))]
        ops += [
            Create(f"{self.app_path(app_id)}/{pidx}", codec.encode_partition(app, pidx, target))
            for pidx, target in enumerate(primaries)
        ]

        def apply() -> None:
            self.apps[app_id] = app

        return Plan(ops, apply, app_id)

    def plan_drop_app(
        self, name: str, success_if_not_exist: bool, reserve_seconds: int, now_ms: int
    ) -> Plan:
        app = self.find_app(name)
        if app is None:
            if success_if_not_exist:
                return Plan([], lambda: None)
            raise MetaError(ErrorCode.APP_NOT_EXIST, f"table {name!r} does not exist")
        now_s = now_ms // 1000

        def apply() -> None:
            app.status = AppStatus.DROPPED
            app.drop_second = now_s
            app.expire_second = now_s + reserve_seconds

        dropped = App(**{**app.__dict__})
        dropped.status = AppStatus.DROPPED
        dropped.drop_second = now_s
        dropped.expire_second = now_s + reserve_seconds
        return Plan([Set(self.app_path(app.app_id), codec.encode_app(dropped))], apply)

    def plan_set_duplicating(self, app: App, duplicating: bool) -> Plan | None:
        if app.duplicating == duplicating:
            return None
        updated = App(**{**app.__dict__})
        updated.duplicating = duplicating

        def apply() -> None:
            app.duplicating = duplicating

        return Plan([Set(self.app_path(app.app_id), codec.encode_app(updated))], apply)


def delete_op(path: str) -> Op:
    return Delete(path)
