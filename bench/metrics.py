"""Metrics benchmark: what one update costs on a hot path, and what one scrape costs.

    .venv/bin/python bench/metrics.py [--partitions 256] [--repeat 5]

Per-call figures are the best of `--repeat` timeit runs of 1M calls through a bound method
(as a hot path holds its metric), minus nothing: the "empty call" row is the floor a Python
call costs on this machine. "spread" observes a list of log-normal latencies (median
~200 us, in ns) instead of one constant, less the cost of the same loop calling an empty
function. Scrape figures build a replica server's registry (one entity per partition with
Pegasus's 11 data-path request counters and 11 latency percentiles, each window full) and
time a /metrics JSON document (built and serialized) and a Prometheus text, first after new
samples (quantiles recomputed) and again with nothing new (cached).
"""

import argparse
import json
import platform
import random
import sys
import time
import timeit
from collections.abc import Callable

from dupkv.metrics import Registry, Unit, parse_query, snapshot, to_prometheus

OPS = (
    "get",
    "multi_get",
    "batch_get",
    "scan",
    "put",
    "multi_put",
    "remove",
    "multi_remove",
    "incr",
    "check_and_set",
    "check_and_mutate",
)
CALLS = 1_000_000


def _per_call_ns(stmt: str, env: dict, repeat: int) -> float:
    return min(timeit.repeat(stmt, globals=env, number=CALLS, repeat=repeat)) / CALLS * 1e9


def hot_path(repeat: int) -> list[tuple[str, float]]:
    r = Registry("replica", "bench", "localhost", 34801)
    e = r.entity("replica", "replica@1.0", {"table_id": "1", "partition_id": "0"})
    counter = e.counter("get_requests", Unit.REQUESTS, "")
    gauge = e.gauge("dup_pending_mutations", Unit.MUTATIONS, "")
    full = e.percentile("get_latency_ns", Unit.NANOSECONDS, "")
    latencies = _latencies(100_000)
    for v in latencies[: full.window]:
        full.observe(v)

    def empty(v: int = 1) -> None:
        pass

    env = {
        "empty": empty,
        "inc": counter.inc,
        "gset": gauge.set,
        "ginc": gauge.inc,
        "obs_full": full.observe,
    }
    rows = [
        ("empty call (floor)", _per_call_ns("empty(12345)", env, repeat)),
        ("Counter.inc()", _per_call_ns("inc()", env, repeat)),
        ("Counter.inc(n)", _per_call_ns("inc(3)", env, repeat)),
        ("Gauge.set(v)", _per_call_ns("gset(12345)", env, repeat)),
        ("Gauge.inc()", _per_call_ns("ginc()", env, repeat)),
        ("Percentile.observe(constant)", _per_call_ns("obs_full(123456)", env, repeat)),
    ]

    def spread(fn: Callable[[int], None]) -> float:
        def loop() -> None:
            for v in latencies:
                fn(v)

        return min(timeit.repeat(loop, number=1, repeat=repeat)) / len(latencies) * 1e9

    rows.append(("Percentile.observe(spread)", spread(full.observe) - spread(empty)))
    quantiles_us = []
    for _ in range(repeat):
        full.observe(1)  # something new: the next call recomputes
        t0 = time.perf_counter()
        full.quantiles()
        quantiles_us.append((time.perf_counter() - t0) * 1e9)
    rows.append(("Percentile.quantiles(), recomputed", min(quantiles_us)))
    return rows


def _latencies(n: int) -> list[int]:
    rng = random.Random(1)
    return [int(rng.lognormvariate(12.2, 0.5)) for _ in range(n)]


def scrape(partitions: int) -> list[tuple[str, float]]:
    r = Registry("replica", "bench", "localhost", 34801)
    percentiles = []
    for pidx in range(partitions):
        e = r.entity("replica", f"replica@1.{pidx}", {"table_id": "1", "partition_id": str(pidx)})
        for op in OPS:
            e.counter(f"{op}_requests", Unit.REQUESTS, f"The number of {op} requests").inc(pidx)
            p = e.percentile(f"{op}_latency_ns", Unit.NANOSECONDS, f"The latency of {op}")
            percentiles.append(p)
    latencies = _latencies(4096)
    for p in percentiles:
        for v in latencies[: p.window]:
            p.observe(v)
    json_q, prom_q = parse_query({}), parse_query({"format": "prometheus"})
    rows = []

    def timed(name: str, fn: Callable[[], str]) -> None:
        t0 = time.perf_counter()
        out = fn()
        rows.append((f"{name} ({len(out) / 1e6:.1f} MB)", (time.perf_counter() - t0) * 1e3))

    timed("JSON, quantiles recomputed", lambda: json.dumps(snapshot(r, json_q, 0)))
    timed("JSON, quantiles cached", lambda: json.dumps(snapshot(r, json_q, 0)))
    for p in percentiles:
        p.observe(1)
    timed("Prometheus, quantiles recomputed", lambda: to_prometheus(r, prom_q))
    timed("Prometheus, quantiles cached", lambda: to_prometheus(r, prom_q))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--partitions", type=int, default=256, help="replica entities to scrape")
    ap.add_argument("--repeat", type=int, default=5, help="timeit repeats (best is kept)")
    args = ap.parse_args()
    print(f"python {sys.version.split()[0]} on {platform.machine()} {platform.processor()}")
    print(f"\n{'hot path, per call':<40} {'ns':>8}")
    for name, ns in hot_path(args.repeat):
        print(f"{name:<40} {ns:>8.0f}")
    n = args.partitions * len(OPS)
    print(f"\nscrape of {args.partitions} partitions ({n} counters + {n} percentiles)")
    print(f"{'':<40} {'ms':>8}")
    for name, ms in scrape(args.partitions):
        print(f"{name:<40} {ms:>8.1f}")


if __name__ == "__main__":
    main()
