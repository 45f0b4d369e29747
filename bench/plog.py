"""Plog benchmark: append + fsync throughput with group commit (groups of 1, 10, 100 and 1000
records of ~150-byte payloads per append+sync), and the same with fsync=False.

    .venv/bin/python bench/plog.py [--seconds 2] [--dir /tmp/dupkv-bench]

Put --dir on the disk you care about: on tmpfs fsync costs nothing and the figures mean
little. `run()` is what bench/storage.py calls.
"""

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from dupkv.storage.plog import Plog

GROUPS = (1, 10, 100, 1000)


def _payloads() -> list[bytes]:
    # Mutation-sized (a put of a short key and a ~100-byte value), lengths 140..160, and
    # random bytes so nothing below us gets to compress or deduplicate them.
    return [os.urandom(140 + i % 21) for i in range(1000)]


def _measure(directory: Path, seconds: float, group: int, fsync: bool) -> dict:
    payloads = _payloads()
    latencies_ms: list[float] = []
    records = appends = written = 0
    decree = 1
    with Plog.open(directory, fsync=fsync) as p:
        start = time.perf_counter()
        elapsed = 0.0
        while elapsed < seconds:
            batch = [(decree + i, payloads[(decree + i) % len(payloads)]) for i in range(group)]
            t0 = time.perf_counter()
            written += p.append(batch)
            p.sync()
            t1 = time.perf_counter()
            if fsync:
                latencies_ms.append((t1 - t0) * 1000)
            decree += group
            records += group
            appends += 1
            elapsed = t1 - start
        segments = len(p.segments())
    row = {
        "name": f"append+sync, group {group}, fsync={'on' if fsync else 'off'}",
        "group": group,
        "fsync": fsync,
        "records_per_s": records / elapsed,
        "mb_per_s": written / elapsed / 1e6,
        "appends_per_s": appends / elapsed,
        "records": records,
        "segments": segments,
        "seconds": elapsed,
    }
    if latencies_ms:
        latencies_ms.sort()
        row["p50_ms"] = latencies_ms[len(latencies_ms) // 2]
        row["p99_ms"] = latencies_ms[min(len(latencies_ms) - 1, len(latencies_ms) * 99 // 100)]
    return row


def run(seconds: float, directory: str) -> list[dict]:
    """Each measurement runs `seconds` in a fresh plog under `directory` (removed after)."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for fsync in (True, False):
        for group in GROUPS:
            path = root / f"plog-g{group}-{'fsync' if fsync else 'nofsync'}"
            try:
                rows.append(_measure(path, seconds, group, fsync))
            finally:
                shutil.rmtree(path, ignore_errors=True)
    return rows


def print_table(rows: list[dict]) -> None:
    print(
        f"{'group':>6} {'fsync':>6} {'records/s':>12} {'MB/s':>8} {'appends/s':>10} "
        f"{'p50 ms':>7} {'p99 ms':>7}"
    )
    for r in rows:
        p50 = f"{r['p50_ms']:7.2f}" if "p50_ms" in r else f"{'-':>7}"
        p99 = f"{r['p99_ms']:7.2f}" if "p99_ms" in r else f"{'-':>7}"
        print(
            f"{r['group']:>6} {'on' if r['fsync'] else 'off':>6} {r['records_per_s']:>12,.0f} "
            f"{r['mb_per_s']:>8.1f} {r['appends_per_s']:>10,.0f} {p50} {p99}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="duration of each measurement")
    ap.add_argument("--dir", default=None, help="scratch directory (default: a temp dir)")
    args = ap.parse_args()
    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="dupkv-plog-bench-"))
    try:
        print(f"plog append+sync, ~150-byte payloads, {args.seconds:g} s each, in {root}")
        print_table(run(args.seconds, str(root)))
    finally:
        if not args.dir:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
