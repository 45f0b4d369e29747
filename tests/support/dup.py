"""Two real clusters that know each other, and the checks duplication tests share."""

import asyncio
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dupkv.base.errors import ErrorCode
from dupkv.client.blocking import BlockingClient
from dupkv.client.types import ScanOptions
from dupkv.rpc.idl_meta import dup

from .cluster import Cluster, free_port, http_get

SOURCE, TARGET = "bjsrv-account", "tjsrv-account"


@contextmanager
def two_clusters(
    root: Path, replicas: int = 2, extra_config: str = ""
) -> Iterator[tuple[Cluster, Cluster]]:
    """Clusters A (id 1) and B (id 2), each listing the other in [pegasus.clusters]."""
    a_port, b_port = free_port(), free_port()
    a = Cluster(
        SOURCE,
        root / "a",
        replicas=replicas,
        cluster_id=1,
        meta_port=a_port,
        peers={TARGET: (f"127.0.0.1:{b_port}", 2)},
        extra_config=extra_config,
    )
    b = Cluster(
        TARGET,
        root / "b",
        replicas=replicas,
        cluster_id=2,
        meta_port=b_port,
        peers={SOURCE: (f"127.0.0.1:{a_port}", 1)},
        extra_config=extra_config,
    )
    try:
        a.start()
        b.start()
        yield a, b
    finally:
        a.stop()
        b.stop()


def add_dup(client: BlockingClient, app: str, remote: str) -> int:
    resp = client.meta_call(
        "RPC_CM_ADD_DUPLICATION",
        dup.duplication_add_request(
            app_name=app, remote_cluster_name=remote, is_duplicating_checkpoint=False
        ),
    )
    assert resp.err == ErrorCode.OK, (resp.err, resp.hint)
    return resp.dupid


def modify_dup(
    client: BlockingClient,
    app: str,
    dupid: int,
    status: int | None = None,
    fail_mode: int | None = None,
) -> str:
    resp = client.meta_call(
        "RPC_CM_MODIFY_DUPLICATION",
        dup.duplication_modify_request(
            app_name=app, dupid=dupid, status=status, fail_mode=fail_mode
        ),
    )
    return resp.err


def dump(client: BlockingClient, app: str) -> dict[tuple[bytes, bytes], bytes]:
    """Every live record of a table."""
    table = client.open_table(app)
    out: dict[tuple[bytes, bytes], bytes] = {}
    for scanner in table.get_unordered_scanners(16, ScanOptions(batch_size=1000)):
        for record in scanner:
            hash_key, sort_key, value = record
            out[(hash_key, sort_key)] = value
    return out


def wait_equal(
    a: BlockingClient,
    b: BlockingClient,
    app_a: str,
    app_b: str,
    timeout_s: float = 60.0,
    expected: dict[tuple[bytes, bytes], bytes] | None = None,
) -> dict[tuple[bytes, bytes], bytes]:
    """Wait until both tables hold the same records (and `expected`, if given)."""
    deadline = time.monotonic() + timeout_s
    while True:
        da, db = dump(a, app_a), dump(b, app_b)
        if da == db and (expected is None or da == expected):
            return da
        if time.monotonic() > deadline:
            missing = {k for k in da if k not in db}
            extra = {k for k in db if k not in da}
            differ = {k for k in da if k in db and da[k] != db[k]}
            raise AssertionError(
                f"tables differ after {timeout_s}s: {len(da)} vs {len(db)} records, "
                f"{len(missing)} missing at B (e.g. {sorted(missing)[:3]}), "
                f"{len(extra)} extra at B "
                f"(e.g. {sorted(extra)[:3]}), {len(differ)} with other values"
                + ("" if expected is None else f"; expected {len(expected)} records")
            )
        time.sleep(0.5)


def replica_dup_status(cluster: Cluster, app_id: int) -> dict[str, dict[str, Any]]:
    """/replica/duplication?appid= of every live replica server of a cluster, merged and
    regrouped as {pidx: {dupid: state}}."""
    merged: dict[str, dict[str, Any]] = {}
    for proc, port in zip(cluster.replica_procs, cluster.replica_ports, strict=True):
        if not proc.alive:
            continue
        try:
            body = json.loads(http_get(port, f"/replica/duplication?appid={app_id}"))
        except OSError:  # 404 (nothing of that table here) or the server is going away
            continue
        for dupid, parts in body.items():
            for gpid, state in parts.items():
                merged.setdefault(gpid.split(".")[1], {})[dupid] = state
    return merged


def metric_sum(cluster: Cluster, name: str, field: str = "value") -> float:
    total = 0.0
    for proc, port in zip(cluster.replica_procs, cluster.replica_ports, strict=True):
        if not proc.alive:
            continue
        doc = json.loads(http_get(port, f"/metrics?metrics={name}&detail=true"))
        for entity in doc["entities"]:
            for metric in entity["metrics"]:
                if metric["name"] == name:
                    total += metric.get(field, 0) or 0
    return total


def run(coro: Any) -> Any:
    return asyncio.run(coro)
