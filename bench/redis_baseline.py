"""The peer baseline: Debian's redis-server as master + replica on 127.0.0.1, measured in the
same run as dupkv (shared/reference/environment.md §6).

- Burst: N SETs of 100-byte values through `redis-cli --pipe` (it returns once every reply
  is read, i.e. at the last ack); then the replica's DBSIZE is polled in a tight loop until
  it holds all N. The figure is the time from the last ack to the first poll that saw them.
- Throughput: `redis-benchmark --csv -t set,get -d 100` with 1 and 64 connections.

Servers run with `--save '' --appendonly no --repl-diskless-sync-delay 0` on free ports and
are stopped by PID. `ensure_installed()` installs redis-server and redis-tools with apt-get
when they are missing (running `apt-get update` first if the install fails).
"""

import csv
import io
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from harness import READY_TIMEOUT_S, stop_pid  # bench/harness.py
from support.cluster import free_port, wait_port

TOOLS = ("redis-server", "redis-cli", "redis-benchmark")
APT_TIMEOUT_S = 600


def ensure_installed() -> str | None:
    """None when the tools are there (installing them if needed), else why they are not."""
    if all(shutil.which(t) for t in TOOLS):
        return None
    install = ["apt-get", "install", "-y", "-q", "redis-server", "redis-tools"]
    env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    try:
        done = subprocess.run(install, capture_output=True, env=env, timeout=APT_TIMEOUT_S)
        if done.returncode != 0:
            subprocess.run(
                ["apt-get", "update", "-q"], capture_output=True, env=env, timeout=APT_TIMEOUT_S
            )
            done = subprocess.run(install, capture_output=True, env=env, timeout=APT_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"cannot run apt-get: {e}"
    if all(shutil.which(t) for t in TOOLS):
        return None
    return (
        "apt-get install redis-server redis-tools failed: "
        + done.stderr.decode(errors="replace").strip()[-300:]
    )


def version() -> str:
    out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True, timeout=10)
    return out.stdout.strip()


class Resp:
    """A minimal RESP connection for the few commands the baseline sends."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buf = b""

    def close(self) -> None:
        self.sock.close()

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def call(self, *args: str) -> Any:
        out = b"*%d\r\n" % len(args) + b"".join(
            b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode()) for a in args
        )
        self.sock.sendall(out)
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b":":
            return int(rest)
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("redis closed the connection")
                self.buf += chunk
            data, self.buf = self.buf[:n], self.buf[n + 2 :]
            return data.decode(errors="replace")
        raise RuntimeError(f"unexpected reply {line!r}")


class RedisPair:
    """A master and a replica, each `redis-server` process started and stopped by PID."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ports = (free_port(), free_port())
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        master, replica = self.ports
        for i, port in enumerate(self.ports):
            d = self.root / ("master" if i == 0 else "replica")
            d.mkdir(parents=True, exist_ok=True)
            args = [
                "redis-server",
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--repl-diskless-sync-delay",
                "0",
                "--dir",
                str(d),
                "--logfile",
                str(d / "redis.log"),
            ]
            if i == 1:
                args += ["--replicaof", "127.0.0.1", str(master)]
            proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.procs.append(proc)
            wait_port(port, proc=proc)
        # With diskless sync the master puts the replica online (and starts streaming to it)
        # only at the replica's first REPLCONF ACK, up to a second after the link is up; a
        # burst sent before then waits that long. Wait for "online" and one acked write.
        m = Resp(master)
        try:
            deadline = time.monotonic() + READY_TIMEOUT_S
            while "state=online" not in m.call("INFO", "replication"):
                if time.monotonic() > deadline:
                    raise TimeoutError("the redis replica did not come online")
                time.sleep(0.05)
            m.call("SET", "warmup", "1")
            if m.call("WAIT", "1", "5000") != 1:
                raise TimeoutError("the redis replica did not acknowledge a write")
        finally:
            m.close()

    def stop(self) -> None:
        for proc in self.procs:
            stop_pid(proc)
        self.procs = []


def _burst_file(path: Path, n: int, value_bytes: int, prefix: bytes) -> None:
    value = b"v" * value_bytes
    with open(path, "wb") as f:
        for i in range(n):
            key = prefix + b"%09d" % i
            f.write(
                b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n"
                % (len(key), key, len(value), value)
            )


def burst(
    pair: RedisPair, n: int, value_bytes: int, timeout_s: float, prefix: bytes = b"burst:"
) -> dict[str, Any]:
    """N new keys (`prefix` must not have been used before on this pair)."""
    master, replica = pair.ports
    path = pair.root / "burst.resp"
    _burst_file(path, n, value_bytes, prefix)
    r = Resp(replica)
    try:
        before = r.call("DBSIZE")
        with open(path, "rb") as f:
            t0 = time.monotonic()
            done = subprocess.run(
                ["redis-cli", "-p", str(master), "--pipe"],
                stdin=f,
                capture_output=True,
                timeout=timeout_s,
            )
            t_last_ack = time.monotonic()
        if done.returncode != 0:
            raise RuntimeError(f"redis-cli --pipe failed: {done.stderr.decode()[-300:]}")
        polls = 0
        deadline = t_last_ack + timeout_s
        while True:
            size = r.call("DBSIZE")
            polls += 1
            if size >= before + n:
                t_seen = time.monotonic()
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"redis replica has {size - before} of {n} keys")
    finally:
        r.close()
    return {
        "writes": n,
        "write_seconds": round(t_last_ack - t0, 4),
        "write_rate": round(n / (t_last_ack - t0)),
        "last_ack_to_visible_ms": round((t_seen - t_last_ack) * 1000, 3),
        "polls": polls,
    }


def benchmark(pair: RedisPair, clients: int, requests: int, value_bytes: int) -> list[dict]:
    """redis-benchmark's SET and GET rows at `clients` connections."""
    master = pair.ports[0]
    out = subprocess.run(
        [
            "redis-benchmark",
            "-h",
            "127.0.0.1",
            "-p",
            str(master),
            "-t",
            "set,get",
            "-n",
            str(requests),
            "-d",
            str(value_bytes),
            "-c",
            str(clients),
            "--csv",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if out.returncode != 0:
        raise RuntimeError(f"redis-benchmark failed: {out.stderr[-300:]}")
    rows = []
    for row in csv.DictReader(io.StringIO(out.stdout)):
        rows.append(
            {
                "op": row["test"].lower(),
                "in_flight": clients,
                "ops_per_s": round(float(row["rps"])),
                "p50_ms": float(row["p50_latency_ms"]),
                "p99_ms": float(row["p99_latency_ms"]),
                "max_ms": float(row["max_latency_ms"]),
            }
        )
    return rows
