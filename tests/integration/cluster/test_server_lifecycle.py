"""How a server process starts and stops, seen from outside: SIGTERM makes a replica server
flush and close every partition, empty its shared log and exit 0, so the next start replays
no mutation and repairs nothing; a bad config value stops a server at start with exit code
2 and a message naming the file, section, key, value and what is accepted.
"""

import asyncio
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.cluster import Cluster, http_get, running

from dupkv.client import Client
from dupkv.client.blocking import BlockingClient

PARTITIONS = 4
OPEN_TIMEOUT_S = 20.0
CONFIG_CHECK_TIMEOUT_S = 30.0
OPENED_RE = re.compile(r"opened partition \d+\.\d+ .* replayed (\d+) mutations")


def opened_since(log: str, marker: str) -> list[int]:
    """The replayed counts of the partitions opened after the last `marker` line."""
    return [int(m) for m in OPENED_RE.findall(log.rsplit(marker, 1)[-1])]


def slog_metrics(c: Cluster) -> dict[str, int]:
    doc = json.loads(http_get(c.replica_ports[0], "/metrics?types=server"))
    server = {m["name"]: m["value"] for m in doc["entities"][0]["metrics"]}
    return {name: server[name] for name in ("slog_files", "slog_write_rounds")}


async def set_many(meta: str, indexes: range) -> None:
    """hk<i> = v<i> for every index, 64 writes in flight."""
    client = await Client.connect(meta)
    try:
        table = await client.open_table("t")
        slots = asyncio.Semaphore(64)

        async def one(i: int) -> None:
            async with slots:
                await table.set(f"hk{i}".encode(), b"sk", f"v{i}".encode())

        await asyncio.gather(*(one(i) for i in indexes))
    finally:
        await client.close()


def test_sigterm_flushes_and_closes_so_a_restart_replays_nothing(tmp_path: Path) -> None:
    c = Cluster("lifecycle", tmp_path, replicas=1)
    with running(c), BlockingClient(c.meta_address) as client:
        client.create_table("t", partition_count=PARTITIONS)
        table = client.open_table("t")
        for i in range(100):
            table.set(f"hk{i}".encode(), b"sk", f"v{i}".encode())
        # One write at a time: each round is one group, which fsyncs its own plog.
        assert slog_metrics(c) == {"slog_files": 0, "slog_write_rounds": 0}
        asyncio.run(set_many(c.meta_address, range(100, 200)))
        # Many at a time on 4 partitions: rounds of several groups go through the slog.
        metrics = slog_metrics(c)
        assert metrics["slog_files"] == 1 and 0 < metrics["slog_write_rounds"] < 100

        code = c.replica_procs[0].stop(signal.SIGTERM)

        assert code == 0
        log = c.replica_procs[0].log()
        assert f"replica server 127.0.0.1:{c.replica_ports[0]} stopped" in log
        assert log.count("closed partition") == PARTITIONS
        assert "Traceback" not in log
        # The plogs were fsynced as their partitions closed: the shared log is left empty,
        # and the next start has nothing to repair.
        slog_dir = c.replica_data_dir(0) / "replica" / "slog"
        assert slog_dir.is_dir() and not list(slog_dir.glob("log.*"))

        c.restart_replica(0)
        deadline = time.monotonic() + OPEN_TIMEOUT_S
        replayed: list[int] = []
        while time.monotonic() < deadline:
            replayed = opened_since(c.replica_procs[0].log(), "replica server serving on")
            if len(replayed) == PARTITIONS:
                break
            time.sleep(0.1)
        assert replayed == [0] * PARTITIONS
        assert "shared log: " not in c.replica_procs[0].log()
        assert [table.get(f"hk{i}".encode(), b"sk") for i in range(200)] == [
            f"v{i}".encode() for i in range(200)
        ]


def config_text(data_dir: Path, section: str, key: str, value: str) -> str:
    sections = {
        "replication": {"cluster_name": "lifecycle", "data_dirs": str(data_dir)},
        "meta_server": {"server_list": "127.0.0.1:1"},
    }
    sections.setdefault(section, {})[key] = value
    return "".join(
        f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items())
        for name, keys in sections.items()
    )


BAD_VALUES = [
    ("replica", "replication", "max_allowed_write_size", "lots",
     "[replication] max_allowed_write_size = 'lots': expected an integer"),
    ("replica", "replication", "log_private_file_size_mb", "0",
     "[replication] log_private_file_size_mb = 0: must be >= 1"),
    ("replica", "replication", "plog_force_flush", "maybe",
     "[replication] plog_force_flush = 'maybe': expected true or false"),
    ("replica", "apps.replica", "ports", "70000",
     "[apps.replica] ports = 70000: must be <= 65535"),
    ("replica", "duplication-group", "lifecycle", "300",
     "[duplication-group] lifecycle = 300: cluster ids are 1..127"),
    ("meta", "meta_server", "meta_state_service_type", "etcd",
     "[meta_server] meta_state_service_type = 'etcd': accepted values are "
     "meta_state_service_simple, meta_state_service_zookeeper"),
    ("meta", "replication", "cluster_name", "",
     "[replication] cluster_name must be set"),
]


@pytest.mark.parametrize(
    ("role", "section", "key", "value", "expected"),
    BAD_VALUES,
    ids=[f"{role}-[{section}]-{key}" for role, section, key, _, _ in BAD_VALUES],
)
def test_a_bad_config_value_stops_the_server_at_start_with_a_clear_message(
    tmp_path: Path, role: str, section: str, key: str, value: str, expected: str
) -> None:
    bad = tmp_path / "bad.ini"
    bad.write_text(config_text(tmp_path / "data", section, key, value))

    proc = subprocess.run(
        [sys.executable, "-m", "dupkv.cli.main", role, "--config", str(bad)],
        capture_output=True,
        text=True,
        timeout=CONFIG_CHECK_TIMEOUT_S,
    )

    assert proc.returncode == 2, proc.stderr
    assert f"dupkv: bad configuration: {bad}: {expected}" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "data").exists()  # nothing was started or written
