"""The shell's cluster and table commands (ls, create, drop, use, app, nodes, cluster_info,
cc, escape_all): thin handlers over the blocking client's admin calls, printing Pegasus's
tables (`src/shell/commands/table_management.cpp`, `node_management.cpp`).

Partition health comes from query_cfg: a partition is fully healthy with a primary and
max_replica_count replicas, read- and write-unhealthy without a primary, write-unhealthy
with fewer replicas than two (or max_replica_count, when that is smaller).
"""

import argparse
import time
from dataclasses import dataclass
from typing import Any

from dupkv.base.errors import DupkvError, ErrorCode
from dupkv.cli.cmdspec import UsageError
from dupkv.cli.session import Session
from dupkv.cli.textfmt import TablePrinter, format_seconds, render
from dupkv.client.client import QUERY_CFG
from dupkv.rpc.idl_meta import meta
from dupkv.rpc.ids import unpack_address, unpack_gpid

CREATE_WAIT_S = 60.0
CREATE_POLL_S = 0.2
TABLE_GONE = (ErrorCode.OBJECT_NOT_FOUND, ErrorCode.APP_NOT_EXIST)


@dataclass(frozen=True)
class Partition:
    pidx: int
    ballot: int
    primary: str | None
    secondaries: tuple[str, ...]
    max_replica_count: int

    @property
    def replicas(self) -> int:
        return (1 if self.primary else 0) + len(self.secondaries)


def query_partitions(s: Session, name: str) -> tuple[int, list[Partition]]:
    """(app_id, partitions) of a table, from query_cfg; DupkvError if it does not exist."""
    req = meta.query_cfg_request(app_name=name, partition_indices=[])
    resp = s.client.meta_call(QUERY_CFG, req)
    if resp.err != ErrorCode.OK:
        raise DupkvError(resp.err, f"table {name!r}: query_cfg failed")
    parts = []
    for pc in resp.partitions or []:
        _, pidx = unpack_gpid(pc.pid or 0)
        parts.append(
            Partition(
                pidx=pidx,
                ballot=pc.ballot or 0,
                primary=_address(pc.primary),
                secondaries=tuple(a for a in (_address(x) for x in pc.secondaries or []) if a),
                max_replica_count=pc.max_replica_count or 0,
            )
        )
    return resp.app_id or 0, sorted(parts, key=lambda p: p.pidx)


def _address(packed: int | None) -> str | None:
    try:
        return unpack_address(packed or 0)
    except ValueError:
        return None


def health(parts: list[Partition]) -> dict[str, int]:
    fully = write_bad = read_bad = 0
    for p in parts:
        if p.primary is None:
            write_bad += 1
            read_bad += 1
            continue
        if p.replicas >= p.max_replica_count:
            fully += 1
        if p.replicas < min(2, max(1, p.max_replica_count)):
            write_bad += 1
    return {
        "fully_healthy": fully,
        "unhealthy": len(parts) - fully,
        "write_unhealthy": write_bad,
        "read_unhealthy": read_bad,
    }


# -- tables --------------------------------------------------------------------------------


def do_ls(s: Session, a: argparse.Namespace) -> bool:
    tables = s.client.list_tables(include_dropped=a.all)
    if not a.all:
        tables = [t for t in tables if t.status == "AVAILABLE"]
    general = TablePrinter("general_info").columns(
        "app_id",
        "status",
        "app_name",
        "app_type",
        "partition_count",
        "replica_count",
        "is_stateful",
        "create_time",
        "drop_time",
        "drop_expire",
        "envs_count",
        "atomic_idempotent",
    )
    for t in tables:
        general.row(
            t.app_id,
            t.status,
            t.name,
            "pegasus",
            t.partition_count,
            t.replica_count,
            True,
            format_seconds(t.create_second),
            format_seconds(t.drop_second),
            format_seconds(t.expire_second),
            len(t.envs),
            t.atomic_idempotent,
        )
    printers = [general]
    summary = TablePrinter("summary")
    summary.add("total_app_count", len(tables))
    if a.detailed:
        healthy = TablePrinter("healthy_info").columns(
            "app_id",
            "app_name",
            "partition_count",
            "fully_healthy",
            "unhealthy",
            "write_unhealthy",
            "read_unhealthy",
        )
        counts = {"fully_healthy": 0, "unhealthy": 0, "write_unhealthy": 0, "read_unhealthy": 0}
        for t in tables:
            if t.status != "AVAILABLE":
                continue
            _, parts = query_partitions(s, t.name)
            h = health(parts)
            healthy.row(t.app_id, t.name, t.partition_count, *h.values())
            counts["fully_healthy"] += h["unhealthy"] == 0
            for key in ("unhealthy", "write_unhealthy", "read_unhealthy"):
                counts[key] += h[key] > 0
        printers.append(healthy)
        for key, n in counts.items():
            summary.add(f"{key}_app_count", n)
    printers.append(summary)
    s.out.write(render(printers, a.json))
    return True


def parse_envs(text: str | None) -> dict[str, str]:
    envs: dict[str, str] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"bad env {item!r} in -e; accepted: key1=value1,key2=value2")
        envs[key.strip()] = value.strip()
    return envs


def do_create(s: Session, a: argparse.Namespace) -> bool:
    name = a.app_name
    envs = parse_envs(a.envs)
    try:
        s.client.create_table(
            name,
            a.partition_count,
            a.replica_count,
            envs,
            success_if_exist=not a.fail_if_exist,
            wait_ready_s=0,
        )
    except DupkvError as e:
        s.say(f'create app "{name}" failed, error = {e.code}')
        return False
    s.say(f"create app {name} succeed, waiting for app ready")
    if not _wait_ready(s, name):
        return False
    s.say(f'create app "{name}" succeed')
    return True


def _wait_ready(s: Session, name: str) -> bool:
    """Print Pegasus's progress lines until every partition has a primary."""
    deadline = time.monotonic() + CREATE_WAIT_S
    shown = None
    while True:
        try:
            _, parts = query_partitions(s, name)
        except DupkvError as e:
            if e.code != ErrorCode.BUSY_CREATING:
                raise
            parts = []
        ready = sum(1 for p in parts if p.primary is not None)
        total = len(parts)
        if total and ready == total:
            s.say(f"{name} is ready now!")
            return True
        if (ready, total) != shown:
            s.say(f"{name} not ready yet, still waiting... ({ready}/{total})")
            shown = (ready, total)
        if time.monotonic() >= deadline:
            s.say(
                f"ERROR: {name} is created but {total - ready} of its {total} partitions have "
                f"no primary after {CREATE_WAIT_S:.0f} s; check `nodes` and the replica servers"
            )
            return False
        time.sleep(CREATE_POLL_S)


def do_drop(s: Session, a: argparse.Namespace) -> bool:
    s.say(f"reserve_seconds = {a.reserve_seconds}")
    try:
        s.client.drop_table(a.app_name, reserve_seconds=a.reserve_seconds or None)
    except DupkvError as e:
        s.say(f"drop app {a.app_name} failed, error = {e.code}")
        return False
    s.forget_table(a.app_name)
    s.say(f"drop app {a.app_name} succeed")
    return True


def do_use(s: Session, a: argparse.Namespace) -> bool:
    try:
        s.use(a.app_name)
    except DupkvError as e:
        if e.code not in TABLE_GONE:
            raise
        s.say(f'ERROR: table "{a.app_name}" does not exist ({e.code}); `ls` lists the tables')
        return False
    s.say("OK")
    return True


def do_app(s: Session, a: argparse.Namespace) -> bool:
    try:
        app_id, parts = query_partitions(s, a.app_name)
    except DupkvError as e:
        if e.code not in TABLE_GONE:
            raise
        s.say(f'ERROR: table "{a.app_name}" does not exist ({e.code}); `ls` lists the tables')
        return False
    params = TablePrinter("parameters")
    params.add("app_name", a.app_name)
    params.add("detailed", a.detailed)
    general = TablePrinter("general")
    general.add("app_name", a.app_name)
    general.add("app_id", app_id)
    general.add("partition_count", len(parts))
    general.add("max_replica_count", parts[0].max_replica_count if parts else 0)
    printers = [params, general]
    if a.detailed:
        replicas = TablePrinter("replicas").columns(
            "pidx", "ballot", "replica_count", "primary", "secondaries"
        )
        per_node: dict[str, list[int]] = {}
        for p in parts:
            replicas.row(
                p.pidx,
                p.ballot,
                f"{p.replicas}/{p.max_replica_count}",
                p.primary or "-",
                "[" + ",".join(p.secondaries) + "]",
            )
            if p.primary:
                per_node.setdefault(p.primary, [0, 0])[0] += 1
            for node in p.secondaries:
                per_node.setdefault(node, [0, 0])[1] += 1
        nodes = TablePrinter("nodes").columns("node", "primary", "secondary", "total")
        for node, (prim, sec) in sorted(per_node.items()):
            nodes.row(node, prim, sec, prim + sec)
        prims = sum(v[0] for v in per_node.values())
        secs = sum(v[1] for v in per_node.values())
        nodes.row("total", prims, secs, prims + secs)
        healthy = TablePrinter("healthy")
        for key, n in health(parts).items():
            healthy.add(f"{key}_partition_count", n)
        printers += [replicas, nodes, healthy]
    s.out.write(render(printers, a.json))
    return True


def do_nodes(s: Session, a: argparse.Namespace) -> bool:
    nodes = s.client.list_nodes()
    counts: dict[str, list[int]] = {}
    if a.detailed:
        for t in s.client.list_tables():
            if t.status != "AVAILABLE":
                continue
            _, parts = query_partitions(s, t.name)
            for p in parts:
                if p.primary:
                    counts.setdefault(p.primary, [0, 0])[0] += 1
                for node in p.secondaries:
                    counts.setdefault(node, [0, 0])[1] += 1
    columns = ["address", "status"]
    if a.detailed:
        columns += ["replica_count", "primary_count", "secondary_count"]
    details = TablePrinter("details").columns(*columns)
    for n in sorted(nodes, key=lambda n: n.address):
        row: list[Any] = [n.address, n.status]
        if a.detailed:
            prim, sec = counts.get(n.address, [0, 0])
            row += [prim + sec, prim, sec]
        details.row(*row)
    alive = sum(1 for n in nodes if n.status == "ALIVE")
    summary = TablePrinter("summary")
    summary.add("total_node_count", len(nodes))
    summary.add("alive_node_count", alive)
    summary.add("unalive_node_count", len(nodes) - alive)
    s.out.write(render([details, summary], a.json))
    return True


def do_cluster_info(s: Session, a: argparse.Namespace) -> bool:
    info = TablePrinter("cluster_info")
    for key, value in s.client.cluster_info().items():
        info.add(key, value)
    s.out.write(render([info], a.json))
    return True


def do_cc(s: Session, a: argparse.Namespace) -> bool:
    try:
        s.switch_cluster(a.cluster_name)
    except ValueError as e:
        raise UsageError(str(e)) from None
    s.say(f"OK, current cluster: {a.cluster_name} (meta servers {','.join(s.meta_servers)})")
    return True


def do_escape_all(s: Session, a: argparse.Namespace) -> bool:
    if a.enabled is not None:
        s.escape_all = a.enabled
    s.say(f"escape_all = {'true' if s.escape_all else 'false'}")
    return True
