"""The duplication benchmark suite (issue 5, "Benchmarks that tell the truth"): seven
scenarios, each on clusters of its own that it starts and stops (by PID), with Redis master +
replica as the peer baseline in the same run. Writes bench/results/<scenario>.json, the lag
plots, and the generated section of BENCHMARKS.md.

    .venv/bin/python bench/suite.py                 # everything (make bench), ~20 min
    .venv/bin/python bench/suite.py --smoke --out /tmp/x   # seconds per scenario (make bench-smoke)
    .venv/bin/python bench/suite.py --only burst,apply

Scenarios (two clusters of one replica server each, tables of 4 partitions on both sides,
100-byte values unless said):

1. steady_lag: the largest closed-loop source write rate, then open-loop writes at 25%, 50%
   and 75% of it; lag per write from the source's ack to visibility at the remote, measured
   by probes (bench/harness.py says how), next to the servers' own `dup.time_lag_ms`.
2. burst: 100k writes as fast as they go (128 in flight); time from the last ack until the
   source reports every write shipped and the last writes are readable at the remote.
3. apply: pause the duplication, write N, resume, time the drain (100 B and 1 KB values);
   and, to tell the follower from the shipper, DUPLICATE RPCs driven straight at the
   follower by this process (batches of 4 KB, 8 in flight per partition, as the shipper).
4. wan: 2 and 3's drain through bench/delay_proxy.py with 30 ms each way; ratios to loopback.
5. catchup: 30% load; pause the duplication 60 s; resume; time to drain and drain rate over
   write rate.
6. overhead: closed-loop source write throughput on a duplicated table and on a plain one.
7. client: bench/client.py's set/get rows (1 and 64 in flight) and redis-benchmark's.

Everything runs on one machine: the source, the remote, the load and the reader share its
cores, which the figures include (on a 2-core machine, a lot).
"""

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import client as client_bench  # bench/client.py
import harness as h  # bench/harness.py (puts bench/ and tests/ on sys.path)
import redis_baseline as rb  # bench/redis_baseline.py
from harness import PARTITIONS, SORT_KEY, TABLE, DupTable, Pair

from dupkv.base.crc64 import key_hash
from dupkv.base.errors import ErrorCode
from dupkv.client import Client, Table
from dupkv.client.ops import put_request
from dupkv.client.routing import route_from_query_cfg
from dupkv.duplication.pipeline import Entry
from dupkv.duplication.status import DupStatus
from dupkv.duplication.wire import encode_duplicate_args
from dupkv.rpc.client import ConnectionPool
from dupkv.rpc.idl_meta import dup, meta
from dupkv.rpc.thrift import serialize
from dupkv.storage.mutation import TaskCode

SCENARIOS = ("steady_lag", "burst", "apply", "wan", "catchup", "overhead", "client")
RESULTS = h.BENCH_DIR / "results"
BENCHMARKS_MD = h.REPO / "BENCHMARKS.md"
WAN_DELAY_MS = 30.0
LAG_GOAL_MS = 150.0
APPLY_GOAL = 80_000
WAN_THROUGHPUT_GOAL = 0.8
CATCHUP_GOAL = 1.2
OVERHEAD_GOAL = 0.9
CLOSED_LOOP_IN_FLIGHT = (64, 128)
BURST_IN_FLIGHT = 128
DIRECT_BATCH_BYTES = 4096  # [replication] duplicate_log_batch_bytes default
DIRECT_WINDOW = 8  # [replication] dup_max_inflight_batches default
SOURCE_CLUSTER_ID = 1
DRAIN_POLL_S = 0.02
WIDE_WINDOW = "[replication]\ndup_max_inflight_batches = 32\nduplicate_log_batch_bytes = 65536\n"


@dataclass
class Params:
    """How much each scenario does: the real run, or the smoke run's few seconds."""

    max_rate_s: float = 10.0
    phase_s: float = 30.0
    loads: tuple[float, ...] = (0.25, 0.5, 0.75)
    wan_loads: tuple[float, ...] = (0.25, 0.5, 0.75)
    burst_n: int = 100_000
    apply_n: dict[int, int] = field(default_factory=lambda: {100: 100_000, 1024: 50_000})
    direct_n: int = 200_000
    catchup_load: float = 0.3
    catchup_warm_s: float = 10.0
    catchup_pause_s: float = 60.0
    catchup_after_s: float = 10.0
    overhead_s: float = 10.0
    overhead_repeats: int = 2
    client_s: float = 5.0
    client_keys: int = 20_000
    redis_requests: int = 200_000
    profile_s: float = 10.0
    drain_timeout_s: float = 300.0
    # Variants that rerun code the smoke run already covers, with other settings (the wide
    # window: apply and WAN drains with WIDE_WINDOW too).
    wide_window: bool = True
    overhead_tmpfs: bool = True

    @classmethod
    def smoke(cls) -> "Params":
        return cls(
            max_rate_s=1.0,
            phase_s=2.0,
            loads=(0.25, 0.5, 0.75),
            wan_loads=(0.5,),
            burst_n=2_000,
            apply_n={100: 2_000, 1024: 1_000},
            direct_n=4_000,
            catchup_warm_s=1.5,
            catchup_pause_s=3.0,
            catchup_after_s=0.5,
            overhead_s=1.0,
            overhead_repeats=1,
            client_s=1.0,
            client_keys=1_000,
            redis_requests=5_000,
            profile_s=2.0,
            drain_timeout_s=60.0,
            wide_window=False,
            overhead_tmpfs=False,
        )


@dataclass
class Ctx:
    params: Params
    out: Path
    root: Path
    smoke: bool
    profile: bool
    max_rate: float | None = None
    results: dict[str, dict[str, Any]] = field(default_factory=dict)


def value_bytes(size: int) -> bytes:
    return os.urandom(size)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# -- scenario helpers -------------------------------------------------------------------------


async def max_write_rate(table: Table, seconds: float, value: bytes) -> dict[str, Any]:
    """The best closed-loop set rate over CLOSED_LOOP_IN_FLIGHT (bench/client.py's loop)."""
    rows = []
    for in_flight in CLOSED_LOOP_IN_FLIGHT:
        r = await client_bench.run_op(table, "set", in_flight, seconds, 50_000, value)
        rows.append(r.as_json())
        log(f"  closed loop, {in_flight} in flight: {r.ops_per_s:,.0f} sets/s")
    best = max(rows, key=lambda r: r["ops_per_s"])
    return {"rate": best["ops_per_s"], "in_flight": best["in_flight"], "rows": rows}


async def lag_phase(
    pair: Pair,
    table: DupTable,
    ta: Table,
    reader: h.ProbeReader,
    rate: float,
    seconds: float,
    value: bytes,
    label: str,
    probe_base: int,
) -> tuple[dict[str, Any], int]:
    """One open-loop phase with probes; returns its JSON and the next probe number."""
    t0 = time.monotonic()
    meter = h.CpuMeter({**pair.pids(), "load": os.getpid(), "reader": reader.pid})
    async with h.sampling(pair, table, 1.0, t0) as samples:
        load = await h.open_loop(ta, rate, seconds, value, label.encode(), reader, probe_base)
    cpu = meter.read()
    server = await asyncio.to_thread(h.server_lag, pair.a)
    seen, not_seen = await reader.collect(timeout_s=60.0)
    lag = h.probe_lags(load.probes, seen, t0)
    first, drained, _ = await h.wait_drained(pair, table, 120.0, 0.05)
    phase = {
        "label": label,
        **load.as_json(),
        "lag": lag.as_json(),
        "server_lag_ms": server,
        "cpu_pct": cpu,
        "drained_after_s": None if drained is None else round(drained - t0 - load.seconds, 3),
        "series": {"probes": lag.series, "server": samples},
    }
    log(
        f"  {label}: {load.rate:,.0f}/s of {rate:,.0f}/s target, lag p50 "
        f"{lag.as_json()['p50_ms']} p99 {lag.as_json()['p99_ms']} max "
        f"{lag.as_json()['max_ms']} ms ({lag.probes} probes, {lag.lost} not seen); "
        f"server p99 {server['p99']} ms; CPU % {cpu}"
    )
    return phase, probe_base + len(load.probes)


async def profile_while(
    ctx: Ctx, pair: Pair, label: str, body: Callable[[], Awaitable[Any]]
) -> dict[str, Any]:
    """Run `body` while py-spy samples both replica servers (for a missed goal)."""
    log(f"  profiling {label} ({ctx.params.profile_s:g} s)")
    async with h.profiled(
        pair.pids(), ctx.params.profile_s, ctx.out / "profiles", label
    ) as profiles:
        await body()
    return profiles


async def drain_backlog(
    ca: Client,
    pair: Pair,
    table: DupTable,
    ta: Table,
    keys: list[bytes],
    value: bytes,
    timeout_s: float,
) -> dict[str, Any]:
    """Pause, write `keys`, resume, and time the drain as the source reports it."""
    await h.set_dup_status(ca, pair, table, DupStatus.DS_PAUSE)
    _, _, write_s = await h.closed_loop_writes(ta, keys, value, BURST_IN_FLIGHT)
    before = await asyncio.to_thread(h.progress, pair, table)
    meter = h.CpuMeter(pair.pids())
    t_resume = time.monotonic()
    resp = await ca.meta_call(
        "RPC_CM_MODIFY_DUPLICATION",
        dup.duplication_modify_request(
            app_name=table.name, dupid=table.dupid, status=DupStatus.DS_LOG
        ),
    )
    assert resp.err == ErrorCode.OK, resp.err
    first, done, _ = await h.wait_drained(pair, table, timeout_s, DRAIN_POLL_S)
    cpu = meter.read()  # from resume: includes the < 1 s before the replicas hear of it
    if first is None or done is None:
        raise TimeoutError(f"{table.name}: backlog of {before.backlog} not drained in {timeout_s}s")
    n = before.backlog
    return {
        "writes": len(keys),
        "backlog": n,
        "write_seconds": round(write_s, 3),
        "resume_to_first_ack_s": round(first - t_resume, 3),
        "drain_seconds": round(done - first, 3),
        "resume_to_drained_s": round(done - t_resume, 3),
        "rate": round(n / max(done - first, DRAIN_POLL_S)),  # at least one poll
        "rate_from_resume": round(n / max(done - t_resume, 1e-6)),
        "cpu_pct_from_resume": cpu,
    }


async def apply_direct(
    pool: ConnectionPool, cb: Client, table_name: str, size: int, n: int
) -> dict[str, Any]:
    """Drive DUPLICATE RPCs at the follower: entries routed by hash like the shipper, 4 KB
    batches, 8 batches in flight per remote partition. Requests are built before timing."""
    resp = await cb.meta_call(
        "RPC_CM_QUERY_PARTITION_CONFIG_BY_INDEX",
        meta.query_cfg_request(app_name=table_name, partition_indices=[]),
    )
    route = route_from_query_cfg(resp, table_name)
    value = value_bytes(size)
    now_us = int(time.time() * 1e6)
    per_part: list[list[bytes]] = [[] for _ in range(route.partition_count)]
    batch: list[list[Entry]] = [[] for _ in range(route.partition_count)]
    sizes = [0] * route.partition_count
    for i in range(n):
        hk = b"direct%09d" % i
        raw = serialize(put_request(hk, SORT_KEY, value, 0))
        pidx = route.for_hash(key_hash(hk, SORT_KEY)).partition_index
        batch[pidx].append(Entry(i + 1, now_us + i, TaskCode.PUT, raw))
        sizes[pidx] += len(raw)
        if sizes[pidx] >= DIRECT_BATCH_BYTES:
            per_part[pidx].append(encode_duplicate_args(batch[pidx], SOURCE_CLUSTER_ID))
            batch[pidx], sizes[pidx] = [], 0
    for pidx, rest in enumerate(batch):
        if rest:
            per_part[pidx].append(encode_duplicate_args(rest, SOURCE_CLUSTER_ID))
    failures = 0

    async def sender(pidx: int, it: Any) -> None:
        nonlocal failures
        address = route.primaries[pidx]
        assert address is not None
        for args in it:  # as the shipper sends them
            err, r = await pool.call_encoded(
                address,
                "RPC_RRDB_RRDB_DUPLICATE",
                args,
                app_id=route.app_id,
                partition_index=pidx,
                timeout_ms=30_000,
            )
            if err != ErrorCode.OK or (r.error or 0) != 0:
                failures += 1

    t0 = time.monotonic()
    async with asyncio.TaskGroup() as tg:
        for pidx, reqs in enumerate(per_part):
            it = iter(reqs)
            for _ in range(DIRECT_WINDOW):
                tg.create_task(sender(pidx, it))
    elapsed = time.monotonic() - t0
    if failures:
        raise RuntimeError(f"{failures} DUPLICATE batches failed at the follower")
    return {
        "writes": n,
        "batches": sum(map(len, per_part)),
        "seconds": round(elapsed, 3),
        "rate": round(n / elapsed),
    }


async def verify_count(tb: Table, want: int, what: str) -> int:
    got = await h.bounded(tb.count(), 120, f"count {what} at the remote")
    if got != want:
        raise AssertionError(f"{what}: the remote holds {got} records, expected {want}")
    return got


async def rate_for(ctx: Ctx, ta: Table, value: bytes) -> float:
    """The max closed-loop write rate: from steady_lag when it ran, else measured here."""
    if ctx.max_rate is None:
        ctx.max_rate = (await max_write_rate(ta, ctx.params.max_rate_s, value))["rate"]
    return ctx.max_rate


# -- scenarios --------------------------------------------------------------------------------


async def steady_lag(ctx: Ctx, delay_ms: float = 0.0, name: str = "steady_lag") -> dict:
    p = ctx.params
    value = value_bytes(100)
    out: dict[str, Any] = {"goals": [], "profiles": {}}
    with h.dup_pair(ctx.root / name, delay_ms=delay_ms) as pair:
        ca, cb = await h.connect_both(pair)
        reader = None
        try:
            table = await h.create_dup_table(ca, cb, pair, TABLE)
            ta = await ca.open_table(TABLE)
            if delay_ms == 0:
                m = await max_write_rate(ta, p.max_rate_s, value)
                ctx.max_rate = m["rate"]
                out["max_rate"] = m
            max_rate = await rate_for(ctx, ta, value)
            out["max_rate_used"] = max_rate
            await h.wait_drained(pair, table, p.drain_timeout_s, 0.05)
            reader = h.ProbeReader(pair.b.meta_address, TABLE, PARTITIONS)
            phases = []
            probe_n = 0
            for frac in p.loads if delay_ms == 0 else p.wan_loads:
                phase, probe_n = await lag_phase(
                    pair,
                    table,
                    ta,
                    reader,
                    frac * max_rate,
                    p.phase_s,
                    value,
                    f"load{round(frac * 100)}",
                    probe_n,
                )
                phase["load_fraction"] = frac
                phases.append(phase)
            out["phases"] = phases
            half = next((ph for ph in phases if ph["load_fraction"] == 0.5), None)
            if half is not None:
                target = LAG_GOAL_MS + 2 * delay_ms
                where = "loopback" if delay_ms == 0 else f"{2 * delay_ms:g} ms RTT proxy"
                g = h.goal(
                    f"lag p99 at 50% load ({where})",
                    half["lag"]["p99_ms"],
                    target,
                    at_most=True,
                    unit="ms",
                )
                out["goals"].append(g)
                if not g["met"] and ctx.profile:
                    out["profiles"]["lag"] = await profile_while(
                        ctx,
                        pair,
                        f"{name}-lag50",
                        lambda: h.open_loop(ta, 0.5 * max_rate, p.profile_s, value, b"prof"),
                    )
        finally:
            if reader is not None:
                reader.stop()
            await h.close_all(ca, cb)
    return out


async def burst(ctx: Ctx) -> dict:
    p = ctx.params
    value = value_bytes(100)
    out: dict[str, Any] = {"goals": []}
    with h.dup_pair(ctx.root / "burst") as pair:
        ca, cb = await h.connect_both(pair)
        try:
            table = await h.create_dup_table(ca, cb, pair, TABLE)
            ta, tb = await ca.open_table(TABLE), await cb.open_table(TABLE)
            keys = h.keys(b"burst", p.burst_n)
            _, last_ack, elapsed = await h.closed_loop_writes(ta, keys, value, BURST_IN_FLIGHT)
            # The last 2 x in-flight keys issued hold every write acked last.
            (_, shipped, _), tail = await asyncio.gather(
                h.wait_drained(pair, table, p.drain_timeout_s, 0.01),
                h.wait_visible(tb, keys[-2 * BURST_IN_FLIGHT :], p.drain_timeout_s),
            )
            if shipped is None or tail is None:
                raise TimeoutError("burst: the remote did not catch up")
            await verify_count(tb, p.burst_n, "burst")
            out["dupkv"] = {
                "writes": p.burst_n,
                "in_flight": BURST_IN_FLIGHT,
                "write_seconds": round(elapsed, 3),
                "write_rate": round(p.burst_n / elapsed),
                "last_ack_to_shipped_ms": round((shipped - last_ack) * 1000, 1),
                "last_ack_to_tail_visible_ms": round((tail - last_ack) * 1000, 1),
                "last_ack_to_visible_ms": round((max(shipped, tail) - last_ack) * 1000, 1),
            }
            log(f"  dupkv: {out['dupkv']}")
        finally:
            await h.close_all(ca, cb)
    out["redis"] = await asyncio.to_thread(redis_burst, ctx)
    if "last_ack_to_visible_ms" in out["redis"]:
        d, r = out["dupkv"], out["redis"]
        out["ratios"] = {
            "write_rate": round(d["write_rate"] / r["write_rate"], 4),
            "last_ack_to_visible": round(
                d["last_ack_to_visible_ms"] / max(r["last_ack_to_visible_ms"], 0.001), 1
            ),
        }
    return out


def redis_burst(ctx: Ctx) -> dict[str, Any]:
    why = rb.ensure_installed()
    if why is not None:
        return {"skipped": why}
    pair = rb.RedisPair(ctx.root / "redis-burst")
    try:
        pair.start()
        r = rb.burst(pair, ctx.params.burst_n, 100, 60)
    finally:
        pair.stop()
    log(f"  redis: {r}")
    return {"version": rb.version(), "client": "redis-cli --pipe", **r}


async def apply(
    ctx: Ctx, delay_ms: float = 0.0, name: str = "apply", extra_config: str = ""
) -> dict:
    p = ctx.params
    out: dict[str, Any] = {"goals": [], "profiles": {}, "drain": {}, "direct": {}}
    with h.dup_pair(ctx.root / name, delay_ms=delay_ms, extra_config=extra_config) as pair:
        ca, cb = await h.connect_both(pair)
        pool = ConnectionPool()
        try:
            for size, n in p.apply_n.items():
                tname = f"apply{size}"
                table = await h.create_dup_table(ca, cb, pair, tname)
                ta, tb = await ca.open_table(tname), await cb.open_table(tname)
                keys = h.keys(b"apply", n)
                r = await drain_backlog(
                    ca, pair, table, ta, keys, value_bytes(size), p.drain_timeout_s
                )
                await verify_count(tb, n, tname)
                out["drain"][str(size)] = r
                log(f"  drain, {size} B values{' (wide window)' if extra_config else ''}: {r}")
                if delay_ms == 0 and not extra_config:
                    d = await apply_direct(pool, cb, tname, size, p.direct_n)
                    out["direct"][str(size)] = d
                    log(f"  direct DUPLICATE at the follower, {size} B values: {d}")
            small = out["drain"]["100"]["rate"]
            if extra_config:
                pass  # a variant: reported next to the default, not judged
            elif delay_ms == 0:
                g = h.goal(
                    "apply rate, 100 B values (backlog drain)", small, APPLY_GOAL, unit="writes/s"
                )
                out["goals"].append(g)
                out["goals"].append(
                    h.goal(
                        "apply rate, 100 B values (DUPLICATE driven at the follower)",
                        out["direct"]["100"]["rate"],
                        APPLY_GOAL,
                        unit="writes/s",
                    )
                )
                if not g["met"] and ctx.profile:
                    out["profiles"]["apply"] = await profile_drain(ctx, pair, ca, cb, name)
            elif not extra_config:
                lo = ctx.results.get("apply", {}).get("drain", {})
                out["ratios_to_loopback"] = {
                    f"drain_rate_{size}B": round(r["rate"] / lo[size]["rate"], 3)
                    for size, r in out["drain"].items()
                    if size in lo
                }
                if "drain_rate_100B" in out["ratios_to_loopback"]:
                    g = h.goal(
                        "WAN drain rate / loopback, 100 B values",
                        out["ratios_to_loopback"]["drain_rate_100B"],
                        WAN_THROUGHPUT_GOAL,
                    )
                    out["goals"].append(g)
                    if not g["met"] and ctx.profile:
                        out["profiles"]["wan_drain"] = await profile_drain(ctx, pair, ca, cb, name)
        finally:
            await pool.close()
            await h.close_all(ca, cb)
    return out


async def apply_both(ctx: Ctx) -> dict:
    """The default shipping window, then (in the full run) a wide one on new clusters."""
    out = await apply(ctx)
    if ctx.params.wide_window:
        ctx.results["apply"] = out  # not final yet, but the WAN ratios only need `drain`
        out["drain_wide_window"] = (await apply(ctx, 0.0, "apply_wide", WIDE_WINDOW))["drain"]
        out["wide_window_config"] = WIDE_WINDOW
    return out


async def profile_drain(ctx: Ctx, pair: Pair, ca: Client, cb: Client, name: str) -> dict:
    """Profile both replica servers while a fresh backlog drains."""
    table = await h.create_dup_table(ca, cb, pair, "prof")
    ta = await ca.open_table("prof")
    value = value_bytes(100)
    await h.set_dup_status(ca, pair, table, DupStatus.DS_PAUSE)
    # Enough backlog to outlast the profile at the drain rate seen so far.
    n = int(max(5_000, min(200_000, ctx.params.profile_s * 15_000)))
    await h.closed_loop_writes(ta, h.keys(b"prof", n), value, BURST_IN_FLIGHT)

    async def body() -> None:
        await h.set_dup_status(ca, pair, table, DupStatus.DS_LOG)
        await h.wait_drained(pair, table, ctx.params.drain_timeout_s, 0.05)
        await asyncio.sleep(0)

    return await profile_while(ctx, pair, f"{name}-drain", body)


async def wan(ctx: Ctx) -> dict:
    """Scenarios 1 and 3 through the delay proxy; ratios to the loopback figures."""
    out: dict[str, Any] = {"delay_ms_each_way": WAN_DELAY_MS, "goals": []}
    out["steady_lag"] = await steady_lag(ctx, WAN_DELAY_MS, "wan_steady")
    out["apply"] = await apply(ctx, WAN_DELAY_MS, "wan_apply")
    if ctx.params.wide_window:
        # The same drains with a wider shipping window: how much of the gap it explains.
        out["apply_wide_window"] = await apply(ctx, WAN_DELAY_MS, "wan_apply_wide", WIDE_WINDOW)
        out["apply_wide_window"]["config"] = WIDE_WINDOW
    out["goals"] += out["steady_lag"].pop("goals") + out["apply"].pop("goals")
    ratios: dict[str, Any] = out["apply"].pop("ratios_to_loopback", {})
    lo_lag = ctx.results.get("steady_lag")
    if lo_lag is not None:
        for ph in out["steady_lag"]["phases"]:
            base = next(
                (x for x in lo_lag.get("phases", []) if x["load_fraction"] == ph["load_fraction"]),
                None,
            )
            if base is not None:
                ratios[f"lag_p99_{ph['label']}"] = round(
                    ph["lag"]["p99_ms"] / max(base["lag"]["p99_ms"], 0.001), 2
                )
    out["ratios_to_loopback"] = ratios
    # Like for like: the wide window over the WAN against the wide window on loopback.
    lo = ctx.results.get("apply", {}).get("drain_wide_window", {})
    for size, r in out.get("apply_wide_window", {}).get("drain", {}).items():
        if size in lo:
            ratios[f"drain_rate_{size}B_wide_window"] = round(r["rate"] / lo[size]["rate"], 3)
    out["profiles"] = {**out["steady_lag"].pop("profiles"), **out["apply"].pop("profiles")}
    return out


async def catchup(ctx: Ctx) -> dict:
    p = ctx.params
    value = value_bytes(100)
    out: dict[str, Any] = {"goals": [], "profiles": {}}
    with h.dup_pair(ctx.root / "catchup") as pair:
        ca, cb = await h.connect_both(pair)
        reader = None
        try:
            table = await h.create_dup_table(ca, cb, pair, TABLE)
            ta = await ca.open_table(TABLE)
            rate = p.catchup_load * await rate_for(ctx, ta, value)
            await h.wait_drained(pair, table, p.drain_timeout_s, 0.05)
            reader = h.ProbeReader(pair.b.meta_address, TABLE, PARTITIONS)
            budget = p.catchup_warm_s + p.catchup_pause_s + p.drain_timeout_s
            stop = asyncio.Event()
            t0 = time.monotonic()
            async with h.sampling(pair, table, 0.5, t0) as samples:
                load_task = asyncio.create_task(
                    h.open_loop(ta, rate, budget, value, b"c", reader, stop=stop)
                )
                await asyncio.sleep(p.catchup_warm_s)
                steady = [s["backlog"] for s in samples if s["t"] >= p.catchup_warm_s / 2]
                t_pause = time.monotonic()
                await h.set_dup_status(ca, pair, table, DupStatus.DS_PAUSE)
                await asyncio.sleep(max(0.0, t_pause + p.catchup_pause_s - time.monotonic()))
                at_resume = await asyncio.to_thread(h.progress, pair, table)
                t_resume = time.monotonic()
                await ca.meta_call(
                    "RPC_CM_MODIFY_DUPLICATION",
                    dup.duplication_modify_request(
                        app_name=TABLE, dupid=table.dupid, status=DupStatus.DS_LOG
                    ),
                )
                # Drained: the backlog is back to what it was before the pause.
                threshold = max(50, 3 * max(steady, default=0))
                # Shipping starts somewhere between the last poll that saw no progress and
                # the first that did; taking the earlier bound keeps the span above zero
                # and the drain rate a lower bound even when one poll sees the whole drain.
                first_move = drained = None
                at_drained = at_resume
                last_still = t_resume
                deadline = t_resume + p.drain_timeout_s
                while time.monotonic() < deadline:
                    now_p = await asyncio.to_thread(h.progress, pair, table)
                    now = time.monotonic()
                    if first_move is None:
                        if now_p.shipped > at_resume.shipped:
                            first_move = last_still
                        else:
                            last_still = now
                    if now_p.backlog <= threshold:
                        drained, at_drained = now, now_p
                        break
                    await asyncio.sleep(0.05)
                if drained is None or first_move is None:
                    raise TimeoutError(f"catchup: not drained after {p.drain_timeout_s}s")
                await asyncio.sleep(p.catchup_after_s)
                stop.set()
                load = await h.bounded(load_task, 60, "catchup load")
            seen, _ = await reader.collect(timeout_s=60.0)
            lag = h.probe_lags(load.probes, seen, t0)
            span = drained - first_move
            shipped = at_drained.shipped - at_resume.shipped
            written = at_drained.committed - at_resume.committed
            write_rate = written / (drained - t_resume) if drained > t_resume else 0.0
            drain_rate = shipped / span if span > 0 else 0.0
            out["result"] = {
                **load.as_json(),
                "pause_s": round(t_resume - t_pause, 3),
                "backlog_at_resume": at_resume.backlog,
                "drained_backlog_threshold": threshold,
                "resume_to_first_ack_s": round(first_move - t_resume, 3),
                "resume_to_drained_s": round(drained - t_resume, 3),
                "drain_rate": round(drain_rate),
                "write_rate_during_drain": round(write_rate),
                "drain_over_write": round(drain_rate / write_rate, 3) if write_rate else None,
                "lag": lag.as_json(),
                "marks": {
                    "pause": round(t_pause - t0, 3),
                    "resume": round(t_resume - t0, 3),
                    "drained": round(drained - t0, 3),
                },
            }
            out["series"] = {"probes": lag.series, "server": samples}
            shown = {k: v for k, v in out["result"].items() if k != "lag"}
            log(f"  catchup: {shown}")
            ratio = out["result"]["drain_over_write"] or 0.0
            g = h.goal("catch-up drain rate / write rate", ratio, CATCHUP_GOAL, unit="x")
            out["goals"].append(g)
            if not g["met"] and ctx.profile:
                out["profiles"]["catchup"] = await profile_drain(ctx, pair, ca, cb, "catchup")
        finally:
            if reader is not None:
                reader.stop()
            await h.close_all(ca, cb)
    return out


async def overhead(ctx: Ctx) -> dict:
    """Source write throughput on a duplicated and a plain table, alternated; twice: with
    both clusters on the same disk, and with the remote's data on tmpfs (on this one machine
    the remote's fsyncs otherwise queue with the source's, which separate machines avoid)."""
    out: dict[str, Any] = {"goals": [], "profiles": {}}
    out["same_disk"] = await overhead_run(ctx, None)
    shm = Path("/dev/shm")
    if ctx.params.overhead_tmpfs and shm.is_dir() and os.access(shm, os.W_OK):
        remote = Path(tempfile.mkdtemp(prefix="dupkv-bench-remote-", dir=shm))
        try:
            out["remote_on_tmpfs"] = await overhead_run(ctx, remote)
        finally:
            shutil.rmtree(remote, ignore_errors=True)
    r = out["same_disk"]["result"]
    g = h.goal("source throughput, duplication on / off", r["ratio"], OVERHEAD_GOAL)
    out["goals"].append(g)
    if "remote_on_tmpfs" in out:
        out["goals"].append(
            h.goal(
                "source throughput, duplication on / off (remote's data on tmpfs)",
                out["remote_on_tmpfs"]["result"]["ratio"],
                OVERHEAD_GOAL,
            )
        )
    if not g["met"] and ctx.profile:
        out["profiles"]["overhead"] = out["same_disk"].pop("profile")
    out["same_disk"].pop("profile", None)
    return out


async def overhead_run(ctx: Ctx, remote_root: Path | None) -> dict:
    p = ctx.params
    value = value_bytes(100)
    out: dict[str, Any] = {"runs": []}
    name = "overhead" if remote_root is None else "overhead-tmpfs"
    with h.dup_pair(ctx.root / name, remote_root=remote_root) as pair:
        ca, cb = await h.connect_both(pair)
        try:
            table = await h.create_dup_table(ca, cb, pair, "dup_on")
            # A duplicated table whose duplication is paused: its writes take the duplicated
            # write path, but nothing is shipped (tells the write path from the shipping).
            paused = await h.create_dup_table(ca, cb, pair, "dup_paused")
            await h.set_dup_status(ca, pair, paused, DupStatus.DS_PAUSE)
            await ca.create_table("dup_off", PARTITIONS)
            tables = {mode: await ca.open_table(f"dup_{mode}") for mode in ("off", "paused", "on")}
            rates: dict[str, list[float]] = {mode: [] for mode in tables}
            in_flight = CLOSED_LOOP_IN_FLIGHT[0]
            for rep in range(p.overhead_repeats):
                for mode in tables:
                    meter = h.CpuMeter({**pair.pids(), "client": os.getpid()})
                    t_run = time.monotonic()
                    r = await client_bench.run_op(
                        tables[mode], "set", in_flight, p.overhead_s, 50_000, value
                    )
                    # run_op warms up for a second first: writes ~ rate x the whole call.
                    writes = r.ops_per_s * (time.monotonic() - t_run)
                    cpu_us = {k: round(v * 1e6 / writes, 1) for k, v in meter.seconds().items()}
                    backlog = (await asyncio.to_thread(h.progress, pair, table)).backlog
                    rates[mode].append(r.ops_per_s)
                    out["runs"].append(
                        {
                            "dup": mode,
                            "repeat": rep,
                            **r.as_json(),
                            "backlog_after": backlog,
                            "cpu_us_per_write": cpu_us,
                        }
                    )
                    log(
                        f"  {name}, dup {mode}: {r.ops_per_s:,.0f} sets/s (backlog after "
                        f"{backlog}); CPU us per write {cpu_us}"
                    )
                    await h.wait_drained(pair, table, p.drain_timeout_s, 0.05)
            on, off = statistics.median(rates["on"]), statistics.median(rates["off"])
            cpu: dict[str, dict[str, float]] = {}
            for mode in tables:
                runs = [x["cpu_us_per_write"] for x in out["runs"] if x["dup"] == mode]
                cpu[mode] = {k: round(statistics.median(x[k] for x in runs), 1) for k in runs[0]}
            out["result"] = {
                "in_flight": in_flight,
                "rate_dup_on": round(on),
                "rate_dup_off": round(off),
                "rate_dup_paused": round(statistics.median(rates["paused"])),
                "ratio": round(on / off, 3),
                "ratio_paused": round(statistics.median(rates["paused"]) / off, 3),
                "cpu_us_per_write": cpu,
            }
            if on / off < OVERHEAD_GOAL and ctx.profile and remote_root is None:
                out["profile"] = await profile_while(
                    ctx,
                    pair,
                    "overhead-dup-on",
                    lambda: client_bench.run_op(
                        tables["on"], "set", in_flight, ctx.params.profile_s, 50_000, value
                    ),
                )
        finally:
            await h.close_all(ca, cb)
    return out


def client_scenario(ctx: Ctx) -> dict:
    p = ctx.params
    rows = client_bench.run(ctx.root / "client", p.client_s, PARTITIONS, p.client_keys)
    out: dict[str, Any] = {
        "config": {
            "partitions": PARTITIONS,
            "replica_servers": 1,
            "value_bytes": client_bench.VALUE_BYTES,
            "key_space": p.client_keys,
            "seconds_per_row": p.client_s,
            "client": "dupkv.client.Client (asyncio), one connection per server",
        },
        "results": [r.as_json() for r in rows],
        # bench/client.py's own goals (the client's issue, not this suite's): shown, not judged
        "client_goals": {f"{op}_{n}": target for (op, n), target in client_bench.GOALS.items()},
        "goals": [],
    }
    why = rb.ensure_installed()
    if why is not None:
        out["redis"] = {"skipped": why}
        return out
    pair = rb.RedisPair(ctx.root / "redis-client")
    try:
        pair.start()
        redis_rows = []
        for n in client_bench.IN_FLIGHT:
            redis_rows += rb.benchmark(pair, n, p.redis_requests, client_bench.VALUE_BYTES)
    finally:
        pair.stop()
    out["redis"] = {"version": rb.version(), "tool": "redis-benchmark --csv", "results": redis_rows}
    out["ratios"] = []
    for r in out["results"]:
        peer = next(
            (x for x in redis_rows if x["op"] == r["op"] and x["in_flight"] == r["in_flight"]),
            None,
        )
        if peer is not None:
            out["ratios"].append(
                {
                    "op": r["op"],
                    "in_flight": r["in_flight"],
                    "ops_per_s": round(r["ops_per_s"] / peer["ops_per_s"], 4),
                    "p99_ms": round(r["p99_ms"] / max(peer["p99_ms"], 0.001), 1),
                }
            )
    return out


# -- driver -----------------------------------------------------------------------------------


RUNNERS: dict[str, Callable[[Ctx], Any]] = {
    "steady_lag": lambda ctx: asyncio.run(steady_lag(ctx)),
    "burst": lambda ctx: asyncio.run(burst(ctx)),
    "apply": lambda ctx: asyncio.run(apply_both(ctx)),
    "wan": lambda ctx: asyncio.run(wan(ctx)),
    "catchup": lambda ctx: asyncio.run(catchup(ctx)),
    "overhead": lambda ctx: asyncio.run(overhead(ctx)),
    "client": client_scenario,
}


def run_scenario(ctx: Ctx, name: str) -> dict[str, Any]:
    log(f"{name}: start")
    t0 = time.monotonic()
    doc: dict[str, Any] = {
        "scenario": name,
        "machine": h.machine(),
        "smoke": ctx.smoke,
        "params": asdict(ctx.params),
    }
    load = h.MachineLoad()
    try:
        doc.update(RUNNERS[name](ctx))
    except Exception as e:  # one scenario failing must not hide the others' figures
        traceback.print_exc()
        doc["error"] = f"{type(e).__name__}: {e}"
    doc["elapsed_s"] = round(time.monotonic() - t0, 1)
    doc["machine_load"] = load.read()
    log(
        f"{name}: done in {doc['elapsed_s']} s; machine load {doc['machine_load']}"
        + (f" — {doc['error']}" if "error" in doc else "")
    )
    ctx.results[name] = doc
    h.write_json(ctx.out / f"{name}.json", doc)
    return doc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="a few seconds per scenario")
    ap.add_argument("--out", help="results folder (default: bench/results; smoke: a temp dir)")
    ap.add_argument("--only", help="comma-separated scenarios: " + ", ".join(SCENARIOS))
    ap.add_argument("--dir", help="cluster data folder (default: a temp dir, removed after)")
    ap.add_argument("--no-profile", action="store_true", help="no py-spy for missed goals")
    ap.add_argument("--profile", action="store_true", help="py-spy for missed goals, even in smoke")
    ap.add_argument("--no-report", action="store_true", help="leave BENCHMARKS.md alone")
    args = ap.parse_args()
    names = SCENARIOS if not args.only else tuple(s.strip() for s in args.only.split(","))
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        ap.error(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    if args.out:
        out = Path(args.out)
    elif args.smoke:
        out = Path(tempfile.gettempdir()) / "dupkv-bench-smoke"
    else:
        out = RESULTS
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with h.scratch(args.dir, "dupkv-bench-") as root:
        ctx = Ctx(
            Params.smoke() if args.smoke else Params(),
            out,
            root,
            smoke=args.smoke,
            profile=args.profile or (not args.no_profile and not args.smoke),
        )
        if "steady_lag" not in names:
            previous = out / "steady_lag.json"
            if previous.exists():  # keep comparisons with the last loopback run
                ctx.results["steady_lag"] = json.loads(previous.read_text())
                ctx.max_rate = ctx.results["steady_lag"].get("max_rate_used")
        if "apply" not in names and (out / "apply.json").exists():
            ctx.results["apply"] = json.loads((out / "apply.json").read_text())
        for name in names:
            run_scenario(ctx, name)
    import report  # bench/report.py

    md = report.render(out, total_s=time.monotonic() - started)
    if out.resolve() == RESULTS.resolve() and not args.no_report:
        report.update_benchmarks_md(BENCHMARKS_MD, md)
        log(f"updated {BENCHMARKS_MD.relative_to(h.REPO)}")
    else:
        (out / "BENCHMARKS.section.md").write_text(md)
    failed = [n for n in names if "error" in ctx.results[n]]
    log(f"suite done in {time.monotonic() - started:.0f} s; results in {out}")
    if failed:
        log(f"FAILED scenarios: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
