"""Client benchmark: set and get throughput and latency through our asyncio client against
one replica server of a cluster this script starts (a meta server and one replica server
as processes on 127.0.0.1, a table of --partitions partitions, 100-byte values), with 1
and 64 requests in flight. Prints a table and writes bench/results/client.json.

    .venv/bin/python bench/client.py [--seconds 5] [--partitions 4] [--dir /tmp/x]
    make bench-client

Goals (for the record, not asserts): >= 20k sets/s and >= 30k gets/s with 64 in flight.
The client runs in this process (one event loop), the servers in their own; on a 2-core
machine the client and the replica server each take about one core.
"""

import argparse
import array
import asyncio
import json
import random
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from hdrh.histogram import HdrHistogram

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(0, str(BENCH_DIR.parent / "tests"))

from harness import cpu_seconds  # noqa: E402  (bench/harness.py)
from storage import machine  # noqa: E402  (bench/storage.py)
from support.cluster import Cluster, running  # noqa: E402

from dupkv.client import Client, Table  # noqa: E402

TABLE = "bench"
VALUE_BYTES = 100
IN_FLIGHT = (1, 64)
WARMUP_S = 1.0
LATENCY_MAX_US = 60_000_000  # histogram range: 1 us .. 60 s, 3 significant digits
GOALS = {("set", 64): 20_000, ("get", 64): 30_000}
RESULTS = BENCH_DIR / "results" / "client.json"


@dataclass
class Result:
    op: str
    in_flight: int
    ops: int
    seconds: float
    hist: HdrHistogram
    client_cpu_us: float = 0.0  # CPU per request of this process (the client)
    server_cpu_us: float = 0.0  # CPU per request of the replica server (0: not measured)

    @property
    def ops_per_s(self) -> float:
        return self.ops / self.seconds

    def ms(self, percentile: float) -> float:
        return self.hist.get_value_at_percentile(percentile) / 1000

    def as_json(self) -> dict:
        return {
            "op": self.op,
            "in_flight": self.in_flight,
            "ops": self.ops,
            "seconds": round(self.seconds, 3),
            "ops_per_s": round(self.ops_per_s),
            "p50_ms": self.ms(50),
            "p99_ms": self.ms(99),
            "p999_ms": self.ms(99.9),
            "max_ms": self.hist.get_max_value() / 1000,
            "client_cpu_us": round(self.client_cpu_us, 1),
            "server_cpu_us": round(self.server_cpu_us, 1),
        }


def key(i: int) -> tuple[bytes, bytes]:
    return b"user%08d" % i, b"field"


async def run_op(
    table: Table,
    op: str,
    in_flight: int,
    seconds: float,
    key_space: int,
    value: bytes,
    server_pid: int | None = None,
) -> Result:
    """`in_flight` workers each loop one request at a time for `seconds`; sets write keys
    0.. in order (so the gets that follow find them), gets read random written keys."""
    hist = HdrHistogram(1, LATENCY_MAX_US, 3)
    # Latencies go to an array and into the histogram after the run: recording each costs
    # ~1.3 us, which the client's CPU per request would otherwise count.
    latencies_us = array.array("q")
    counter = iter(range(10**12))
    rng = random.Random(42)
    loop = asyncio.get_running_loop()
    stop_at = 0.0
    done = 0

    async def worker() -> None:
        nonlocal done
        while loop.time() < stop_at:
            if op == "set":
                hk, sk = key(next(counter) % key_space)
                t0 = time.perf_counter_ns()
                await table.set(hk, sk, value)
            else:
                hk, sk = key(rng.randrange(key_space))
                t0 = time.perf_counter_ns()
                got = await table.get(hk, sk)
                assert got == value, f"get {hk!r} returned {got!r}"
            latencies_us.append((time.perf_counter_ns() - t0) // 1000)
            done += 1

    stop_at = loop.time() + WARMUP_S  # connections, caches, the event loop's first laps
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    del latencies_us[:]
    done = 0
    start = loop.time()
    cpu0 = (time.process_time(), cpu_seconds(server_pid) if server_pid else 0.0)
    stop_at = start + seconds
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    elapsed = loop.time() - start
    client_cpu = time.process_time() - cpu0[0]
    server_cpu = cpu_seconds(server_pid) - cpu0[1] if server_pid else 0.0
    for us in latencies_us:
        hist.record_value(max(1, us))
    n = max(done, 1)
    return Result(op, in_flight, done, elapsed, hist, client_cpu / n * 1e6, server_cpu / n * 1e6)


async def bench(meta: str, seconds: float, key_space: int, server_pid: int) -> list[Result]:
    value = bytes(random.Random(7).getrandbits(8) for _ in range(VALUE_BYTES))
    client = await Client.connect(meta)
    try:
        table = await client.open_table(TABLE)
        # Write the whole key space first so every get finds its key.
        slots = asyncio.Semaphore(64)

        async def fill(i: int) -> None:
            async with slots:
                await table.set(*key(i), value)

        await asyncio.gather(*(fill(i) for i in range(key_space)))
        results = []
        for in_flight in IN_FLIGHT:
            for op in ("set", "get"):
                r = await run_op(table, op, in_flight, seconds, key_space, value, server_pid)
                print(f"  {op} x{in_flight}: {r.ops_per_s:,.0f}/s", flush=True)
                results.append(r)
        return results
    finally:
        await client.close()


def print_table(results: list[Result]) -> None:
    print(
        f"\n{'op':<5} {'in flight':>9} {'ops/s':>10} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'client CPU us':>13} {'server CPU us':>13} {'goal':>12}"
    )
    for r in results:
        goal = GOALS.get((r.op, r.in_flight))
        mark = "" if goal is None else f">= {goal:,}" + (" ok" if r.ops_per_s >= goal else " MISS")
        print(
            f"{r.op:<5} {r.in_flight:>9} {r.ops_per_s:>10,.0f} {r.ms(50):>8.3f} "
            f"{r.ms(99):>8.3f} {r.client_cpu_us:>13.1f} {r.server_cpu_us:>13.1f} {mark:>12}"
        )


def run(root: Path, seconds: float, partitions: int, key_space: int) -> list[Result]:
    """Start a one-replica-server cluster under `root`, create the table, run every row,
    stop the cluster (by PID); bench/suite.py's client scenario calls this too."""
    cluster = Cluster("bench", root / "cluster", replicas=1)
    with running(cluster):
        admin_start = time.perf_counter()

        async def create() -> None:
            client = await Client.connect(cluster.meta_address)
            try:
                await client.create_table(TABLE, partitions)
            finally:
                await client.close()

        asyncio.run(create())
        print(
            f"cluster up: meta {cluster.meta_address}, replica server "
            f"127.0.0.1:{cluster.replica_ports[0]}, table {TABLE} with "
            f"{partitions} partitions (created in "
            f"{time.perf_counter() - admin_start:.2f} s); {seconds:g} s per row"
        )
        server = cluster.replica_procs[0].proc
        assert server is not None
        return asyncio.run(bench(cluster.meta_address, seconds, key_space, server.pid))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="measured time per row")
    ap.add_argument("--partitions", type=int, default=4, help="partitions of the table")
    ap.add_argument("--keys", type=int, default=20_000, help="key space (written first)")
    ap.add_argument("--dir", help="data folder (default: a temp folder, deleted after)")
    ap.add_argument("--no-save", action="store_true", help="do not write client.json")
    args = ap.parse_args()

    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="dupkv-bench-client-"))
    try:
        results = run(root, args.seconds, args.partitions, args.keys)
    finally:
        if not args.dir:
            shutil.rmtree(root, ignore_errors=True)

    print_table(results)
    report = {
        "machine": machine(),
        "config": {
            "partitions": args.partitions,
            "replica_servers": 1,
            "value_bytes": VALUE_BYTES,
            "key_space": args.keys,
            "seconds_per_row": args.seconds,
            "client": "dupkv.client.Client (asyncio), one connection per server",
        },
        "results": [r.as_json() for r in results],
    }
    if not args.no_save:
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nwrote {RESULTS.relative_to(BENCH_DIR.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
