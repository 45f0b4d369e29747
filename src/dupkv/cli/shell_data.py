"""The shell's data commands (set, get, multi_*, check_and_set, scans, count_data, ...): thin
handlers over the blocking client, printing what Pegasus's shell prints
(`src/shell/commands/data_operations.cpp`).

A handler takes the session and its parsed arguments (names as declared in the command table
of `dupkv.cli.shell`) and returns True on success. Keys and values arrive as typed words and
are turned into bytes by `textfmt.unescape`; they are printed with `textfmt.quoted`. Client
errors propagate to the shell, which prints them.

Unlike Pegasus's shell, the trailing `app_id / partition_index / server` lines of a write
have no `decree` line: the client does not return the write's decree.
"""

import argparse
from collections.abc import Callable, Iterable

from dupkv.base.crc64 import crc64, key_hash
from dupkv.base.errors import DupkvError
from dupkv.cli.cmdspec import UsageError
from dupkv.cli.session import Session, http_json
from dupkv.cli.textfmt import TablePrinter, quoted, render, unescape
from dupkv.client.blocking import BlockingScanner, BlockingTable
from dupkv.client.types import CheckType, FilterType, ScanOptions

FILTER_TYPES = ("anywhere", "prefix", "postfix")
VALUE_FILTER_TYPES = ("anywhere", "prefix", "postfix", "exact")
CHECK_TYPES = tuple(t.name.removeprefix("VALUE_").lower() for t in CheckType if t.value > 0)
OPERAND_FROM = CheckType.VALUE_MATCH_ANYWHERE  # check types from here on compare an operand
METRICS_PATH = "/metrics?types=replica&metrics=rdb_estimated_keys"
INFO_KEY_WIDTH = 16


def data(word: str | None, what: str) -> bytes:
    """A typed key or value as bytes; UsageError for a bad escape."""
    if word is None:
        return b""
    try:
        return unescape(word)
    except ValueError as e:
        raise UsageError(f"{what}: {e}") from None


def kv_lines(pairs: Iterable[tuple[str, object]]) -> list[str]:
    return [f"{k.ljust(INFO_KEY_WIDTH)}: {v}" for k, v in pairs]


def _info(s: Session, t: BlockingTable, h: int) -> None:
    """Pegasus's trailing lines: where the request went."""
    target = t.table.route.for_hash(h)
    s.say(
        "",
        *kv_lines(
            [
                ("app_id", target.app_id),
                ("partition_index", target.partition_index),
                ("server", target.address or "-"),
            ]
        ),
    )


def _q(s: Session, b: bytes) -> str:
    return quoted(b, s.escape_all)


# -- single key ----------------------------------------------------------------------------


def _on_key(
    s: Session, a: argparse.Namespace, act: Callable[[BlockingTable, bytes, bytes], str]
) -> bool:
    """A single-key command: run `act` on the record, print its line and where it went."""
    t = s.table()
    hk, sk = data(a.hash_key, "hash_key"), data(a.sort_key, "sort_key")
    s.say(act(t, hk, sk))
    _info(s, t, key_hash(hk, sk))
    return True


def do_set(s: Session, a: argparse.Namespace) -> bool:
    value = data(a.value, "value")

    def act(t: BlockingTable, hk: bytes, sk: bytes) -> str:
        t.set(hk, sk, value, a.ttl_seconds or 0)
        return "OK"

    return _on_key(s, a, act)


def do_get(s: Session, a: argparse.Namespace) -> bool:
    def act(t: BlockingTable, hk: bytes, sk: bytes) -> str:
        value = t.get(hk, sk)
        return "Not found" if value is None else _q(s, value)

    return _on_key(s, a, act)


def do_del(s: Session, a: argparse.Namespace) -> bool:
    def act(t: BlockingTable, hk: bytes, sk: bytes) -> str:
        t.delete(hk, sk)
        return "OK"

    return _on_key(s, a, act)


def do_exist(s: Session, a: argparse.Namespace) -> bool:
    return _on_key(s, a, lambda t, hk, sk: "True" if t.exist(hk, sk) else "False")


def do_ttl(s: Session, a: argparse.Namespace) -> bool:
    def act(t: BlockingTable, hk: bytes, sk: bytes) -> str:
        ttl = t.ttl(hk, sk)
        return "Not found" if ttl is None else "Infinite" if ttl < 0 else str(ttl)

    return _on_key(s, a, act)


def do_incr(s: Session, a: argparse.Namespace) -> bool:
    increment = 1 if a.increment is None else a.increment
    return _on_key(s, a, lambda t, hk, sk: str(t.incr(hk, sk, increment)))


def do_hash(s: Session, a: argparse.Namespace) -> bool:
    hk, sk = data(a.hash_key, "hash_key"), data(a.sort_key, "sort_key")
    h = key_hash(hk, sk)
    pairs: list[tuple[str, object]] = [("key_hash", h)]
    if s.app_name is not None:
        t = s.table()
        target = t.table.route.for_hash(h)
        pairs += [
            ("app_name", t.name),
            ("app_id", t.app_id),
            ("partition_count", t.partition_count),
            ("partition_index", target.partition_index),
            ("primary", target.address or "-"),
            ("secondaries", "[]"),
        ]
    s.say(*kv_lines(pairs))
    return True


# -- one hash key, several sort keys -------------------------------------------------------


def do_multi_set(s: Session, a: argparse.Namespace) -> bool:
    t = s.table()
    hk = data(a.hash_key, "hash_key")
    words = a.sort_key_value
    if len(words) % 2:
        raise UsageError(f"sort keys and values come in pairs; sort key {words[-1]!r} has no value")
    kvs: dict[bytes, bytes] = {}
    for i in range(0, len(words), 2):
        sk = data(words[i], "sort_key")
        if sk in kvs:
            raise UsageError(f"duplicate sort key {quoted(sk)}; each sort key may appear once")
        kvs[sk] = data(words[i + 1], "value")
    t.multi_set(hk, kvs)
    s.say("OK")
    _info(s, t, crc64(hk))
    return True


def do_multi_del(s: Session, a: argparse.Namespace) -> bool:
    t = s.table()
    hk = data(a.hash_key, "hash_key")
    sks = sorted({data(w, "sort_key") for w in a.sort_key})
    s.say(f"{t.multi_del(hk, sks)} key-value pairs deleted.")
    _info(s, t, crc64(hk))
    return True


def _print_kvs(s: Session, hk: bytes, kvs: list[tuple[bytes, bytes]], no_value: bool) -> None:
    for sk, v in kvs:
        line = f"{_q(s, hk)} : {_q(s, sk)}"
        s.say(line if no_value else f"{line} => {_q(s, v)}")


def _fetched(kvs: list[tuple[bytes, bytes]], complete: bool) -> str:
    return f"{len(kvs)} key-value pairs got, fetch {'completed' if complete else 'not completed'}."


def do_multi_get(s: Session, a: argparse.Namespace) -> bool:
    t = s.table()
    hk = data(a.hash_key, "hash_key")
    sks = sorted({data(w, "sort_key") for w in a.sort_key})
    kvs, complete = t.multi_get(hk, sks or None, max_kv_count=-1, max_kv_size=-1)
    _print_kvs(s, hk, kvs, False)
    s.say("", _fetched(kvs, complete))
    _info(s, t, crc64(hk))
    return True


def _filter_type(name: str | None) -> int:
    return FilterType.NO_FILTER if name is None else FilterType["MATCH_" + name.upper()]


def do_multi_get_range(s: Session, a: argparse.Namespace) -> bool:
    t = s.table()
    hk = data(a.hash_key, "hash_key")
    start, stop = data(a.start_sort_key, "start_sort_key"), data(a.stop_sort_key, "stop_sort_key")
    pattern = data(a.sort_key_filter_pattern, "sort_key_filter_pattern")
    lines = [
        f"hash_key: {quoted(hk)}",
        f"start_sort_key: {quoted(start)}",
        f"start_inclusive: {_bool(a.start_inclusive)}",
        f"stop_sort_key: {quoted(stop)}",
        f"stop_inclusive: {_bool(a.stop_inclusive)}",
        f"sort_key_filter_type: {a.sort_key_filter_type or 'no_filter'}",
    ]
    if a.sort_key_filter_type:
        lines.append(f"sort_key_filter_pattern: {quoted(pattern)}")
    lines += [
        f"max_count: {a.max_count}",
        f"no_value: {_bool(a.no_value)}",
        f"reverse: {_bool(a.reverse)}",
        "",
    ]
    s.say(*lines)
    kvs, complete = t.multi_get(
        hk,
        None,
        max_kv_count=a.max_count,
        max_kv_size=-1,
        start_sortkey=start,
        stop_sortkey=stop,
        start_inclusive=a.start_inclusive,
        stop_inclusive=a.stop_inclusive,
        sort_key_filter_type=_filter_type(a.sort_key_filter_type),
        sort_key_filter_pattern=pattern,
        no_value=a.no_value,
        reverse=a.reverse,
    )
    _print_kvs(s, hk, kvs, a.no_value)
    if kvs:
        s.say("")
    s.say(_fetched(kvs, complete))
    _info(s, t, crc64(hk))
    return True


def do_multi_get_sortkeys(s: Session, a: argparse.Namespace) -> bool:
    t = s.table()
    hk = data(a.hash_key, "hash_key")
    kvs, complete = t.multi_get(hk, None, max_kv_count=-1, max_kv_size=-1, no_value=True)
    s.say(*(_q(s, sk) for sk, _ in kvs))
    state = "completed" if complete else "not completed"
    s.say("", f"{len(kvs)} sort keys got, fetch {state}.")
    _info(s, t, crc64(hk))
    return True


def do_count(s: Session, a: argparse.Namespace) -> bool:
    t = s.table()
    hk = data(a.hash_key, "hash_key")
    n = t.sortkey_count(hk)
    ok = n >= 0
    s.say(str(n) if ok else "ERROR: it takes too long to count sortkey")
    _info(s, t, crc64(hk))
    return ok


def do_check_and_set(s: Session, a: argparse.Namespace) -> bool:
    t = s.table()
    hk = data(a.hash_key, "hash_key")
    for opt, name in (
        ("check_sort_key", "-c"),
        ("check_type", "-t"),
        ("set_sort_key", "-s"),
        ("set_value", "-v"),
    ):
        if getattr(a, opt) is None:
            raise UsageError(f"{opt} not provided; give it with {name}")
    check_type = CheckType["VALUE_" + a.check_type.upper()]
    if check_type >= OPERAND_FROM and a.check_operand is None:
        raise UsageError(f"check_operand not provided; check type {a.check_type} needs one (-o)")
    check_sk = data(a.check_sort_key, "check_sort_key")
    operand = data(a.check_operand, "check_operand")
    set_sk, value = data(a.set_sort_key, "set_sort_key"), data(a.set_value, "set_value")
    lines = [
        f"hash_key: {quoted(hk)}",
        f"check_sort_key: {quoted(check_sk)}",
        f"check_type: {a.check_type}",
    ]
    if check_type >= OPERAND_FROM:
        lines.append(f"check_operand: {quoted(operand)}")
    lines += [
        f"set_sort_key: {quoted(set_sk)}",
        f"set_value: {quoted(value)}",
        f"set_value_ttl_seconds: {a.set_value_ttl_seconds}",
        f"return_check_value: {_bool(a.return_check_value)}",
        "",
    ]
    s.say(*lines)
    result = t.check_and_set(
        hk,
        check_sk,
        check_type,
        operand,
        set_sk,
        value,
        ttl_seconds=a.set_value_ttl_seconds,
        return_check_value=a.return_check_value,
    )
    s.say("Set succeed." if result.set_succeed else "Set failed, because check not passed.")
    if result.check_value_returned:
        s.say("")
        if result.check_value_exist and result.check_value is not None:
            s.say(f"Check value: {_q(s, result.check_value)}")
        else:
            s.say("Check value not exist.")
    _info(s, t, crc64(hk))
    return True


# -- scans ---------------------------------------------------------------------------------


def _value_passes(kind: str | None, pattern: bytes, value: bytes) -> bool:
    if kind is None or not pattern:
        return True
    if kind == "exact":
        return value == pattern
    if kind == "prefix":
        return value.startswith(pattern)
    if kind == "postfix":
        return value.endswith(pattern)
    return pattern in value


def _scan_settings(a: argparse.Namespace) -> list[str]:
    return [
        f"max_count: {a.max_count}",
        f"timeout_ms: {a.timeout_ms}",
        f"detailed: {_bool(a.detailed)}",
        f"no_value: {_bool(a.no_value)}",
        "",
    ]


def _print_scan(
    s: Session, t: BlockingTable, scanners: list[BlockingScanner], a: argparse.Namespace
) -> None:
    """Print the records of the scanners in turn, up to max_count, then how many."""
    n = _scan_records(s, t, scanners, a)
    if n:
        s.say("")
    s.say(f"{n} key-value pairs got.")


def _scan_records(
    s: Session, t: BlockingTable, scanners: list[BlockingScanner], a: argparse.Namespace
) -> int:
    value_pattern = data(a.value_filter_pattern, "value_filter_pattern")
    n = 0
    try:
        for scanner in scanners:
            for hk, sk, value in scanner:
                if a.max_count > 0 and n >= a.max_count:
                    return n
                if not _value_passes(a.value_filter_type, value_pattern, value):
                    continue
                line = f"{_q(s, hk)} : {_q(s, sk)}"
                if not a.no_value:
                    line += f" => {_q(s, value)}"
                if a.detailed:
                    target = t.table.route.for_hash(key_hash(hk, sk))
                    line += (
                        f" {{app_id={target.app_id}, partition_index={target.partition_index}, "
                        f"server={target.address or '-'}}}"
                    )
                s.say(line)
                n += 1
    finally:
        for scanner in scanners:
            scanner.close()
    return n


def _scan_options(a: argparse.Namespace, *, hash_key_filter: bool) -> ScanOptions:
    if a.value_filter_type is not None and a.no_value:
        raise UsageError("-i (no_value) cannot be used with a value filter (-v)")
    return ScanOptions(
        timeout_ms=a.timeout_ms,
        batch_size=100,
        start_inclusive=getattr(a, "start_inclusive", True),
        stop_inclusive=getattr(a, "stop_inclusive", False),
        hash_key_filter_type=_filter_type(a.hash_key_filter_type) if hash_key_filter else 0,
        hash_key_filter_pattern=(
            data(a.hash_key_filter_pattern, "hash_key_filter_pattern") if hash_key_filter else b""
        ),
        sort_key_filter_type=_filter_type(a.sort_key_filter_type),
        sort_key_filter_pattern=data(a.sort_key_filter_pattern, "sort_key_filter_pattern"),
        no_value=a.no_value,
    )


def _filter_lines(a: argparse.Namespace, names: Iterable[str]) -> list[str]:
    lines = []
    for name in names:
        kind = getattr(a, f"{name}_filter_type")
        lines.append(f"{name}_filter_type: {kind or 'no_filter'}")
        if kind:
            pattern = data(getattr(a, f"{name}_filter_pattern"), f"{name}_filter_pattern")
            lines.append(f"{name}_filter_pattern: {quoted(pattern)}")
    return lines


def do_hash_scan(s: Session, a: argparse.Namespace) -> bool:
    t = s.table()
    hk = data(a.hash_key, "hash_key")
    start, stop = data(a.start_sort_key, "start_sort_key"), data(a.stop_sort_key, "stop_sort_key")
    options = _scan_options(a, hash_key_filter=False)
    s.say(
        f"hash_key: {quoted(hk)}",
        f"start_sort_key: {quoted(start)}",
        f"start_inclusive: {_bool(a.start_inclusive)}",
        f"stop_sort_key: {quoted(stop)}",
        f"stop_inclusive: {_bool(a.stop_inclusive)}",
        *_filter_lines(a, ("sort_key", "value")),
        *_scan_settings(a),
    )
    _print_scan(s, t, [t.get_scanner(hk, start, stop, options)], a)
    return True


def do_full_scan(s: Session, a: argparse.Namespace) -> bool:
    t = s.table()
    options = _scan_options(a, hash_key_filter=True)
    s.say(
        *_filter_lines(a, ("hash_key", "sort_key", "value")),
        *_scan_settings(a),
    )
    _print_scan(s, t, t.get_unordered_scanners(t.partition_count, options), a)
    return True


def do_count_data(s: Session, a: argparse.Namespace) -> bool:
    t = s.table()
    if a.precise:
        scanners = max(1, t.partition_count)
        n = t.count(
            max_scanners=scanners, options=ScanOptions(timeout_ms=a.timeout_ms, batch_size=1000)
        )
        s.say(f"Count done, total {n} rows.")
        return True
    estimates, problems = _estimates(s, t)
    printer = TablePrinter("count_data").columns("pidx", "estimate_count")
    total = 0
    for pidx in range(t.partition_count):
        value = estimates.get(pidx)
        printer.row(pidx, "-" if value is None else value)
        total += value or 0
    printer.row(f"(total:{t.partition_count})", total)
    s.out.write(render([printer], a.json))
    for problem in problems:
        s.say(f"WARNING: {problem}")
    missing = [p for p in range(t.partition_count) if p not in estimates]
    if missing:
        s.say(f"ERROR: no estimate for partitions {missing}: their replica servers did not answer")
    return not missing


def _estimates(s: Session, t: BlockingTable) -> tuple[dict[int, int], list[str]]:
    """partition -> rdb_estimated_keys from the replica servers' /metrics (the primary's
    figure when it answered), and what went wrong on the way."""
    route = t.table.route
    servers = [n.address for n in s.client.list_nodes() if n.status == "ALIVE"]
    by_server: dict[str, dict[int, int]] = {}
    problems = []
    for server in servers:
        try:
            doc = http_json(server, METRICS_PATH)
        except DupkvError as e:
            problems.append(f"{server}: {e.hint}")
            continue
        found: dict[int, int] = {}
        for entity in doc.get("entities", []):
            attrs = entity.get("attributes", {})
            if entity.get("type") != "replica" or attrs.get("table_id") != str(t.app_id):
                continue
            for metric in entity.get("metrics", []):
                if metric.get("name") == "rdb_estimated_keys":
                    found[int(attrs.get("partition_id", -1))] = int(metric.get("value", 0))
        by_server[server] = found
    out: dict[int, int] = {}
    for pidx in range(t.partition_count):
        primary = route.primaries[pidx]
        if primary in by_server and pidx in by_server[primary]:
            out[pidx] = by_server[primary][pidx]
            continue
        for found in by_server.values():
            if pidx in found:
                out[pidx] = max(out.get(pidx, 0), found[pidx])
    return out, problems


def _bool(v: bool) -> str:
    return "true" if v else "false"
