"""`dupkv onebox start|status|stop|clean` as a user runs it, on ports moved away from the
defaults (DUPKV_ONEBOX_BASE_PORT, below the kernel's ephemeral range so no other test's
free port collides) and in a temp folder: two clusters of one meta and three replica
servers start, report themselves, refuse a second start and a taken port, and stop by
the PIDs they recorded.
"""

import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from dupkv.cli.onebox import Onebox, Server, layout_for, layout_to_json, pid_alive

COMMAND_TIMEOUT_S = 90.0  # start waits up to 60 s itself
BASE_PORT_RANGE = (20000, 30000)  # all 8 ports stay below 32768
SLEEP = "import time; time.sleep(60)"
IGNORE_SIGTERM = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
)


def all_free(base: int) -> bool:
    for cluster in layout_for(base):
        for server in cluster.servers():
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", server.port))
                except OSError:
                    return False
    return True


def free_base_port() -> int:
    rng = random.Random()
    for _ in range(50):
        base = rng.randrange(*BASE_PORT_RANGE)
        if all_free(base):
            return base
    raise RuntimeError(f"no base port in {BASE_PORT_RANGE} with 8 free ports")


def onebox(folder: Path, action: str, base: int) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DUPKV_ONEBOX_BASE_PORT": str(base)}
    return subprocess.run(
        [sys.executable, "-m", "dupkv.cli.main", "onebox", action, "--dir", str(folder)],
        capture_output=True,
        text=True,
        env=env,
        timeout=COMMAND_TIMEOUT_S,
    )


@pytest.fixture
def box(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """A onebox folder and base port; whatever the test started is stopped by PID."""
    folder, base = tmp_path / "onebox", free_base_port()
    try:
        yield folder, base
    finally:
        if (folder / "onebox.json").exists():
            onebox(folder, "stop", base)


def recorded_pids(folder: Path) -> dict[str, int]:
    return {
        f"{p.parent.name}/{p.stem}": int(p.read_text())
        for p in sorted(folder.glob("*/*.pid"))
    }


def test_start_status_stop_clean(box: tuple[Path, int]) -> None:
    folder, base = box
    bj, tj = layout_for(base)

    started = onebox(folder, "start", base)

    assert started.returncode == 0, started.stdout + started.stderr
    assert f"bjsrv-account (cluster id 1): meta 127.0.0.1:{base}," in started.stdout
    assert f"tjsrv-account (cluster id 2): meta 127.0.0.1:{base + 1000}," in started.stdout
    assert f"shell --meta 127.0.0.1:{base}" in started.stdout
    assert f"onebox stop --dir {folder}" in started.stdout
    pids = recorded_pids(folder)
    assert sorted(pids) == [
        f"{c}/{r}"
        for c in ("bjsrv-account", "tjsrv-account")
        for r in ("meta1", "replica1", "replica2", "replica3")
    ]
    assert all(pid_alive(pid) for pid in pids.values())
    for cluster in (bj, tj):
        nodes = json.loads(
            urllib.request.urlopen(f"http://{cluster.meta_address}/meta/nodes", timeout=5).read()
        )
        assert nodes["summary"]["alive_node_count"] == "3"
        config = (folder / cluster.name / "config.ini").read_text()
        assert f"cluster_name = {cluster.name}\n" in config
        assert f"server_list = {cluster.meta_address}\n" in config
        assert f"[apps.meta]\nports = {cluster.meta_port}\n" in config
        assert f"[pegasus.clusters]\nbjsrv-account = {bj.meta_address}\n" in config
        assert f"tjsrv-account = {tj.meta_address}\n" in config
        assert "[duplication-group]\nbjsrv-account = 1\ntjsrv-account = 2\n" in config
        assert (folder / cluster.name / "replica2.log").exists()

    status = onebox(folder, "status", base)
    assert status.returncode == 0, status.stdout + status.stderr
    for name, pid in pids.items():
        cluster, role = name.split("/")
        assert re.search(rf"{cluster}\s+{role}\s+{pid}\s+127\.0\.0\.1:\d+\s+alive", status.stdout)
    assert status.stdout.count("total 3, alive 3, unalive 0") == 2

    again = onebox(folder, "start", base)
    assert again.returncode == 1
    assert "already running" in again.stderr
    assert recorded_pids(folder) == pids  # nothing new was started

    stopped = onebox(folder, "stop", base)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert "stopped 8 of 8" in stopped.stdout
    assert not any(pid_alive(pid) for pid in pids.values())
    assert recorded_pids(folder) == {}
    for cluster in (bj, tj):
        assert "stopped" in (folder / cluster.name / "replica1.log").read_text()

    dead = onebox(folder, "status", base)
    assert dead.returncode == 1
    assert dead.stdout.count(" dead") == 8

    cleaned = onebox(folder, "clean", base)
    assert cleaned.returncode == 0, cleaned.stdout + cleaned.stderr
    assert not folder.exists()


def test_start_refuses_when_a_port_is_taken(box: tuple[Path, int]) -> None:
    folder, base = box
    taken = layout_for(base)[1].replica_ports[2]
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", taken))
        holder.listen()

        result = onebox(folder, "start", base)

    assert result.returncode == 1
    assert f"port(s) {taken} (tjsrv-account replica3) already in use" in result.stderr
    assert "DUPKV_ONEBOX_BASE_PORT" in result.stderr
    assert recorded_pids(folder) == {}  # nothing was started


def fake_onebox(folder: Path, argv: list[str]) -> tuple[subprocess.Popen[bytes], Server]:
    """A onebox folder whose bjsrv-account meta1 PID file names a process running `argv`."""
    box = Onebox(folder)
    layout = layout_for(free_base_port())
    folder.mkdir()
    box.state_path.write_text(layout_to_json(layout))
    server = layout[0].servers()[0]
    box.cluster_dir(server.cluster).mkdir()
    proc = subprocess.Popen(argv + [str(box.config_path(server.cluster))])
    box.pid_path(server).write_text(f"{proc.pid}\n")
    return proc, server


def stop_command(folder: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dupkv.cli.main", "onebox", "stop", "--dir", str(folder)],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=COMMAND_TIMEOUT_S,
    )


def test_stop_signals_only_processes_it_started(tmp_path: Path) -> None:
    """A PID file naming some other process (a stale file, a reused PID) is not signalled."""
    stranger, _ = fake_onebox(tmp_path / "onebox", [sys.executable, "-c", SLEEP])
    try:
        result = stop_command(tmp_path / "onebox")

        assert result.returncode == 0
        assert "was not running" in result.stdout
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait(timeout=10)


def wait_ignores_sigterm(pid: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("SigIgn:") and int(line.split()[1], 16) >> (signal.SIGTERM - 1) & 1:
                return
        time.sleep(0.01)
    raise TimeoutError(f"process {pid} does not ignore SIGTERM after {timeout_s} s")


def test_stop_kills_a_server_that_ignores_sigterm(tmp_path: Path) -> None:
    # Looks like a onebox meta server to `stop` (same argv words), but ignores SIGTERM.
    stubborn, server = fake_onebox(
        tmp_path / "onebox",
        [sys.executable, "-c", IGNORE_SIGTERM, "dupkv.cli.main", "meta", "--config"],
    )
    try:
        wait_ignores_sigterm(stubborn.pid)
        result = stop_command(tmp_path / "onebox", DUPKV_ONEBOX_STOP_TIMEOUT_S="1")

        assert result.returncode == 0, result.stdout + result.stderr
        assert "stopped 1 of 1" in result.stdout
        assert f"{server.cluster} meta1 ignored SIGTERM for 1 s and was killed" in result.stdout
        assert stubborn.wait(timeout=10) == -signal.SIGKILL
    finally:
        stubborn.kill()
        stubborn.wait(timeout=10)


def test_clean_leaves_a_folder_that_is_not_a_onebox_alone(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    result = subprocess.run(
        [sys.executable, "-m", "dupkv.cli.main", "onebox", "clean", "--dir", str(tmp_path)],
        capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S,
    )
    assert result.returncode == 2
    assert "not a onebox folder" in result.stderr
    assert (tmp_path / "precious.txt").read_text() == "keep me"
