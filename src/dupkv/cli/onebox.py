"""`dupkv onebox start|stop|status|clean`: two clusters on this machine (CLI shell).

Pegasus's onebox, for dupkv: cluster `bjsrv-account` (meta server 127.0.0.1:34601, replica
servers 34801-34803) and `tjsrv-account` (meta 35601, replicas 35801-35803), each a meta
server plus three replica servers running as separate background processes
(`python -m dupkv.cli.main meta|replica ...`, each in its own session). Everything lives in
one folder (`--dir`, default `./onebox`):

    <dir>/onebox.json                 the ports this onebox was started with
    <dir>/<cluster>/config.ini        Pegasus section/key names, both clusters listed
    <dir>/<cluster>/<role><n>.log     stdout and stderr of meta1, replica1..replica3
    <dir>/<cluster>/<role><n>.pid     the PID `stop` signals (and only that one)
    <dir>/<cluster>/data/...          the meta store and each replica server's partitions

`DUPKV_ONEBOX_BASE_PORT` moves every port by the same amount (the meta server of the first
cluster listens on the base port; the defaults above are base 34601), so tests can run a
onebox beside a user's. A restart on an existing folder reuses the ports recorded there.
`stop` waits `DUPKV_ONEBOX_STOP_TIMEOUT_S` (default 20) after SIGTERM before it SIGKILLs.

The layout and the config text are computed by pure functions at the top; the rest spawns,
waits for and signals processes, each wait bounded.
"""

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from dupkv.base.errors import BadInput

CLUSTERS = (("bjsrv-account", 1), ("tjsrv-account", 2))  # name, [duplication-group] id
DEFAULT_BASE_PORT = 34601
CLUSTER_PORT_STEP = 1000  # 34601 -> 35601
REPLICA_PORT_OFFSET = 200  # 34601 -> 34801
REPLICAS_PER_CLUSTER = 3
BASE_PORT_ENV = "DUPKV_ONEBOX_BASE_PORT"
STOP_TIMEOUT_ENV = "DUPKV_ONEBOX_STOP_TIMEOUT_S"
STATE_FILE = "onebox.json"

START_TIMEOUT_S = 60.0  # every server answers and both metas see their replica servers
STOP_TIMEOUT_S = 20.0  # SIGTERM -> exit; SIGKILL after that (STOP_TIMEOUT_ENV overrides)
KILL_TIMEOUT_S = 5.0
POLL_S = 0.1
HTTP_TIMEOUT_S = 2.0
LOG_TAIL_BYTES = 1500


# -- layout (pure) -----------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    cluster: str
    role: str  # "meta" or "replica"
    index: int  # 1-based, as in meta1, replica2
    port: int

    @property
    def name(self) -> str:
        return f"{self.role}{self.index}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@dataclass(frozen=True)
class ClusterLayout:
    name: str
    cluster_id: int
    meta_port: int
    replica_ports: tuple[int, ...]

    @property
    def meta_address(self) -> str:
        return f"127.0.0.1:{self.meta_port}"

    def servers(self) -> list[Server]:
        out = [Server(self.name, "meta", 1, self.meta_port)]
        out += [
            Server(self.name, "replica", i, port)
            for i, port in enumerate(self.replica_ports, start=1)
        ]
        return out


def layout_for(base_port: int) -> list[ClusterLayout]:
    """Pegasus's onebox ports moved by `base_port - 34601`."""
    out = []
    for n, (name, cid) in enumerate(CLUSTERS):
        meta = base_port + n * CLUSTER_PORT_STEP
        replicas = tuple(meta + REPLICA_PORT_OFFSET + i for i in range(REPLICAS_PER_CLUSTER))
        out.append(ClusterLayout(name, cid, meta, replicas))
    return out


def highest_base_port() -> int:
    return (
        65535
        - (len(CLUSTERS) - 1) * CLUSTER_PORT_STEP
        - REPLICA_PORT_OFFSET
        - (REPLICAS_PER_CLUSTER - 1)
    )


def parse_base_port(raw: str) -> int:
    try:
        port = int(raw)
    except ValueError:
        port = 0
    if not 1024 <= port <= highest_base_port():
        raise BadInput(
            f"{BASE_PORT_ENV}={raw!r}: accepted is a port 1024..{highest_base_port()} "
            f"(default {DEFAULT_BASE_PORT}; each cluster uses base + {CLUSTER_PORT_STEP} * n "
            f"for its meta server and {REPLICA_PORT_OFFSET} more for its replica servers)"
        )
    return port


def render_config(cluster: ClusterLayout, everyone: list[ClusterLayout], data_dir: Path) -> str:
    """The cluster's config.ini, with Pegasus's section and key names."""
    clusters = "\n".join(f"{c.name} = {c.meta_address}" for c in everyone)
    group = "\n".join(f"{c.name} = {c.cluster_id}" for c in everyone)
    return f"""; written by `dupkv onebox start`; rewritten at every start
[replication]
cluster_name = {cluster.name}
data_dirs = {data_dir}

[meta_server]
server_list = {cluster.meta_address}

[apps.meta]
ports = {cluster.meta_port}

[apps.replica]
ports = {cluster.replica_ports[0]}

[pegasus.clusters]
{clusters}

[duplication-group]
{group}
"""


def layout_to_json(layout: list[ClusterLayout]) -> str:
    return json.dumps(
        {
            "clusters": [
                {
                    "name": c.name,
                    "cluster_id": c.cluster_id,
                    "meta_port": c.meta_port,
                    "replica_ports": list(c.replica_ports),
                }
                for c in layout
            ]
        },
        indent=2,
    )


def layout_from_json(text: str) -> list[ClusterLayout]:
    raw = json.loads(text)
    return [
        ClusterLayout(
            c["name"],
            int(c["cluster_id"]),
            int(c["meta_port"]),
            tuple(int(p) for p in c["replica_ports"]),
        )
        for c in raw["clusters"]
    ]


# -- the folder --------------------------------------------------------------------------


class Onebox:
    """A onebox folder: where its files are, and the processes its PID files name."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()

    @property
    def state_path(self) -> Path:
        return self.root / STATE_FILE

    def cluster_dir(self, cluster: str) -> Path:
        return self.root / cluster

    def config_path(self, cluster: str) -> Path:
        return self.cluster_dir(cluster) / "config.ini"

    def log_path(self, server: Server) -> Path:
        return self.cluster_dir(server.cluster) / f"{server.name}.log"

    def pid_path(self, server: Server) -> Path:
        return self.cluster_dir(server.cluster) / f"{server.name}.pid"

    def data_dir(self, cluster: str) -> Path:
        return self.cluster_dir(cluster) / "data"

    def recorded_layout(self) -> list[ClusterLayout] | None:
        try:
            return layout_from_json(self.state_path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise BadInput(f"{self.state_path} is unreadable ({e}); remove the folder") from None

    def layout(self, base_port: int | None = None) -> list[ClusterLayout]:
        """The ports of `base_port` or of the environment, else the recorded ones, else
        Pegasus's."""
        if base_port is not None:
            return layout_for(parse_base_port(str(base_port)))
        raw = os.environ.get(BASE_PORT_ENV)
        if raw:
            return layout_for(parse_base_port(raw))
        return self.recorded_layout() or layout_for(DEFAULT_BASE_PORT)

    def command(self, server: Server) -> list[str]:
        config = str(self.config_path(server.cluster))
        cmd = [sys.executable, "-m", "dupkv.cli.main", server.role, "--config", config]
        if server.role == "replica":
            data = self.data_dir(server.cluster) / server.name
            cmd += ["--port", str(server.port), "--data-dir", str(data)]
        return cmd

    def recorded_pid(self, server: Server) -> int | None:
        try:
            return int(self.pid_path(server).read_text().strip())
        except (OSError, ValueError):
            return None

    def is_ours(self, pid: int, server: Server) -> bool:
        """Whether `pid` is alive and still runs this server of this onebox (PIDs get
        reused: a stale PID file must never make us signal a stranger)."""
        if not pid_alive(pid):
            return False
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except FileNotFoundError:
            return False
        except OSError:
            return True  # no /proc to ask: trust the PID file
        config = str(self.config_path(server.cluster)).encode()
        return b"dupkv.cli.main" in argv and server.role.encode() in argv and config in argv

    def running(self, layout: list[ClusterLayout]) -> list[tuple[Server, int]]:
        out = []
        for cluster in layout:
            for server in cluster.servers():
                pid = self.recorded_pid(server)
                if pid is not None and self.is_ours(pid, server):
                    out.append((server, pid))
        return out


def pid_alive(pid: int) -> bool:
    """Alive and not a zombie (a reaper may be slow, or absent in a container)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] != "Z"


def port_free(port: int) -> bool:
    """Whether a server could listen on the port: SO_REUSEADDR as asyncio's servers set it,
    so connections of an earlier server still in TIME-WAIT do not count as "in use"."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def http_json(address: str, path: str) -> dict:
    with urllib.request.urlopen(f"http://{address}{path}", timeout=HTTP_TIMEOUT_S) as resp:
        return json.loads(resp.read())


def answers(address: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{address}/version", timeout=HTTP_TIMEOUT_S):
            return True
    except (OSError, urllib.error.URLError):
        return False


def alive_nodes(meta_address: str) -> int | None:
    try:
        return int(http_json(meta_address, "/meta/nodes")["summary"]["alive_node_count"])
    except (OSError, ValueError, KeyError):
        return None


def log_tail(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - LOG_TAIL_BYTES))
            return f.read().decode(errors="replace")
    except OSError:
        return "(no log)"


def prog() -> str:
    """How the user ran us, for the hints we print."""
    argv0 = sys.argv[0] if sys.argv else ""
    return argv0 if Path(argv0).name == "dupkv" else "dupkv"


def dir_flag(box: Onebox, given: str) -> str:
    return "" if given == "onebox" else f" --dir {given}"


# -- actions -----------------------------------------------------------------------------


def start(box: Onebox, given_dir: str, base_port: int | None = None) -> int:
    layout = box.layout(base_port)
    running = box.running(layout)
    if running:
        pids = ", ".join(f"{s.cluster}/{s.name}={pid}" for s, pid in running)
        print(
            f"onebox in {box.root} is already running ({pids}).\n"
            f"  see it:  {prog()} onebox status{dir_flag(box, given_dir)}\n"
            f"  stop it: {prog()} onebox stop{dir_flag(box, given_dir)}",
            file=sys.stderr,
        )
        return 1
    taken = [s for c in layout for s in c.servers() if not port_free(s.port)]
    if taken:
        names = ", ".join(f"{s.port} ({s.cluster} {s.name})" for s in taken)
        print(
            f"cannot start the onebox: port(s) {names} already in use on 127.0.0.1 "
            f"(another onebox or a Pegasus server?). Stop whatever holds them, or move every "
            f"onebox port with {BASE_PORT_ENV}=<port> (default {DEFAULT_BASE_PORT}) and a new "
            f"--dir.",
            file=sys.stderr,
        )
        return 1
    box.root.mkdir(parents=True, exist_ok=True)
    box.state_path.write_text(layout_to_json(layout) + "\n")
    for cluster in layout:
        box.cluster_dir(cluster.name).mkdir(exist_ok=True)
        box.data_dir(cluster.name).mkdir(exist_ok=True)
        box.config_path(cluster.name).write_text(
            render_config(cluster, layout, box.data_dir(cluster.name))
        )
    procs: dict[Server, subprocess.Popen[bytes]] = {}
    try:
        for cluster in layout:
            for server in cluster.servers():  # the meta server first: the others call it
                procs[server] = spawn(box, server)
        problem = wait_ready(box, layout, procs)
    except KeyboardInterrupt:
        print("interrupted: stopping what was started", file=sys.stderr)
        stop(box, quiet=True)
        raise
    if problem is not None:
        print(f"onebox did not start: {problem}", file=sys.stderr)
        stop(box, quiet=True)
        return 1
    print_started(box, layout, given_dir)
    return 0


def spawn(box: Onebox, server: Server) -> subprocess.Popen[bytes]:
    """Start one server in its own session, output to its log, and record its PID."""
    with open(box.log_path(server), "ab") as log:
        proc = subprocess.Popen(
            box.command(server),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    box.pid_path(server).write_text(f"{proc.pid}\n")
    return proc


def wait_ready(
    box: Onebox, layout: list[ClusterLayout], procs: dict[Server, subprocess.Popen[bytes]]
) -> str | None:
    """None once every server answers and each meta sees all its replica servers alive;
    else what went wrong, with the log of a server that exited."""
    deadline = time.monotonic() + START_TIMEOUT_S
    pending = list(procs)
    while time.monotonic() < deadline:
        for server, proc in procs.items():
            if proc.poll() is not None:
                log = box.log_path(server)
                return (
                    f"{server.cluster} {server.name} (port {server.port}) exited with code "
                    f"{proc.returncode}; end of {log}:\n{log_tail(log)}"
                )
        pending = [s for s in pending if not answers(s.address)]
        if not pending and all(alive_nodes(c.meta_address) == len(c.replica_ports) for c in layout):
            return None
        time.sleep(POLL_S)
    if pending:
        names = ", ".join(f"{s.cluster} {s.name} ({s.address})" for s in pending)
        return f"after {START_TIMEOUT_S:.0f} s these servers still do not answer: {names}"
    seen = ", ".join(f"{c.name}: {alive_nodes(c.meta_address)}" for c in layout)
    return (
        f"after {START_TIMEOUT_S:.0f} s the meta servers do not see "
        f"{REPLICAS_PER_CLUSTER} alive replica servers each ({seen})"
    )


def print_started(box: Onebox, layout: list[ClusterLayout], given_dir: str) -> None:
    d = dir_flag(box, given_dir)
    print(f"onebox started in {box.root}")
    for c in layout:
        replicas = ", ".join(f"127.0.0.1:{p}" for p in c.replica_ports)
        print(f"  {c.name} (cluster id {c.cluster_id}): meta {c.meta_address}, replicas {replicas}")
        print(f"    config {box.config_path(c.name)}, logs in {box.cluster_dir(c.name)}")
    first = layout[0]
    print(
        f"\nshell:  {prog()} shell --meta {first.meta_address}\n"
        f"        {prog()} shell --cluster {first.name} --config {box.config_path(first.name)}\n"
        f"        >>> create temp -p 8\n"
        f"        >>> use temp\n"
        f"        >>> set hk sk value\n"
        f"        >>> get hk sk\n"
        f"status: {prog()} onebox status{d}\n"
        f"stop:   {prog()} onebox stop{d}   (clean: also deletes {box.root})"
    )


def status(box: Onebox) -> int:
    layout = box.recorded_layout()
    if layout is None:
        print(f"no onebox in {box.root} (start one with `{prog()} onebox start`)")
        return 1
    all_alive = True
    print(f"onebox in {box.root}")
    print(f"{'cluster':<16} {'server':<9} {'pid':>8} {'address':<16} state")
    for cluster in layout:
        for server in cluster.servers():
            pid = box.recorded_pid(server)
            alive = pid is not None and box.is_ours(pid, server)
            all_alive &= alive
            state = "alive" if alive else "dead"
            if alive and not answers(server.address):
                state = "alive, not answering"
            print(
                f"{server.cluster:<16} {server.name:<9} {pid if pid else '-':>8} "
                f"{server.address:<16} {state}"
            )
    for cluster in layout:
        print(f"\n[{cluster.name}] /meta/nodes of {cluster.meta_address}")
        try:
            nodes = http_json(cluster.meta_address, "/meta/nodes")
        except (OSError, ValueError) as e:
            print(f"  unreachable: {e}")
            all_alive = False
            continue
        summary = nodes.get("summary", {})
        print(
            f"  total {summary.get('total_node_count', '?')}, "
            f"alive {summary.get('alive_node_count', '?')}, "
            f"unalive {summary.get('unalive_node_count', '?')}"
        )
        for address, detail in sorted(nodes.get("details", {}).items()):
            print(
                f"  {address:<16} {detail.get('status', '?'):<8} "
                f"replicas {detail.get('replica_count', '?')}"
            )
    return 0 if all_alive else 1


def stop_timeout_s() -> float:
    raw = os.environ.get(STOP_TIMEOUT_ENV)
    if not raw:
        return STOP_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 3600:
        raise BadInput(
            f"{STOP_TIMEOUT_ENV}={raw!r}: accepted is a number of seconds 0..3600 "
            f"(default {STOP_TIMEOUT_S:g})"
        )
    return value


def stop(box: Onebox, *, quiet: bool = False) -> int:
    layout = box.recorded_layout()
    if layout is None:
        if not quiet:
            print(f"no onebox in {box.root}; nothing to stop")
        return 0
    targets = box.running(layout)
    for _, pid in targets:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    grace_s = stop_timeout_s()
    deadline = time.monotonic() + grace_s
    left = list(targets)
    while left and time.monotonic() < deadline:
        time.sleep(POLL_S)
        left = [(s, pid) for s, pid in left if pid_alive(pid)]
    killed = []
    for server, pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        killed.append(server)
    deadline = time.monotonic() + KILL_TIMEOUT_S
    while left and time.monotonic() < deadline:
        time.sleep(POLL_S)
        left = [(s, pid) for s, pid in left if pid_alive(pid)]
    for cluster in layout:
        for server in cluster.servers():
            if not any(s == server for s, _ in left):
                box.pid_path(server).unlink(missing_ok=True)
    if not quiet:
        if not targets:
            print(f"onebox in {box.root} was not running")
        else:
            print(f"stopped {len(targets) - len(left)} of {len(targets)} onebox processes")
        for server in killed:
            print(
                f"  {server.cluster} {server.name} ignored SIGTERM for "
                f"{grace_s:g} s and was killed (SIGKILL)"
            )
    for server, pid in left:
        print(f"  {server.cluster} {server.name} (pid {pid}) is still alive", file=sys.stderr)
    return 1 if left else 0


def clean(box: Onebox) -> int:
    if not box.root.exists():
        print(f"no onebox in {box.root}; nothing to clean")
        return 0
    if not box.state_path.exists() and any(box.root.iterdir()):
        raise BadInput(
            f"{box.root} has no {STATE_FILE}: it is not a onebox folder, so `clean` leaves it "
            "alone; accepted is a folder made by `dupkv onebox start`"
        )
    code = stop(box)
    if code != 0:
        print(f"not deleting {box.root}: some processes are still running", file=sys.stderr)
        return code
    shutil.rmtree(box.root)
    print(f"deleted {box.root}")
    return 0


def run_onebox(args: argparse.Namespace) -> int:
    box = Onebox(args.dir)
    if args.action == "start":
        # `--base-port` is read when the parser (cli/main.py) offers it; the environment
        # variable works either way.
        return start(box, args.dir, getattr(args, "base_port", None))
    if args.action == "status":
        return status(box)
    if args.action == "stop":
        return stop(box)
    if args.action == "clean":
        return clean(box)
    raise BadInput(f"onebox {args.action!r}: accepted are start, stop, status, clean")
