"""A real ZooKeeper for tests: Debian's package, standalone, on 127.0.0.1 (test support).

`start_zookeeper(workdir)` writes `zoo.cfg` into `workdir`, starts
`java ... org.apache.zookeeper.server.ZooKeeperServerMain zoo.cfg` (start method A of
reference/environment.md §4) and returns once the `srvr` four-letter command reports
"Mode: standalone", or raises within `ready_timeout_s`. Passing the same `workdir` and `port`
again restarts a stopped server on its old data. `ZkServer.stop()` sends SIGTERM to the PID
this module started and waits for it to exit.

Needs /usr/share/java/zookeeper.jar: `scripts/ensure-system-deps.sh` installs it.
"""

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

ZOOKEEPER_JAR = "/usr/share/java/zookeeper.jar"
MAIN_CLASS = "org.apache.zookeeper.server.ZooKeeperServerMain"
JVM_FLAGS = ("-Xmx256m", "-XX:+UseSerialGC")
READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0
PORT_ATTEMPTS = 3  # a free port can be taken between finding it and ZooKeeper binding it


@dataclass
class ZkServer:
    hosts: str  # "127.0.0.1:<port>", as [zookeeper] hosts_list and kazoo take it
    port: int
    pid: int
    workdir: Path
    started_s: float  # seconds from spawn to "Mode: standalone"
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        """SIGTERM the server's own PID and wait; SIGKILL if it ignores that."""
        if self.process.poll() is not None:
            return
        os.kill(self.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.kill(self.pid, signal.SIGKILL)
            self.process.wait(timeout=STOP_TIMEOUT_S)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def four_letter(port: int, command: bytes, timeout_s: float = 1.0) -> bytes:
    """Send a four-letter command (e.g. b"srvr") and return the whole reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as s:
        s.sendall(command)
        reply = b""
        while chunk := s.recv(4096):
            reply += chunk
        return reply


def start_zookeeper(
    workdir: str | os.PathLike[str],
    *,
    port: int | None = None,
    ready_timeout_s: float = READY_TIMEOUT_S,
) -> ZkServer:
    """Start a standalone ZooKeeper with its data in `workdir`; see the module docstring."""
    if not os.path.isfile(ZOOKEEPER_JAR):
        raise RuntimeError(
            f"{ZOOKEEPER_JAR} is missing: run scripts/ensure-system-deps.sh "
            "(installs Debian's zookeeper package)"
        )
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    attempts = 1 if port is not None else PORT_ATTEMPTS
    failure = ""
    for _ in range(attempts):
        chosen = port if port is not None else free_port()
        server, failure = _spawn(workdir, chosen, ready_timeout_s)
        if server is not None:
            return server
    raise RuntimeError(f"ZooKeeper did not start in {workdir}: {failure}")


def _spawn(workdir: Path, port: int, ready_timeout_s: float) -> tuple[ZkServer | None, str]:
    data_dir = workdir / "data"
    data_dir.mkdir(exist_ok=True)
    cfg = workdir / "zoo.cfg"
    cfg.write_text(
        "tickTime=2000\n"
        f"dataDir={data_dir}\n"
        f"clientPort={port}\n"
        "clientPortAddress=127.0.0.1\n"
        "admin.enableServer=false\n"
        "4lw.commands.whitelist=ruok,srvr,mntr,stat\n"
        "maxClientCnxns=0\n"
    )
    log_path = workdir / "zookeeper.out"
    begin = time.monotonic()
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            ["java", *JVM_FLAGS, "-cp", ZOOKEEPER_JAR, MAIN_CLASS, str(cfg)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
        )
    server = ZkServer(
        hosts=f"127.0.0.1:{port}",
        port=port,
        pid=process.pid,
        workdir=workdir,
        started_s=0.0,
        process=process,
    )
    deadline = begin + ready_timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return None, f"exited with {process.returncode}; {_tail(log_path)}"
        try:
            if b"Mode: standalone" in four_letter(port, b"srvr"):
                server.started_s = time.monotonic() - begin
                return server, ""
        except OSError:
            pass  # not listening yet
        time.sleep(0.05)
    server.stop()
    return None, f"not ready after {ready_timeout_s} s on port {port}; {_tail(log_path)}"


def _tail(path: Path, limit: int = 2000) -> str:
    text = path.read_text(errors="replace")
    return f"log tail: {text[-limit:]!r}" if text else "no log output"
