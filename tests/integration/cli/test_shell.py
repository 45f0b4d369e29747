"""`dupkv shell` against real clusters: every command as a user runs it (`-e` or stdin), its
output, and the exit status.

Two clusters on 127.0.0.1 that list each other in [pegasus.clusters] and
[duplication-group]: `alpha` (two replica servers; the table and data commands run there)
and `beta` (one replica server; the duplications' remote).
"""

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.cluster import Cluster, free_port

from dupkv.cli.shell import COMMANDS

SHELL_TIMEOUT_S = 60
INFO_LINE = re.compile(r"^(app_id|partition_index|server) +: ")


@dataclass
class Run:
    rc: int
    out: str

    @property
    def lines(self) -> list[str]:
        """Output lines without Pegasus's trailing where-it-went lines and blank lines."""
        return [ln for ln in self.out.splitlines() if ln.strip() and not INFO_LINE.match(ln)]


@dataclass
class Env:
    alpha: Cluster
    beta: Cluster
    home: Path

    def shell(
        self, commands: str = "", *args: str, meta: str | None = None, stdin: str | None = None
    ) -> Run:
        argv = [sys.executable, "-m", "dupkv.cli.main", "shell"]
        argv += ["--meta", meta or self.alpha.meta_address] if "-n" not in args else []
        argv += list(args)
        if stdin is None:
            argv += ["-e", commands]
        env = {**os.environ, "HOME": str(self.home)}
        p = subprocess.run(
            argv,
            input=stdin or "",
            capture_output=True,
            text=True,
            env=env,
            timeout=SHELL_TIMEOUT_S,
            check=False,
        )
        return Run(p.returncode, p.stdout + p.stderr)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("shell")
    a_port, b_port = free_port(), free_port()
    alpha = Cluster(
        "alpha",
        root / "alpha",
        replicas=2,
        cluster_id=1,
        meta_port=a_port,
        peers={"beta": (f"127.0.0.1:{b_port}", 2)},
    )
    beta = Cluster(
        "beta",
        root / "beta",
        replicas=1,
        cluster_id=2,
        meta_port=b_port,
        peers={"alpha": (f"127.0.0.1:{a_port}", 1)},
    )
    errors: list[BaseException] = []

    def start(c: Cluster) -> None:
        try:
            c.start()
        except BaseException as e:  # reported below, in the test's thread
            errors.append(e)

    threads = [threading.Thread(target=start, args=(c,)) for c in (alpha, beta)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise RuntimeError(f"clusters did not start: {errors}\n{alpha.logs()}\n{beta.logs()}")
        home = root / "home"
        home.mkdir()
        yield Env(alpha, beta, home)
    finally:
        alpha.stop()
        beta.stop()


def ok(run: Run) -> Run:
    assert run.rc == 0, run.out
    return run


# -- without a cluster ---------------------------------------------------------------------


def test_help_lists_every_command_and_explains_each(tmp_path: Path) -> None:
    e = Env(None, None, tmp_path)  # type: ignore[arg-type]
    names = [c.name for c in COMMANDS]
    run = ok(e.shell("help; " + "; ".join(f"help {n}" for n in names), meta="127.0.0.1:1"))
    for c in COMMANDS:
        assert re.search(rf"^  {re.escape(c.name)} +{re.escape(c.help)}$", run.out, re.M), c.name
        assert f"USAGE: {c.usage()}" in run.out
    assert "USAGE: set <hash_key> <sort_key> <value> [<ttl_seconds>]" in run.out
    assert "check types: not_exist, not_exist_or_empty, exist," in run.out


def test_cluster_name_needs_a_config_listing_it(tmp_path: Path) -> None:
    e = Env(None, None, tmp_path)  # type: ignore[arg-type]
    run = e.shell("ls", "-n", "alpha")
    assert run.rc == 2
    assert "dupkv: -n alpha needs --config FILE with the cluster in [pegasus.clusters]" in run.out
    config = tmp_path / "shell.ini"
    config.write_text("[pegasus.clusters]\nbeta = 127.0.0.1:1\n")
    run = e.shell("ls", "-n", "alpha", "--config", str(config))
    assert run.rc == 2
    assert (
        "cluster 'alpha' is not in [pegasus.clusters] of" in run.out and "(known: beta)" in run.out
    )


# -- tables and the cluster ------------------------------------------------------------------


def test_create_ls_app_nodes_cluster_info(env: Env) -> None:
    run = ok(env.shell("create t1 -p 4; create t1; ls; ls -d; ls -j"))
    lines = run.out.splitlines()
    assert lines[0] == "create app t1 succeed, waiting for app ready"
    assert re.fullmatch(
        r"t1 not ready yet, still waiting\.\.\. \(\d/4\)|t1 is ready now!", lines[1]
    )
    assert lines.count('create app "t1" succeed') == 2  # without -f an existing table is fine
    assert re.search(
        r"^\[general_info\]\napp_id +status +app_name +app_type +partition_count +replica_count"
        r" +is_stateful +create_time +drop_time +drop_expire +envs_count +atomic_idempotent$",
        run.out,
        re.M,
    )
    assert re.search(
        r"^\d+ +AVAILABLE +t1 +pegasus +4 +1 +true +\d{4}-\d\d-\d\d_[\d:]{8} +- +- "
        r"+0 +false$",
        run.out,
        re.M,
    )
    assert re.search(r"^\[summary\]\ntotal_app_count +: \d+$", run.out, re.M)
    assert re.search(
        r"^\[healthy_info\]\napp_id +app_name +partition_count +fully_healthy "
        r"+unhealthy +write_unhealthy +read_unhealthy$",
        run.out,
        re.M,
    )
    assert re.search(r"^\d+ +t1 +4 +4 +0 +0 +0$", run.out, re.M)
    assert re.search(r"^read_unhealthy_app_count +: 0$", run.out, re.M)
    doc = json.loads(run.out[run.out.index("{") :])
    (row,) = [r for r in doc["general_info"].values() if r["app_name"] == "t1"]
    assert row["partition_count"] == "4" and row["status"] == "AVAILABLE"

    run = ok(env.shell("app t1; app t1 -d; nodes; nodes -d; cluster_info"))
    assert "[general]\napp_name           : t1\napp_id             : " in run.out
    assert "partition_count    : 4\nmax_replica_count  : 1" in run.out
    replicas = re.findall(r"^(\d) +1 +1/1 +127\.0\.0\.1:(\d+) +\[\]$", run.out, re.M)
    assert [pidx for pidx, _ in replicas] == ["0", "1", "2", "3"]
    assert {int(port) for _, port in replicas} <= set(env.alpha.replica_ports)
    assert re.search(r"^total +4 +0 +4$", run.out, re.M)
    assert "fully_healthy_partition_count    : 4" in run.out
    for port in env.alpha.replica_ports:
        assert re.search(rf"^127\.0\.0\.1:{port} +ALIVE$", run.out, re.M)
        assert re.search(rf"^127\.0\.0\.1:{port} +ALIVE +(\d+) +\1 +0$", run.out, re.M)
    assert "total_node_count    : 2\nalive_node_count    : 2\nunalive_node_count  : 0" in run.out
    assert re.search(r"^\[cluster_info\]\nmeta_servers +: 127\.0\.0\.1:\d+$", run.out, re.M)
    assert re.search(r"^cluster_name +: alpha$", run.out, re.M)


def test_cluster_by_name_and_cc(env: Env) -> None:
    config = str(env.alpha.config_path)
    run = ok(env.shell("cluster_info; cc alpha; cluster_info", "-n", "beta", "--config", config))
    names = re.findall(r"^cluster_name +: (\w+)$", run.out, re.M)
    assert names == ["beta", "alpha"]
    assert f"OK, current cluster: alpha (meta servers {env.alpha.meta_address})" in run.out
    run = env.shell("cc gamma; cluster_info", "--config", config)
    assert run.rc == 1
    assert "ERROR: cluster 'gamma' is not in [pegasus.clusters] of" in run.out
    assert "(known: alpha, beta); or give host:port" in run.out
    assert re.search(r"^cluster_name +: alpha$", run.out, re.M)  # still on the first cluster


def test_drop_then_the_table_is_gone(env: Env) -> None:
    ok(env.shell("create gone -p 2"))
    run = env.shell("use gone; drop gone; get h s; use gone; drop gone")
    assert run.rc == 1
    assert run.lines == [
        "OK",
        "reserve_seconds = 0",
        "drop app gone succeed",
        "No app is using now",  # drop forgets the current table
        "USAGE: use <app_name>",
        'ERROR: table "gone" does not exist (ERR_OBJECT_NOT_FOUND); `ls` lists the tables',
        "reserve_seconds = 0",
        "drop app gone failed, error = ERR_APP_NOT_EXIST",
    ]


# -- data ----------------------------------------------------------------------------------


def test_set_get_del_exist_ttl_incr(env: Env) -> None:
    ok(env.shell("create data -p 4"))
    run = ok(
        env.shell(
            "use data; set h s v; get h s; exist h s; ttl h s; set h t 'a b' 100; ttl h t; "
            "del h s; get h s; exist h s; ttl h s; incr h n; incr h n 41; incr h n -2; get h n"
        )
    )
    lines = run.lines
    assert lines[:4] == ["OK", "OK", '"v"', "True"]
    assert lines[4:7] == ["Infinite", "OK", lines[6]] and 98 <= int(lines[6]) <= 100
    assert lines[7:] == ["OK", "Not found", "False", "Not found", "1", "42", "40", '"40"']
    # Each data command ends with where the request went, as Pegasus's shell prints it.
    info = re.findall(
        r"\n\napp_id +: (\d+)\npartition_index : (\d)\nserver +: 127\.0\.0\.1:(\d+)", run.out
    )
    assert len(info) == 14
    assert {int(port) for _, _, port in info} <= set(env.alpha.replica_ports)


def test_multi_commands_count_and_check_and_set(env: Env) -> None:
    run = ok(
        env.shell(
            "use data; multi_set m a 1 b 2 c 3 d 4; multi_get m; multi_get m b d zz; "
            "multi_get_range m b d; multi_get_range m b d -b true -r -n 2; "
            "multi_get_range m a z -s prefix -y c -i; multi_get_sortkeys m; count m; "
            "multi_del m a b; count m"
        )
    )
    out = run.out
    assert run.lines[0] == "OK"
    assert (
        '"m" : "a" => "1"\n"m" : "b" => "2"\n"m" : "c" => "3"\n"m" : "d" => "4"\n\n'
        "4 key-value pairs got, fetch completed." in out
    )
    assert '"m" : "b" => "2"\n"m" : "d" => "4"\n\n2 key-value pairs got, fetch completed.' in out
    assert 'hash_key: "m"\nstart_sort_key: "b"\nstart_inclusive: true\n' in out
    assert '"m" : "b" => "2"\n"m" : "c" => "3"\n\n2 key-value pairs got, fetch completed.' in out
    # -r -n 2: the last two of the range, printed in sort-key order as Pegasus's shell does
    assert (
        '"m" : "c" => "3"\n"m" : "d" => "4"\n\n2 key-value pairs got, fetch not completed.' in out
    )
    assert 'sort_key_filter_pattern: "c"' in out and '"m" : "c"\n\n1 key-value pairs got' in out
    assert '"a"\n"b"\n"c"\n"d"\n\n4 sort keys got, fetch completed.' in out
    assert re.findall(r"^(\d+)$", out, re.M) == ["4", "2"]
    assert "2 key-value pairs deleted." in out

    run = ok(
        env.shell(
            "use data; set c k 5; "
            "check_and_set c -c k -t int_equal -o 5 -s k2 -v yes -r; get c k2; "
            "check_and_set c -c k -t int_greater -o 9 -s k2 -v no; get c k2; "
            "check_and_set c -c nope -t not_exist -s nope -v first -r"
        )
    )
    out = run.out
    assert 'check_type: int_equal\ncheck_operand: "5"\nset_sort_key: "k2"\nset_value: "yes"' in out
    assert 'Set succeed.\n\nCheck value: "5"' in out
    assert "Set failed, because check not passed." in out
    assert run.lines.count('"yes"') == 2  # the second check failed: k2 is still "yes"
    assert "Set succeed.\n\nCheck value not exist." in out


def test_escapes_and_hash(env: Env) -> None:
    run = ok(
        env.shell(
            r'use data; set "hk 1" "" "v\x00\xff\"q\\"; get "hk 1" ""; escape_all true; '
            r'get "hk 1" ""; escape_all false; set \xe4 s "é"; get \xe4 s; hash "hk 1" ""'
        )
    )
    lines = run.lines
    assert lines[2] == r'"v\x00\xFF\"q\\"'
    assert lines[4] == r'"\x76\x00\xFF\x22\x71\x5C"'
    assert lines[7] == r'"\xC3\xA9"'
    assert re.search(
        r"^key_hash +: \d+\napp_name +: data\napp_id +: \d+\npartition_count +: 4\n"
        r"partition_index : \d\nprimary +: 127\.0\.0\.1:\d+\nsecondaries +: \[\]$",
        run.out,
        re.M,
    )


def test_scans_and_count_data(env: Env) -> None:
    ok(env.shell("create scans -p 4"))
    writes = "; ".join(f"multi_set k{i} a v{i} b w{i}" for i in range(10))
    ok(env.shell(f"use scans; {writes}"))
    run = ok(
        env.shell(
            "use scans; hash_scan k3 '' ''; scan k3 a b -b true -d; hash_scan k3 '' '' -i -n 1; "
            "full_scan; full_scan -n 3; full_scan -h prefix -x k1 -v exact -z v1; "
            "count_data; count_data -c"
        )
    )
    out = run.out
    assert 'hash_key: "k3"\nstart_sort_key: ""\nstart_inclusive: true\n' in out
    assert '"k3" : "a" => "v3"\n"k3" : "b" => "w3"\n\n2 key-value pairs got.' in out
    assert re.search(
        r'^"k3" : "b" => "w3" \{app_id=\d+, partition_index=\d, '
        r"server=127\.0\.0\.1:\d+\}$",
        out,
        re.M,
    )
    assert '"k3" : "a"\n\n1 key-value pairs got.' in out
    full = re.findall(r'^"(k\d)" : "([ab])" => "([vw]\d)"$', out, re.M)
    assert sorted(set(full)) == sorted(
        {(f"k{i}", "a", f"v{i}") for i in range(10)} | {(f"k{i}", "b", f"w{i}") for i in range(10)}
    )
    assert re.findall(r"^(\d+) key-value pairs got\.$", out, re.M)[-3:] == ["20", "3", "1"]
    assert re.search(r'^"k1" : "a" => "v1"\n\n1 key-value pairs got\.$', out, re.M)
    table = re.search(
        r"^\[count_data\]\npidx +estimate_count\n((?:\d +\d+\n){4})\(total:4\) +(\d+)$", out, re.M
    )
    assert table, out
    per_partition = [int(line.split()[1]) for line in table.group(1).splitlines()]
    assert sum(per_partition) == int(table.group(2)) >= 20  # RocksDB's estimate, every write
    assert "Count done, total 20 rows." in out


# -- bad input -------------------------------------------------------------------------------


# One run each for the kinds of mistake a user makes most: each must fail the run.
@pytest.mark.parametrize(
    "commands, expected",
    [
        ("bogus", ['ERROR: unknown command "bogus" (`help` lists the commands)']),
        (
            "use data; get h",
            [
                "ERROR: the following arguments are required: sort_key",
                "USAGE: get <hash_key> <sort_key>",
            ],
        ),
        (
            "use data; set h s v soon",
            [
                "ERROR: argument ttl_seconds: invalid ttl 'soon'; accepted: a whole number of "
                "seconds greater than 0",
                "USAGE: set <hash_key> <sort_key> <value> [<ttl_seconds>]",
            ],
        ),
        (
            "use data; check_and_set h -c a -t equal -s b -v c",
            [
                "ERROR: argument -t/--check_type: 'equal' is not accepted; accepted: "
                "not_exist, not_exist_or_empty, exist, not_empty, match_anywhere, match_prefix, "
                "match_postfix, bytes_less,"
            ],
        ),
        ("get h s", ["No app is using now", "USAGE: use <app_name>"]),
        (
            "use nosuch",
            ['ERROR: table "nosuch" does not exist (ERR_OBJECT_NOT_FOUND); `ls` lists the tables'],
        ),
    ],
)
def test_bad_input_says_what_is_wrong_and_fails(
    env: Env, commands: str, expected: list[str]
) -> None:
    run = env.shell(f"{commands}; ls")
    assert run.rc == 1, run.out
    for text in expected:
        assert text in run.out
    assert "[general_info]" in run.out  # the shell went on after the failure


def test_more_bad_input(env: Env) -> None:
    cases = [
        ("sett h s v", 'ERROR: unknown command "sett"; did you mean set'),
        ("get h s t", "ERROR: unrecognized arguments: t"),
        ("set h s v -5", "ERROR: argument ttl_seconds: invalid ttl '-5'"),
        (
            "check_and_set h -c a -t bytes_less -s b -v c",
            "ERROR: check_operand not provided; check type bytes_less needs one (-o)",
        ),
        ("check_and_set h -c a -t exist -v c", "ERROR: set_sort_key not provided; give it with -s"),
        ("incr h s one", "ERROR: argument increment: invalid number 'one'"),
        ("multi_set h a 1 b", "ERROR: sort keys and values come in pairs"),
        ("multi_set h a 1 a 2", 'ERROR: duplicate sort key "a"'),
        ("get h \\q", 'ERROR: sort_key: bad escape \\q in "\\q"; accepted: \\xNN,'),
        ("get h \\x4", 'ERROR: sort_key: bad escape in "\\x4": \\x needs two hex digits'),
        ("full_scan -n many", "ERROR: argument -n/--max_count: invalid count 'many'"),
        (
            "multi_get_range h a b -a maybe",
            "ERROR: argument -a/--start_inclusive: 'maybe' is not a boolean; accepted: true "
            "or false",
        ),
        ("app nosuch", 'ERROR: table "nosuch" does not exist (ERR_OBJECT_NOT_FOUND)'),
        ("create bad -p 3", "ERROR: partition_count is 3; accepted: a power of two"),
        ("create bad -e nothing", "ERROR: bad env 'nothing' in -e; accepted: key1=value1"),
        ("dup", "ERROR: dup needs a subcommand: list, add, pause, start or remove"),
        ("dup add", "ERROR: the following arguments are required: -c/--cluster"),
        ("dup pause -d x", "ERROR: argument -d/--dupid: invalid dupid 'x'"),
        (
            "set_dup_fail_mode data 1 fast",
            "ERROR: argument fail_mode: 'fast' is not accepted; accepted: slow, skip",
        ),
    ]
    run = env.shell("use data; " + "; ".join(c for c, _ in cases) + "; ls")
    assert run.rc == 1
    for command, expected in cases:
        assert expected in run.out, command
    assert run.out.count("ERROR: ") == len(cases)  # one message each, no crash
    assert "[general_info]" in run.out
    run = env.shell("dup list")
    assert run.rc == 1 and "No app is using now" in run.out


def test_unreachable_cluster_fails_but_help_works(env: Env) -> None:
    run = env.shell("help get; ls", meta="127.0.0.1:1")
    assert run.rc == 1
    assert "USAGE: get <hash_key> <sort_key>" in run.out
    assert "ERROR: ERR_NETWORK_FAILURE: no meta server is reachable" in run.out


# -- interactive ---------------------------------------------------------------------------


def test_interactive_mode_reads_stdin(env: Env) -> None:
    run = env.shell(stdin="use data\nset i j k\nget i j\nhelp exit\nexit\nget i j\n")
    assert run.rc == 0, run.out
    assert run.out.startswith(">>> OK\n>>> OK\n")
    assert run.out.count('"k"') == 1  # nothing runs after exit
    assert "USAGE: exit" in run.out
    run = env.shell(stdin="use data; get i j\nget 'i j\nnosuch\n")  # ends at end of input
    assert run.rc == 1  # from a pipe, a failed command makes the exit status 1
    assert '"k"' in run.out and 'ERROR: unknown command "nosuch"' in run.out
    assert "ERROR: unterminated ' quote; close it with another '" in run.out
    assert run.out.endswith(">>> \n")
    assert not (env.home / ".dupkv_history").exists()  # history only on a terminal


# -- duplication -----------------------------------------------------------------------------


def dup_list(env: Env, *args: str) -> list[dict]:
    run = ok(env.shell("use dupt; dup list " + " ".join(args)))
    return json.loads(run.out[run.out.index("[") :])


def test_dup_add_list_pause_start_remove(env: Env) -> None:
    ok(env.shell("create dupt -p 4"))
    ok(env.shell("create dupt -p 2", meta=env.beta.meta_address))
    assert dup_list(env) == []

    run = env.shell(
        "use dupt; dup add -c beta; dup add -c beta; dup add -c gamma; "
        "dup add -c alpha; dup add -c beta -p"
    )
    assert run.rc == 1
    (dupid,) = map(
        int, re.findall(r"^successfully add duplication \[dupid: (\d+)\]$", run.out, re.M)
    )
    assert "AddDuplication failed: ERR_DUP_EXIST" in run.out
    assert re.search(r"^AddDuplication failed: ERR_\w+ \[hint: .*gamma.*\]$", run.out, re.M)
    assert "illegal operation: adding duplication to itself [remote: alpha]" in run.out
    assert "ERROR: full duplication (-p) is not supported yet" in run.out

    (entry,) = dup_list(env)  # -p sent nothing
    assert list(entry)[:5] == ["dupid", "status", "remote", "create_ts", "fail_mode"]
    assert entry["dupid"] == dupid and entry["status"] == "DS_LOG"
    assert entry["remote"] == "beta" and entry["fail_mode"] == "FAIL_SLOW"
    assert abs(entry["create_ts"] / 1000 - time.time()) < 60

    # The duplication really ships: a write on alpha shows up on beta.
    ok(env.shell("use dupt; set shipped k v"))
    deadline = time.monotonic() + 20
    while '"v"' not in env.shell("use dupt; get shipped k", meta=env.beta.meta_address).out:
        assert time.monotonic() < deadline, "the write never reached beta"
        time.sleep(0.5)
    (entry,) = dup_list(env, "-d")
    replicas = entry["replicas"]
    assert sorted(replicas) == ["0", "1", "2", "3"]
    for fields in replicas.values():
        assert re.fullmatch(r"127\.0\.0\.1:\d+", fields["server"])
        assert "not_duplicated_mutations_num" in fields and "confirmed_decree" in fields

    run = env.shell(
        f"use dupt; dup pause -d {dupid}; dup list; dup start -d {dupid}; "
        f"set_dup_fail_mode dupt {dupid} skip; dup pause -d 12345"
    )
    assert run.rc == 1
    assert f"pausing duplication({dupid}) for app dupt succeed" in run.out
    assert '"status": "DS_PAUSE"' in run.out
    assert f"starting duplication({dupid}) for app dupt succeed" in run.out
    assert f"set duplication({dupid}) fail_mode (skip) for app dupt succeed" in run.out
    assert (
        "pausing duplication(12345) for app dupt failed, error=ERR_OBJECT_NOT_FOUND "
        "[duplication not found]"
    ) in run.out
    (entry,) = dup_list(env)
    assert (entry["status"], entry["fail_mode"]) == ("DS_LOG", "FAIL_SKIP")

    # Pegasus shell's spellings.
    run = env.shell(
        f"query_dup dupt; pause_dup dupt {dupid}; start_dup dupt {dupid}; add_dup dupt beta"
    )
    assert run.rc == 1  # the add: it exists
    assert re.search(
        rf"^dup_id +status +remote cluster +create time\n{dupid} +DS_LOG +beta "
        r"+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}$",
        run.out,
        re.M,
    )
    assert f"pausing duplication({dupid}) for app dupt succeed" in run.out
    assert f"starting duplication({dupid}) for app dupt succeed" in run.out
    assert (
        "trying to add duplication [app_name: dupt, remote_cluster_name: beta, "
        "is_duplicating_checkpoint: false, remote_app_name: dupt, "
        "remote_replica_count: 0]"
    ) in run.out
    assert re.search(
        r"^duplication has been existing \[app_name: dupt, remote_cluster_name: "
        rf"beta, appid: \d+, dupid: {dupid}, remote_app_name: dupt, "
        r"remote_replica_count: 1\]$",
        run.out,
        re.M,
    )

    run = ok(env.shell(f"use dupt; dup remove -d {dupid}"))
    assert f"removing duplication({dupid}) for app dupt succeed" in run.out
    assert dup_list(env) == []
    run = env.shell(f"remove_dup dupt {dupid}; remove_dup nosuch 1")
    assert run.rc == 1
    assert (
        f"removing duplication({dupid}) for app dupt failed, error=ERR_OBJECT_NOT_FOUND" in run.out
    )
    assert "removing duplication(1) for app nosuch failed, error=ERR_APP_NOT_EXIST" in run.out
