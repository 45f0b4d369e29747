"""Start and stop real dupkv clusters (a meta server plus replica servers as separate
processes on 127.0.0.1) for integration tests and benchmarks.

Every process is started by this module and stopped by its PID. Ports come from the
kernel (bind to port 0), data lives under the caller's directory. `extra_config` is INI
text merged into the generated config.ini (a key it names in an existing section, e.g.
`[meta_server] meta_state_service_type`, replaces the default). `running(cluster)` starts
a cluster and always stops it, printing the servers' logs when the body failed.
"""

import configparser
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

READY_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(
    port: int, timeout_s: float = READY_TIMEOUT_S, proc: subprocess.Popen | None = None
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process {proc.pid} exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s}s")


def http_get(port: int, path: str, timeout_s: float = 5.0) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout_s) as r:
        return r.read()


@dataclass
class Process:
    name: str
    args: list[str]
    log_path: Path
    port: int
    proc: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        wait_port(self.port, proc=self.proc)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 20.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        code = self.proc.returncode
        self.proc = None
        return code

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


@dataclass
class Cluster:
    """A meta server and `replicas` replica servers sharing one config file."""

    name: str
    root: Path
    replicas: int = 3
    cluster_id: int = 1
    peers: dict[str, tuple[str, int]] = field(default_factory=dict)  # name -> (meta addr, id)
    extra_config: str = ""
    meta_port: int = 0
    replica_ports: list[int] = field(default_factory=list)
    meta: Process | None = None
    replica_procs: list[Process] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.meta_port = self.meta_port or free_port()
        self.replica_ports = self.replica_ports or [free_port() for _ in range(self.replicas)]

    @property
    def meta_address(self) -> str:
        return f"127.0.0.1:{self.meta_port}"

    @property
    def config_path(self) -> Path:
        return self.root / "config.ini"

    def config_sections(self) -> dict[str, dict[str, str]]:
        """The config as section -> key -> value, `extra_config` merged in."""
        sections: dict[str, dict[str, str]] = {
            "replication": {
                "cluster_name": self.name,
                "data_dirs": str(self.root / "data"),
                "checkpoint_interval_seconds": "5",
                "config_sync_interval_ms": "300",
                "duplication_sync_interval_ms": "500",
            },
            "meta_server": {
                "server_list": self.meta_address,
                "replica_server_lease_ms": "3000",
            },
            "apps.meta": {"ports": str(self.meta_port)},
            "pegasus.clusters": {
                self.name: self.meta_address,
                **{n: addr for n, (addr, _) in self.peers.items()},
            },
            "duplication-group": {
                self.name: str(self.cluster_id),
                **{n: str(cid) for n, (_, cid) in self.peers.items()},
            },
        }
        extra = configparser.ConfigParser(interpolation=None)
        extra.optionxform = str  # type: ignore[assignment,method-assign]  # keep key case
        extra.read_string(self.extra_config)
        for section in extra.sections():
            sections.setdefault(section, {}).update(extra.items(section))
        return sections

    def write_config(self) -> None:
        self.config_path.write_text(
            "".join(
                f"[{section}]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items()) + "\n"
                for section, keys in self.config_sections().items()
            )
        )

    def replica_data_dir(self, i: int) -> Path:
        return self.root / f"replica{i}"

    def partition_dirs(self, app_id: int) -> list[Path]:
        """The partition folders of a table on every replica server's disk."""
        return sorted(
            p
            for i in range(len(self.replica_ports))
            for p in (self.replica_data_dir(i) / "replica" / "reps").glob(f"{app_id}.*.pegasus")
        )

    def _cmd(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "dupkv.cli.main", *args]

    def start(self) -> None:
        self.write_config()
        self.meta = Process(
            f"{self.name}-meta",
            self._cmd("meta", "--config", str(self.config_path)),
            self.root / "meta.log",
            self.meta_port,
        )
        self.meta.start()
        self.replica_procs = []
        for i, port in enumerate(self.replica_ports):
            proc = Process(
                f"{self.name}-replica{i}",
                self._cmd(
                    "replica", "--config", str(self.config_path), "--port", str(port),
                    "--data-dir", str(self.replica_data_dir(i)),
                ),
                self.root / f"replica{i}.log",
                port,
            )
            self.replica_procs.append(proc)  # before start: stop() must find it if start fails
            proc.start()
        self.wait_nodes_alive()

    def wait_nodes_alive(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        want = sum(1 for p in self.replica_procs if p.alive)
        while time.monotonic() < deadline:
            try:
                nodes = json.loads(http_get(self.meta_port, "/meta/nodes"))
                if int(nodes["summary"]["alive_node_count"]) >= want:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{self.name}: {want} replica servers not alive after {timeout_s}s")

    def restart_replica(self, i: int) -> None:
        self.replica_procs[i].start()

    def restart_meta(self) -> None:
        """Start the meta server again on its port and data, and wait until it sees every
        running replica server alive."""
        assert self.meta is not None and not self.meta.alive
        self.meta.start()
        self.wait_nodes_alive()

    def stop(self) -> None:
        for p in self.replica_procs:
            p.stop()
        if self.meta is not None:
            self.meta.stop()

    def logs(self) -> str:
        procs = [p for p in [self.meta, *self.replica_procs] if p is not None]
        return "\n".join(f"==== {p.name} ====\n{p.log()[-4000:]}" for p in procs)


@contextlib.contextmanager
def running(cluster: Cluster) -> Iterator[Cluster]:
    """Start `cluster`, yield it, stop every process it started (by PID), even on failure;
    print the servers' logs (pytest shows them) when the body raised."""
    try:
        cluster.start()
        yield cluster
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        cluster.stop()
