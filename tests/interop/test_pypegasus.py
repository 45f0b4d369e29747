"""The real Apache Pegasus Python client, pypegasus3 0.0.1.1 unmodified, against a dupkv
cluster whose meta server listens on Pegasus's onebox address 127.0.0.1:34601 (or a free
port when that one is taken: the client takes the meta address as an argument).

pypegasus3 is built on Twisted, whose reactor cannot be restarted, so one subprocess runs
`CLIENT_SCRIPT` for the whole module: it calls set / get / exist / ttl / remove /
multi_set / multi_get / sort_key_count / multi_del / get_scanner /
get_unordered_scanners, and prints what each returned as JSON; the tests below check it.
Values cross both ways: the script reads keys our client wrote before it ran, and our
client reads back what the script wrote.

Not covered, because pypegasus3 has no such API: incr, check_and_set, check_and_mutate,
batch_get, table admin. Also avoided: its `get_scanner` with an empty stop sort key
(`generate_next_bytes` indexes `bytes` as `str` and raises TypeError, a client bug), and
non-UTF-8 keys in scans (its `restore_key` decodes keys as UTF-8).
"""

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from support.cluster import Cluster, free_port, running

from dupkv.client.blocking import BlockingClient

PEGASUS_ONEBOX_META_PORT = 34601
SCRIPT_TIMEOUT_S = 120.0
OK = 0  # what set / remove / multi_set / multi_del / sort_key_count return (rocksdb kOk)

OURS_BINARY = (b"ours\x00bin", b"sk\x00", b"\x00\xff\xfe binary from dupkv")
OURS_MULTI = (b"ours_multi", {b"m1": b"one", b"m2": b"two"})

CLIENT_SCRIPT = r'''
import json
import sys

from twisted.internet import defer, reactor

from pypegasus.base.ttypes import error_types
from pypegasus.pgclient import Pegasus
from pypegasus.utils.tools import ScanOptions


def h(b):
    return b.hex() if isinstance(b, bytes) else b


def name(code):
    # get / ttl / exist / multi_get convert the rocksdb status to an error_types value
    try:
        return error_types(code).name
    except ValueError:
        return str(code)


@defer.inlineCallbacks
def drain(scanner, rows):
    while True:
        item = yield scanner.get_next()
        if item is None:
            break
        (hk, sk), v = item
        rows.append([hk, sk, h(v)])
    scanner.close()


@defer.inlineCallbacks
def run(meta, table):
    out = {}
    c = Pegasus([meta], table)
    out["init"] = bool((yield c.init()))

    # set / get / exist / ttl / remove
    out["set"] = (yield c.set(b"py_hk", b"py_sk", b"py_value"))[0]
    rc, v = yield c.get(b"py_hk", b"py_sk")
    out["get"] = [name(rc), h(v)]
    out["exist"] = name((yield c.exist(b"py_hk", b"py_sk"))[0])
    out["exist_missing"] = name((yield c.exist(b"py_hk", b"no_such_sk"))[0])
    rc, ttl = yield c.ttl(b"py_hk", b"py_sk")
    out["ttl_forever"] = [name(rc), ttl]
    out["set_ttl"] = (yield c.set(b"py_hk", b"py_ttl", b"short-lived", 600))[0]
    rc, ttl = yield c.ttl(b"py_hk", b"py_ttl")
    out["ttl_600"] = [name(rc), ttl]
    out["set_binary"] = (yield c.set(b"py\x00bin", b"\x00sk", b"\x00\xff from pypegasus"))[0]
    out["remove_target_set"] = (yield c.set(b"py_hk", b"doomed", b"x"))[0]
    out["remove"] = (yield c.remove(b"py_hk", b"doomed"))[0]
    out["exist_removed"] = name((yield c.exist(b"py_hk", b"doomed"))[0])

    # what our client wrote before this script ran
    rc, v = yield c.get(b"ours\x00bin", b"sk\x00")
    out["get_ours"] = [name(rc), h(v)]
    rc, kvs = yield c.multi_get(b"ours_multi", None)
    out["multi_get_ours"] = [name(rc), {h(k): h(v) for k, v in (kvs or {}).items()}]

    # multi_set / multi_get / sort_key_count / multi_del (its API takes str sort keys)
    kvs = {"a": "1", "b": "2", "c": "3", "d": "4"}
    out["multi_set"] = (yield c.multi_set("py_multi", kvs))[0]
    rc, got = yield c.multi_get("py_multi", {"a", "c", "no_such"})
    out["multi_get_some"] = [name(rc), {h(k): h(v) for k, v in (got or {}).items()}]
    rc, got = yield c.multi_get("py_multi", None)
    out["multi_get_all"] = [name(rc), {h(k): h(v) for k, v in (got or {}).items()}]
    out["sort_key_count"] = list((yield c.sort_key_count("py_multi")))
    out["multi_del"] = list((yield c.multi_del("py_multi", {"a", "b"})))
    out["sort_key_count_after_del"] = list((yield c.sort_key_count("py_multi")))

    # get_scanner over one hash key, [s02, s07)
    rows = {"s%02d" % i: "v%d" % i for i in range(10)}
    out["multi_set_scan"] = (yield c.multi_set("py_scan", rows))[0]
    out["scan"] = []
    yield drain(c.get_scanner("py_scan", "s02", "s07", ScanOptions()), out["scan"])

    # get_unordered_scanners over the whole table (binary keys gone: see the docstring)
    out["remove_binary"] = (yield c.remove(b"py\x00bin", b"\x00sk"))[0]
    scanners = c.get_unordered_scanners(3, ScanOptions())
    out["unordered_scanner_count"] = len(scanners)
    out["unordered"] = []
    for scanner in scanners:
        yield drain(scanner, out["unordered"])

    # written for our client to read back after this script
    out["set_for_dupkv"] = (yield c.set(b"py\x00bin", b"\x00sk", b"\x00\xff from pypegasus"))[0]

    # Last, because a response pypegasus cannot parse wedges its connection to that
    # replica server for good (an exception in dataReceived leaves the frame in its buffer):
    # get of a key that does not exist.
    rc, v = yield c.get(b"py_hk", b"no_such_sk")
    out["get_missing"] = [name(rc), h(v)]
    c.close()
    return out


def finish(result):
    print("RESULT " + json.dumps(result))
    reactor.stop()


def fail(failure):
    print("FAILURE " + failure.getTraceback(), file=sys.stderr)
    reactor.stop()


d = defer.maybeDeferred(run, sys.argv[1], sys.argv[2])
d.addCallbacks(finish, fail)
reactor.run()
'''


def meta_port() -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", PEGASUS_ONEBOX_META_PORT))
        except OSError:
            return free_port()
    return PEGASUS_ONEBOX_META_PORT


class Run:
    def __init__(self, cluster: Cluster, result: dict[str, Any]) -> None:
        self.cluster = cluster
        self.r = result


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    root = tmp_path_factory.mktemp("pypegasus")
    cluster = Cluster("onebox", root / "cluster", replicas=3, meta_port=meta_port())
    with running(cluster), BlockingClient(cluster.meta_address) as ours:
        ours.create_table("temp", partition_count=8)
        table = ours.open_table("temp")
        table.set(*OURS_BINARY)
        table.multi_set(OURS_MULTI[0], OURS_MULTI[1])
        script = root / "pypegasus_client.py"
        script.write_text(CLIENT_SCRIPT)
        proc = subprocess.run(
            [sys.executable, str(script), cluster.meta_address, "temp"],
            capture_output=True,
            text=True,
            cwd=root,  # pypegasus writes pegasus.log into its working directory
            timeout=SCRIPT_TIMEOUT_S,
        )
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        log = root / "pegasus.log"
        assert proc.returncode == 0 and lines, (
            f"pypegasus script failed ({proc.returncode}):\n{proc.stderr[-4000:]}\n"
            f"pegasus.log:\n{log.read_text()[-4000:] if log.exists() else ''}"
        )
        yield Run(cluster, json.loads(lines[-1].removeprefix("RESULT ")))


@pytest.fixture(scope="module")
def ours(run: Run) -> Iterator[BlockingClient]:
    with BlockingClient(run.cluster.meta_address) as client:
        yield client


def hexmap(d: dict[bytes, bytes]) -> dict[str, str]:
    return {k.hex(): v.hex() for k, v in d.items()}


def test_init_finds_the_table_through_the_meta_server(run: Run) -> None:
    assert run.r["init"] is True


def test_set_get_exist_remove(run: Run) -> None:
    r = run.r
    assert r["set"] == OK
    assert r["get"] == ["ERR_OK", b"py_value".hex()]
    assert r["exist"] == "ERR_OK"
    assert r["exist_missing"] == "ERR_OBJECT_NOT_FOUND"
    assert r["remove_target_set"] == OK
    assert r["remove"] == OK
    assert r["exist_removed"] == "ERR_OBJECT_NOT_FOUND"
    assert r["set_binary"] == OK


def test_get_of_a_missing_key_is_not_found(run: Run) -> None:
    """pypegasus reads `value.data` of every get response, so the server must send the
    (empty) value field with NOT_FOUND as Pegasus does; ERR_TIMEOUT here means it did not
    and pypegasus's parser raised (see its pegasus.log)."""
    assert run.r["get_missing"] == ["ERR_OBJECT_NOT_FOUND", ""]


def test_ttl(run: Run) -> None:
    assert run.r["ttl_forever"] == ["ERR_OK", -1]
    assert run.r["set_ttl"] == OK
    status, seconds = run.r["ttl_600"]
    assert status == "ERR_OK" and 595 <= seconds <= 600


def test_multi_set_multi_get_sort_key_count_multi_del(run: Run) -> None:
    r = run.r
    assert r["multi_set"] == OK
    assert r["multi_get_some"] == ["ERR_OK", hexmap({b"a": b"1", b"c": b"3"})]
    all4 = hexmap({b"a": b"1", b"b": b"2", b"c": b"3", b"d": b"4"})
    assert r["multi_get_all"] == ["ERR_OK", all4]
    assert r["sort_key_count"] == [OK, 4]
    assert r["multi_del"] == [OK, 2]
    assert r["sort_key_count_after_del"] == [OK, 2]


def test_get_scanner_returns_the_range_in_order(run: Run) -> None:
    assert run.r["multi_set_scan"] == OK
    assert run.r["scan"] == [
        ["py_scan", f"s{i:02d}", f"v{i}".encode().hex()] for i in range(2, 7)
    ]


def test_unordered_scanners_see_exactly_what_our_client_sees(
    run: Run, ours: BlockingClient
) -> None:
    assert run.r["remove_binary"] == OK
    assert run.r["unordered_scanner_count"] == 3
    theirs = sorted(tuple(row) for row in run.r["unordered"])
    assert len(theirs) == len(set(theirs))  # no record twice
    table = ours.open_table("temp")
    mine = []
    for scanner in table.get_unordered_scanners(8):
        with scanner:
            mine += [(hk, sk, v) for hk, sk, v in scanner]
    # Our view, less the records written after the script's scan ended.
    mine = [r for r in mine if (r[0], r[1]) != (b"py\x00bin", b"\x00sk")]
    assert theirs == sorted((hk.decode(), sk.decode(), v.hex()) for hk, sk, v in mine)
    assert ("py_hk", "py_sk", b"py_value".hex()) in theirs
    assert ("ours_multi", "m1", b"one".hex()) in theirs


def test_pypegasus_reads_what_our_client_wrote(run: Run) -> None:
    assert run.r["get_ours"] == ["ERR_OK", OURS_BINARY[2].hex()]
    assert run.r["multi_get_ours"] == ["ERR_OK", hexmap(OURS_MULTI[1])]


def test_our_client_reads_what_pypegasus_wrote(run: Run, ours: BlockingClient) -> None:
    assert run.r["set_for_dupkv"] == OK
    table = ours.open_table("temp")
    assert table.get(b"py_hk", b"py_sk") == b"py_value"
    assert table.get(b"py\x00bin", b"\x00sk") == b"\x00\xff from pypegasus"
    assert table.get(b"py_hk", b"doomed") is None
    ttl = table.ttl(b"py_hk", b"py_ttl")
    assert ttl is not None and 0 < ttl <= 600
    assert table.multi_get(b"py_multi")[0] == [(b"c", b"3"), (b"d", b"4")]
    assert table.sortkey_count(b"py_scan") == 10
