"""Storage benchmark: puts and gets through one partition's write/read path, plog
append+fsync with group commit, and group commits of several partitions with and without
the replica server's shared log. Prints a table and writes bench/results/storage.json.

    .venv/bin/python bench/storage.py [--seconds 3] [--dir /tmp/dupkv-bench]

Goals (issue "storage core"): >= 50k puts/s with group commit, >= 100k gets/s.
"""

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loops import closed_loop  # noqa: E402  (bench/loops.py)

from dupkv.replica.partition import Partition, PartitionOptions, WriteOp  # noqa: E402
from dupkv.replica.writer import GroupCommitWriter, SharedLogPersist, SyncThread  # noqa: E402
from dupkv.rpc.thrift import rrdb, serialize  # noqa: E402
from dupkv.storage import schema  # noqa: E402
from dupkv.storage.mutation import TaskCode  # noqa: E402
from dupkv.storage.slog import SharedLog  # noqa: E402

VALUE = b"x" * 100


def put_op(i: int) -> WriteOp:
    req = rrdb.update_request(
        key=schema.encode_key(b"hk%010d" % i, b"sk%06d" % (i % 1000)),
        value=VALUE,
        expire_ts_seconds=0,
    )
    return WriteOp(TaskCode.PUT, req, serialize(req))


def timed(seconds: float, step) -> tuple[int, float]:
    """Run `step()` (which returns how many ops it did) until `seconds` pass."""
    done = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        done += step()
    return done, time.perf_counter() - start


def bench_single_put(path: Path, seconds: float, fsync: bool) -> dict:
    p = Partition(path, PartitionOptions(plog_force_flush=fsync))
    counter = iter(range(10**9))
    try:
        n, dt = timed(seconds, lambda: len(p.write([put_op(next(counter))])))
    finally:
        p.close()
    return {"name": f"put, one per group, fsync={'on' if fsync else 'off'}", "ops_per_s": n / dt}


def bench_batched_put(path: Path, seconds: float, batch: int) -> dict:
    p = Partition(path, PartitionOptions())
    n_groups = int(seconds * 400)  # enough for 400k puts/s
    groups = iter([[put_op(i * batch + j) for j in range(batch)] for i in range(n_groups)])
    try:
        n, dt = timed(seconds, lambda: len(p.write(next(groups))))
    finally:
        p.close()
    return {"name": f"put, groups of {batch} (write() call), fsync=on", "ops_per_s": n / dt}


async def _group_commit(path: Path, seconds: float, concurrency: int) -> dict:
    p = Partition(path, PartitionOptions())
    writer = GroupCommitWriter(p, max_group_ops=1000)
    writer.start()
    # Requests are decoded before they reach the partition; build them outside the clock.
    it = iter([put_op(i) for i in range(int(seconds * 200_000))])
    done, dt = await closed_loop(concurrency, seconds, lambda _: writer.write(next(it)))
    await writer.close()
    p.close()
    return {
        "name": f"put, group commit, {concurrency} writers, fsync=on",
        "ops_per_s": done / dt,
        "mean_group": writer.ops / max(writer.groups, 1),
    }


async def _partitions_commit(
    path: Path, seconds: float, partitions: int, concurrency: int, shared: bool
) -> dict:
    """`concurrency` writers spread over `partitions` partitions whose group commits run on
    one SyncThread, as on a replica server: each fsyncing its own plog, or all through a
    shared log (one fsync per round)."""
    sync = SyncThread("fsync")
    slog = None
    if shared:
        slog = SharedLog.open(path / "slog", segment_bytes=16 << 20, file_count_limit=4)
    persist = SharedLogPersist(slog) if slog is not None else None
    parts = [
        Partition(path / f"p{k}", PartitionOptions(app_id=1, partition_index=k))
        for k in range(partitions)
    ]
    writers = [GroupCommitWriter(p, max_group_ops=1000, sync=sync, shared=persist) for p in parts]
    for w in writers:
        w.start()
    it = iter([put_op(i) for i in range(int(seconds * 100_000))])
    done, dt = await closed_loop(
        concurrency, seconds, lambda k: writers[k % partitions].write(next(it))
    )
    for w in writers:
        await w.close()
    for p in parts:
        if slog is not None:
            await sync.run(slog.forget, p.plog)
        p.close()
    if slog is not None:
        await sync.run(lambda _: slog.close(), None)
    await sync.stop()
    how = "shared log" if shared else "own plog fsync each"
    return {
        "name": f"put, {concurrency} writers on {partitions} partitions, {how}",
        "ops_per_s": done / dt,
        "mean_group": sum(w.ops for w in writers) / max(sum(w.groups for w in writers), 1),
    }


def bench_get(path: Path, seconds: float, keys: int) -> dict:
    p = Partition(path, PartitionOptions())
    try:
        for start in range(0, keys, 1000):
            p.write([put_op(i) for i in range(start, min(start + 1000, keys))])
        p.flush()
        rng = random.Random(1)
        encoded = [
            schema.encode_key(b"hk%010d" % i, b"sk%06d" % (i % 1000))
            for i in (rng.randrange(keys) for _ in range(200_000))
        ]
        it = iter(encoded * 50)

        def step() -> int:
            for _ in range(1000):
                r = p.get(next(it))
                assert r.error == 0
            return 1000

        n, dt = timed(seconds, step)
    finally:
        p.close()
    return {"name": f"get, random over {keys} keys", "ops_per_s": n / dt}


def python_loop_s(steps: int = 10_000_000) -> float:
    """Seconds for a bare Python loop of `steps` additions: how fast this VM's CPU is right
    now (it varies by 1.5x or more from hour to hour), to compare runs by."""
    t0 = time.perf_counter()
    total = 0
    for i in range(steps):
        total += i
    return round(time.perf_counter() - t0, 3)


def round_trip_us(n: int = 2000) -> float:
    """Mean µs for a 32-byte message to go to another process and back over a socketpair:
    the VM's speed at waking processes, which RPC figures follow more than the loop's."""
    a, b = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        try:
            a.close()
            for _ in range(n):
                b.sendall(b.recv(64))
        finally:
            os._exit(0)
    b.close()
    message = b"x" * 32
    try:
        t0 = time.perf_counter()
        for _ in range(n):
            a.sendall(message)
            a.recv(64)
        return round((time.perf_counter() - t0) / n * 1e6, 1)
    finally:
        a.close()
        os.waitpid(pid, 0)


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
        "commit": commit,
        "python_loop_10m_s": python_loop_s(),
        "process_round_trip_us": round_trip_us(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="duration of each measurement")
    ap.add_argument("--dir", default=None, help="scratch directory (default: a temp dir)")
    ap.add_argument("--keys", type=int, default=200_000, help="keys loaded for the get test")
    args = ap.parse_args()
    root = Path(args.dir or tempfile.mkdtemp(prefix="dupkv-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        results.append(bench_single_put(root / "single", args.seconds, fsync=True))
        results.append(bench_single_put(root / "single-nofsync", args.seconds, fsync=False))
        results.append(bench_batched_put(root / "batched", args.seconds, 1000))
        results.append(asyncio.run(_group_commit(root / "group", args.seconds, 256)))
        results.append(asyncio.run(_group_commit(root / "group1k", args.seconds, 1024)))
        for partitions in (1, 4, 16):
            for shared in (False, True):
                where = root / f"parts{partitions}{'s' if shared else ''}"
                results.append(
                    asyncio.run(_partitions_commit(where, args.seconds, partitions, 64, shared))
                )
        results.append(bench_get(root / "get", args.seconds, args.keys))
        import plog as plog_bench  # bench/plog.py

        for row in plog_bench.run(args.seconds, str(root / "plog")):
            results.append({"name": f"plog: {row.pop('name')}", **row})
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"{'measurement':<58} {'ops/s':>12}")
    for r in results:
        ops = r.get("ops_per_s") or r.get("records_per_s") or 0
        extra = f"  (mean group {r['mean_group']:.0f})" if "mean_group" in r else ""
        print(f"{r['name']:<58} {ops:>12,.0f}{extra}")
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    (out / "storage.json").write_text(
        json.dumps({"machine": machine(), "results": results}, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
