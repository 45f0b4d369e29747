"""The shell's duplication commands: admin-cli's `dup list|add|pause|start|remove` on the
table chosen with `use`, and Pegasus shell's `add_dup`, `query_dup`, `pause_dup`,
`start_dup`, `remove_dup` and `set_dup_fail_mode`, which name the table themselves.

Both spellings send the same meta RPCs (reference pegasus-duplication.md §9.1-9.2) and print
what their tool prints; the status changes print Pegasus shell's messages in both. Only
incremental duplication exists in dupkv, so `-p` / `-s` (full duplication) are refused here,
before anything is sent.

`dup list -d` adds, per partition, what the source table's primaries report on
`/replica/duplication?appid=ID` (shipped and confirmed decrees, backlog, lag); a replica
server that does not answer is named in place of its figures.
"""

import argparse
import json
from typing import Any

from dupkv.base.errors import DupkvError, ErrorCode
from dupkv.cli.cmdspec import UsageError
from dupkv.cli.session import Session, http_json
from dupkv.cli.textfmt import TablePrinter, format_ms, render
from dupkv.client.client import TABLE_NAME_RE
from dupkv.duplication.status import DupStatus, FailMode
from dupkv.rpc.idl_meta import dup

ADD = "RPC_CM_ADD_DUPLICATION"
QUERY = "RPC_CM_QUERY_DUPLICATION"
MODIFY = "RPC_CM_MODIFY_DUPLICATION"
FULL_DUPLICATION_UNSUPPORTED = (
    "full duplication ({flag}) is not supported yet: dupkv duplicates the writes made from "
    "now on; add the duplication without {flag} (nothing was sent)"
)
OPERATIONS = {
    DupStatus.DS_LOG: "starting duplication",
    DupStatus.DS_PAUSE: "pausing duplication",
    DupStatus.DS_REMOVED: "removing duplication",
}
# replica figure -> the entry field it repeats
REPEATED_FIELDS = {
    "status": "status",
    "fail_mode": "fail_mode",
    "remote_cluster": "remote",
    "remote_app_name": "remote_app_name",
}
FAIL_MODES = {"slow": FailMode.FAIL_SLOW, "skip": FailMode.FAIL_SKIP}


def _name(enum: Any, value: int | None, default: int = 0) -> str:
    try:
        return str(enum(default if value is None else value).name)
    except ValueError:
        return str(value)


def _adding_to_itself(s: Session, remote: str) -> bool:
    if remote != s.current_cluster_name():
        return False
    s.say(f"illegal operation: adding duplication to itself [remote: {remote}]")
    return True


def _add(s: Session, app: str, remote: str, **optional: Any) -> Any:
    req = dup.duplication_add_request(
        app_name=app, remote_cluster_name=remote, is_duplicating_checkpoint=False, **optional
    )
    return s.client.meta_call(ADD, req)


# -- admin-cli: dup add|list|pause|start|remove on the current table -----------------------


def do_dup_add(s: Session, a: argparse.Namespace) -> bool:
    if a.checkpoint:
        s.say("ERROR: " + FULL_DUPLICATION_UNSUPPORTED.format(flag="-p"))
        return False
    assert s.app_name is not None
    if _adding_to_itself(s, a.cluster):
        return False
    resp = _add(s, s.app_name, a.cluster)
    if resp.err == ErrorCode.OK:
        s.say(f"successfully add duplication [dupid: {resp.dupid}]")
        return True
    s.say(f"AddDuplication failed: {resp.err}" + (f" [hint: {resp.hint}]" if resp.hint else ""))
    return False


def _query(s: Session, app: str) -> Any:
    resp = s.client.meta_call(QUERY, dup.duplication_query_request(app_name=app))
    if resp.err != ErrorCode.OK:
        s.say(f"querying duplications of app [{app}] failed, error={resp.err}")
        return None
    return resp


def entry_json(e: Any, detail: bool) -> dict[str, Any]:
    """One duplication as admin-cli prints it (Go field order, names for the enums)."""
    out: dict[str, Any] = {
        "dupid": e.dupid,
        "status": _name(DupStatus, e.status),
        "remote": e.remote,
        "create_ts": e.create_ts,
    }
    if detail and e.progress:
        out["progress"] = {str(p): d for p, d in sorted(e.progress.items())}
    out["fail_mode"] = _name(FailMode, e.fail_mode)
    if e.remote_app_name is not None:
        out["remote_app_name"] = e.remote_app_name
    if e.remote_replica_count is not None:
        out["remote_replica_count"] = e.remote_replica_count
    if detail and e.partition_states:
        out["partition_states"] = {
            str(p): {
                "confirmed_decree": st.confirmed_decree,
                "last_committed_decree": st.last_committed_decree,
            }
            for p, st in sorted(e.partition_states.items())
        }
    return out


def _replica_states(s: Session, app: str, app_id: int) -> dict[int, dict[str, dict[str, Any]]]:
    """dupid -> pidx -> the primary's /replica/duplication figures (or an `error`)."""
    route = s.client.open_table(app).table.route
    by_server: dict[str, Any] = {}
    for address in sorted({p for p in route.primaries if p}):
        try:
            by_server[address] = http_json(address, f"/replica/duplication?appid={app_id}")
        except DupkvError as e:
            by_server[address] = e
    out: dict[int, dict[str, dict[str, Any]]] = {}
    for pidx, server in enumerate(route.primaries):
        doc = by_server.get(server) if server else None
        if server is None or isinstance(doc, DupkvError) or doc is None:
            why = "no primary" if server is None else str(getattr(doc, "hint", doc))
            out.setdefault(-1, {})[str(pidx)] = {"server": server or "-", "error": why}
            continue
        for dupid, fields in _per_partition(doc, pidx).items():
            out.setdefault(dupid, {})[str(pidx)] = {"server": server, **fields}
    return out


def _add_replica_states(
    entries: list[dict[str, Any]], states: dict[int, dict[str, dict[str, Any]]]
) -> None:
    """Put each partition's replica figures under its entry's `replicas`, leaving out the
    fields that only repeat the entry (status, fail mode, remote) unless they differ."""
    for entry in entries:
        replicas: dict[str, dict[str, Any]] = {}
        merged = {**states.get(entry["dupid"], {}), **states.get(-1, {})}
        for pidx, fields in sorted(merged.items(), key=lambda kv: int(kv[0])):
            replicas[pidx] = {
                k: v
                for k, v in fields.items()
                if REPEATED_FIELDS.get(k) is None or entry.get(REPEATED_FIELDS[k]) != v
            }
        entry["replicas"] = replicas


def _per_partition(doc: Any, pidx: int) -> dict[int, dict[str, Any]]:
    """dupid -> fields of one partition, from either shape of /replica/duplication: dupkv's
    `{pidx: {dupid: {...}}}` or Pegasus's `{dupid: {"app.pidx": {...}}}`."""
    out: dict[int, dict[str, Any]] = {}
    if not isinstance(doc, dict):
        return out
    for outer, inner in doc.items():
        if not isinstance(inner, dict):
            continue
        for key, fields in inner.items():
            if "." in key:  # Pegasus: outer is the dupid, key "app_id.pidx"
                if key.rpartition(".")[2] == str(pidx) and str(outer).isdigit():
                    out[int(outer)] = fields
            elif outer == str(pidx) and key.isdigit():
                out[int(key)] = fields
    return out


def do_dup_list(s: Session, a: argparse.Namespace) -> bool:
    assert s.app_name is not None
    resp = _query(s, s.app_name)
    if resp is None:
        return False
    entries = [entry_json(e, a.detailed) for e in resp.entry_list or []]
    if a.detailed and entries:
        _add_replica_states(entries, _replica_states(s, s.app_name, resp.appid))
    s.say(json.dumps(entries, indent=2))
    return True


def _modify(
    s: Session,
    app: str,
    dupid: int,
    status: DupStatus | None = None,
    fail_mode: FailMode | None = None,
) -> str:
    req = dup.duplication_modify_request(
        app_name=app,
        dupid=dupid,
        status=None if status is None else int(status),
        fail_mode=None if fail_mode is None else int(fail_mode),
    )
    return str(s.client.meta_call(MODIFY, req).err)


def _why(err: str, status: DupStatus | None = None) -> str:
    if err == ErrorCode.OBJECT_NOT_FOUND:
        return " [duplication not found]"
    if err == ErrorCode.INVALID_PARAMETERS and status is not None:
        return f" [the duplication cannot go to {status.name} from its status; see `dup list`]"
    if err == ErrorCode.APP_NOT_EXIST:
        return " [table not found]"
    return ""


def change_status(s: Session, app: str, dupid: int, status: DupStatus) -> bool:
    operation = OPERATIONS[status]
    err = _modify(s, app, dupid, status=status)
    if err == ErrorCode.OK:
        s.say(f"{operation}({dupid}) for app {app} succeed")
        return True
    s.say(f"{operation}({dupid}) for app {app} failed, error={err}{_why(err, status)}")
    return False


def do_dup_pause(s: Session, a: argparse.Namespace) -> bool:
    assert s.app_name is not None
    return change_status(s, s.app_name, a.dupid, DupStatus.DS_PAUSE)


def do_dup_start(s: Session, a: argparse.Namespace) -> bool:
    assert s.app_name is not None
    return change_status(s, s.app_name, a.dupid, DupStatus.DS_LOG)


def do_dup_remove(s: Session, a: argparse.Namespace) -> bool:
    assert s.app_name is not None
    return change_status(s, s.app_name, a.dupid, DupStatus.DS_REMOVED)


# -- Pegasus shell spellings -----------------------------------------------------------------


def do_add_dup(s: Session, a: argparse.Namespace) -> bool:
    if a.sst:
        s.say("ERROR: " + FULL_DUPLICATION_UNSUPPORTED.format(flag="-s"))
        return False
    app, remote = a.app_name, a.remote_cluster_name
    remote_app = a.remote_app_name or app
    if not TABLE_NAME_RE.fullmatch(remote_app):
        raise UsageError(f"invalid remote_app_name: {remote_app!r}; accepted: 0-9 a-z A-Z . _ :")
    if _adding_to_itself(s, remote):
        return False
    replicas = a.remote_replica_count
    s.say(
        f"trying to add duplication [app_name: {app}, remote_cluster_name: {remote}, "
        f"is_duplicating_checkpoint: false, remote_app_name: {remote_app}, "
        f"remote_replica_count: {replicas}]"
    )
    resp = _add(s, app, remote, remote_app_name=remote_app, remote_replica_count=replicas)
    remote_app = resp.remote_app_name or remote_app
    if resp.remote_replica_count is not None:
        replicas = resp.remote_replica_count
    where = (
        f"app_name: {app}, remote_cluster_name: {remote}, appid: {resp.appid}, dupid: {resp.dupid}"
    )
    if resp.err == ErrorCode.OK:
        s.say(
            f"adding duplication succeed [{where}, is_duplicating_checkpoint: false, "
            f"remote_app_name: {remote_app}, remote_replica_count: {replicas}]"
        )
        return True
    if resp.err == ErrorCode.DUP_EXIST:
        s.say(
            f"duplication has been existing [{where}, remote_app_name: {remote_app}, "
            f"remote_replica_count: {replicas}]"
        )
        return False
    s.say(
        f"adding duplication failed [app_name: {app}, remote_cluster_name: {remote}, "
        f"is_duplicating_checkpoint: false, remote_app_name: {remote_app}, "
        f"remote_replica_count: {replicas}, error: {resp.err}]"
    )
    if resp.hint:
        s.say("detail:", f"  {resp.hint}")
    return False


def do_query_dup(s: Session, a: argparse.Namespace) -> bool:
    resp = _query(s, a.app_name)
    if resp is None:
        return False
    if a.detailed:
        entries = [entry_json(e, True) for e in resp.entry_list or []]
        if entries:
            _add_replica_states(entries, _replica_states(s, a.app_name, resp.appid))
        s.say(f"duplications of app [{a.app_name}] in detail:", json.dumps(entries, indent=2))
        return True
    s.say(f"duplications of app [{a.app_name}] are listed as below:")
    printer = TablePrinter().columns("dup_id", "status", "remote cluster", "create time")
    for e in resp.entry_list or []:
        printer.row(e.dupid, _name(DupStatus, e.status), e.remote, format_ms(e.create_ts or 0))
    s.out.write(render([printer]))
    return True


def do_pause_dup(s: Session, a: argparse.Namespace) -> bool:
    return change_status(s, a.app_name, a.dupid, DupStatus.DS_PAUSE)


def do_start_dup(s: Session, a: argparse.Namespace) -> bool:
    return change_status(s, a.app_name, a.dupid, DupStatus.DS_LOG)


def do_remove_dup(s: Session, a: argparse.Namespace) -> bool:
    return change_status(s, a.app_name, a.dupid, DupStatus.DS_REMOVED)


def do_set_dup_fail_mode(s: Session, a: argparse.Namespace) -> bool:
    app, dupid, mode = a.app_name, a.dupid, a.fail_mode
    err = _modify(s, app, dupid, fail_mode=FAIL_MODES[mode])
    what = f"set duplication({dupid}) fail_mode ({mode}) for app {app}"
    if err == ErrorCode.OK:
        s.say(f"{what} succeed")
        return True
    s.say(f"{what} failed, error={err}{_why(err)}")
    return False
