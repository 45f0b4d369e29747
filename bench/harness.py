"""Building blocks of the duplication benchmarks (bench/suite.py): two clusters with a
duplicated table (optionally through bench/delay_proxy.py), open-loop load with probe writes,
a remote reader process that times when each probe becomes visible at the remote, samplers of
the servers' own figures, and py-spy profiles.

Shell code: it starts processes (and stops them by PID), opens sockets and reads clocks. All
times are `time.monotonic()`, which on Linux is one clock for every process of the machine,
so the load process and the remote reader compare their readings directly.

How a probe's lag is measured: the load process writes a probe (a set of a unique key) among
the load and tells the reader its key as it sends it. The reader, a process of its own, polls
the remote cluster for the oldest few probes of every source partition (the source ships a
partition's writes in decree order, so later probes of a partition are not visible much
before earlier ones), every 2 ms while they are young and every 2% of their age once they
are old (at most 50 ms), and notes when the get that found each one returned. The lag is
that moment minus the moment the source acknowledged the probe's write: an upper bound by
at most one poll interval plus one get.
"""

import asyncio
import contextlib
import itertools
import json
import multiprocessing
import multiprocessing.connection
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Awaitable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hdrh.histogram import HdrHistogram

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(0, str(REPO / "tests"))

from storage import machine as _machine  # noqa: E402  (bench/storage.py)
from storage import python_loop_s, round_trip_us  # noqa: E402
from support.cluster import Cluster, free_port, http_get  # noqa: E402
from support.dup import SOURCE, TARGET, replica_dup_status  # noqa: E402

from dupkv.base.crc64 import key_hash, partition_index  # noqa: E402
from dupkv.base.errors import DupkvError, ErrorCode  # noqa: E402
from dupkv.client import Client, Table  # noqa: E402
from dupkv.duplication.status import DupStatus  # noqa: E402
from dupkv.rpc.idl_meta import dup  # noqa: E402

TABLE = "bench"
PARTITIONS = 4
SORT_KEY = b"s"
LATENCY_MAX_US = 600_000_000  # histograms: 1 us .. 10 min, 3 significant digits
MAX_IN_FLIGHT = 4096  # open loop: writes outstanding at most; past that a write is dropped
PROBES_PER_S = 100
READER_PER_PARTITION = 4  # probes of one source partition the reader polls at once
READER_MIN_POLL_S = 0.002
READER_MAX_POLL_S = 0.05
READER_AGE_FRACTION = 0.02
READY_TIMEOUT_S = 30.0
DUP_ACTIVE_TIMEOUT_S = 30.0
PROFILE_HZ = 100


# -- machine and results --------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """bench/storage.py's machine facts, plus whether the tree differs from the commit (other
    people's uncommitted work would then be part of what was measured)."""
    info = _machine()
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no", "--", "src"],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    ).stdout.split("\n")
    changed = [line[3:] for line in status if line.strip()]
    info["src_modified"] = changed
    info["time"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    return info


def hist() -> HdrHistogram:
    return HdrHistogram(1, LATENCY_MAX_US, 3)


def ms(h: HdrHistogram, percentile: float) -> float:
    return round(h.get_value_at_percentile(percentile) / 1000, 3)


def summary_ms(h: HdrHistogram) -> dict[str, float | int]:
    """p50/p99/p99.9/max in ms of a histogram of microseconds."""
    return {
        "count": h.get_total_count(),
        "p50_ms": ms(h, 50),
        "p99_ms": ms(h, 99),
        "p999_ms": ms(h, 99.9),
        "max_ms": round(h.get_max_value() / 1000, 3),
    }


def write_json(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n")


def goal(name: str, value: float, target: float, *, at_most: bool = False, unit: str = "") -> dict:
    met = value <= target if at_most else value >= target
    return {
        "name": name,
        "value": round(value, 3),
        "target": round(target, 3),
        "op": "<=" if at_most else ">=",
        "unit": unit,
        "met": bool(met),
    }


# -- processes ------------------------------------------------------------------------------


class DelayProxy:
    """bench/delay_proxy.py as a process: `routes` maps a listen port to host:port."""

    def __init__(self, routes: dict[int, str], delay_ms: float, log_path: Path) -> None:
        self.routes = routes
        self.delay_ms = delay_ms
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = [sys.executable, str(BENCH_DIR / "delay_proxy.py"), "--delay-ms", str(self.delay_ms)]
        args += [f"{port}={target}" for port, target in self.routes.items()]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                args, stdout=subprocess.PIPE, stderr=log, start_new_session=True
            )
        assert self.proc.stdout is not None
        os.set_blocking(self.proc.stdout.fileno(), False)
        deadline = time.monotonic() + READY_TIMEOUT_S
        seen = b""
        while b"ready" not in seen:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"delay proxy did not start (see {self.log_path})")
            seen += self.proc.stdout.read() or b""
            time.sleep(0.02)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        stop_pid(self.proc)
        self.proc = None


def stop_pid(proc: subprocess.Popen[Any] | None, timeout_s: float = 10.0) -> None:
    """SIGTERM the process we started, SIGKILL it if it lingers, and reap it."""
    if proc is None or proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@dataclass
class Pair:
    """Cluster A (source, id 1) and B (remote, id 2); with `proxy`, A reaches B's meta and
    replica servers only through it."""

    a: Cluster
    b: Cluster
    proxy: DelayProxy | None = None

    def pids(self) -> dict[str, int]:
        """The replica servers' PIDs, as "source-replica0", "remote-replica0", ..."""
        out = {}
        for cluster, side in ((self.a, "source"), (self.b, "remote")):
            for i, proc in enumerate(cluster.replica_procs):
                if proc.proc is not None:
                    out[f"{side}-replica{i}"] = proc.proc.pid
        return out


@dataclass
class _MappedCluster(Cluster):
    """A cluster whose config has a [duplication.address_map] (tests/support/cluster.py
    merges `extra_config` with a parser that also splits keys at ':', which host:port keys
    have)."""

    address_map: dict[str, str] = field(default_factory=dict)

    def config_sections(self) -> dict[str, dict[str, str]]:
        sections = super().config_sections()
        if self.address_map:
            sections["duplication.address_map"] = dict(self.address_map)
        return sections


@contextlib.contextmanager
def dup_pair(
    root: Path, *, delay_ms: float = 0, extra_config: str = "", remote_root: Path | None = None
) -> Iterator[Pair]:
    """Start two one-replica-server clusters that know each other (A ships to B through a
    delay proxy when `delay_ms` > 0; B's data under `remote_root` if given, else under
    `root`); stop everything by PID on the way out."""
    a_port, b_port = free_port(), free_port()
    b = Cluster(
        TARGET,
        remote_root or root / "b",
        replicas=1,
        cluster_id=2,
        meta_port=b_port,
        peers={SOURCE: (f"127.0.0.1:{a_port}", 1)},
        extra_config=extra_config,
    )
    proxy = None
    b_meta_for_a = b.meta_address
    address_map = {}
    if delay_ms > 0:
        routes = {free_port(): b.meta_address}
        routes.update({free_port(): f"127.0.0.1:{p}" for p in b.replica_ports})
        ports = list(routes)
        b_meta_for_a = f"127.0.0.1:{ports[0]}"
        address_map = {
            f"127.0.0.1:{real}": f"127.0.0.1:{dial}"
            for real, dial in zip(b.replica_ports, ports[1:], strict=True)
        }
        root.mkdir(parents=True, exist_ok=True)
        proxy = DelayProxy(routes, delay_ms, root / "proxy.log")
    a = _MappedCluster(
        SOURCE,
        root / "a",
        replicas=1,
        cluster_id=1,
        meta_port=a_port,
        peers={TARGET: (b_meta_for_a, 2)},
        extra_config=extra_config,
        address_map=address_map,
    )
    try:
        if proxy is not None:
            proxy.start()
        a.start()
        b.start()
        yield Pair(a, b, proxy)
    except BaseException:
        print(a.logs()[-3000:], b.logs()[-3000:], sep="\n", file=sys.stderr)
        raise
    finally:
        a.stop()
        b.stop()
        if proxy is not None:
            proxy.stop()


@contextlib.contextmanager
def scratch(root: str | None, prefix: str) -> Iterator[Path]:
    """`root` if given (kept), else a temporary folder removed afterwards."""
    if root:
        path = Path(root)
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    import tempfile

    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# -- tables and duplications ----------------------------------------------------------------


@dataclass
class DupTable:
    name: str
    app_id: int
    dupid: int


async def create_dup_table(
    ca: Client, cb: Client, pair: Pair, name: str, partitions: int = PARTITIONS
) -> DupTable:
    """Create `name` on both clusters, add A -> B duplication, and wait until every source
    partition is shipping."""
    await cb.create_table(name, partitions)
    app_id = await ca.create_table(name, partitions)
    resp = await ca.meta_call(
        "RPC_CM_ADD_DUPLICATION",
        dup.duplication_add_request(
            app_name=name, remote_cluster_name=TARGET, is_duplicating_checkpoint=False
        ),
    )
    if resp.err != ErrorCode.OK:
        raise RuntimeError(f"add duplication of {name}: {resp.err} {resp.hint}")
    table = DupTable(name, app_id, resp.dupid)
    await wait_dup(pair, table, duplicating=True)
    return table


async def set_dup_status(ca: Client, pair: Pair, table: DupTable, status: DupStatus) -> None:
    """Pause (DS_PAUSE) or resume (DS_LOG) and wait until every source partition obeys."""
    resp = await ca.meta_call(
        "RPC_CM_MODIFY_DUPLICATION",
        dup.duplication_modify_request(app_name=table.name, dupid=table.dupid, status=status),
    )
    if resp.err != ErrorCode.OK:
        raise RuntimeError(f"modify duplication of {table.name} to {status.name}: {resp.err}")
    await wait_dup(pair, table, duplicating=status == DupStatus.DS_LOG)


async def wait_dup(pair: Pair, table: DupTable, *, duplicating: bool) -> None:
    deadline = time.monotonic() + DUP_ACTIVE_TIMEOUT_S
    while True:
        parts = await asyncio.to_thread(replica_dup_status, pair.a, table.app_id)
        states = [p.get(str(table.dupid)) for p in parts.values()]
        if len(states) == PARTITIONS and all(
            s is not None and s["duplicating"] == duplicating for s in states
        ):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"duplication of {table.name} not duplicating={duplicating}")
        await asyncio.sleep(0.05)


@dataclass
class Progress:
    """Sums over the source partitions of one duplication."""

    committed: int
    shipped: int

    @property
    def backlog(self) -> int:
        return max(0, self.committed - self.shipped)


def progress(pair: Pair, table: DupTable) -> Progress:
    parts = replica_dup_status(pair.a, table.app_id)
    states = [p[str(table.dupid)] for p in parts.values() if str(table.dupid) in p]
    return Progress(
        sum(s["last_committed_decree"] for s in states),
        sum(max(s["shipped_decree"], 0) for s in states),
    )


def server_lag(cluster: Cluster) -> dict[str, int]:
    """The source's own `dup.time_lag_ms`: the largest p50/p99/p999 over its partitions
    (each over that partition's last <= 4096 samples)."""
    out = {"p50": 0, "p99": 0, "p999": 0}
    for port in cluster.replica_ports:
        doc = json.loads(http_get(port, "/metrics?metrics=dup.time_lag_ms&detail=true"))
        for entity in doc["entities"]:
            for metric in entity["metrics"]:
                if metric["name"] == "dup.time_lag_ms":
                    for k in out:
                        out[k] = max(out[k], int(metric.get(k, 0)))
    return out


async def wait_drained(
    pair: Pair, table: DupTable, timeout_s: float, period_s: float = 0.01
) -> tuple[float | None, float | None, list[tuple[float, int]]]:
    """Poll the source until it reports every committed write shipped (the remote acks a
    DUPLICATE after applying it). Returns (first time `shipped` moved, time it caught up,
    the backlog series) in monotonic seconds; None where that did not happen in time."""
    start = await asyncio.to_thread(progress, pair, table)
    first_move = None
    series = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        p = await asyncio.to_thread(progress, pair, table)
        now = time.monotonic()
        series.append((now, p.backlog))
        if first_move is None and p.shipped > start.shipped:
            first_move = now
        if p.backlog == 0 and p.committed >= start.committed:
            return first_move or now, now, series
        await asyncio.sleep(period_s)
    return first_move, None, series


# -- load -----------------------------------------------------------------------------------


@dataclass
class Probe:
    n: int
    hash_key: bytes
    t_issue: float
    t_ack: float | None = None


@dataclass
class Load:
    """What one open-loop run did; latencies are from each write's scheduled time."""

    target_rate: float
    seconds: float
    issued: int = 0
    acked: int = 0
    failed: int = 0
    dropped: int = 0
    latency: HdrHistogram = field(default_factory=hist)
    probes: list[Probe] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.acked / self.seconds if self.seconds else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "target_rate": round(self.target_rate),
            "achieved_rate": round(self.rate),
            "seconds": round(self.seconds, 3),
            "issued": self.issued,
            "acked": self.acked,
            "failed": self.failed,
            "dropped": self.dropped,
            "write_latency": summary_ms(self.latency),
        }


async def open_loop(
    table: Table,
    rate: float,
    seconds: float,
    value: bytes,
    prefix: bytes,
    reader: "ProbeReader | None" = None,
    probe_base: int = 0,
    stop: asyncio.Event | None = None,
) -> Load:
    """Issue `rate` sets per second for `seconds` (or until `stop` is set) whatever the
    answers (each write is a task of its own), one in every rate/100 a probe that `reader`
    is told about."""
    loop = asyncio.get_running_loop()
    result = Load(rate, seconds)
    in_flight: set[asyncio.Task[None]] = set()
    probe_every = max(1, round(rate / PROBES_PER_S)) if reader is not None else 0

    async def write(i: int, scheduled: float) -> None:
        probe = None
        if probe_every and i % probe_every == 0:
            n = probe_base + len(result.probes)
            probe = Probe(n, b"probe%09d" % n, time.monotonic())
            result.probes.append(probe)
            assert reader is not None
            reader.watch(probe)
            hk = probe.hash_key
        else:
            hk = prefix + b"%09d" % i
        try:
            await table.set(hk, SORT_KEY, value)
        except DupkvError:
            result.failed += 1
            return
        now = loop.time()
        if probe is not None:
            probe.t_ack = time.monotonic()
        result.acked += 1
        result.latency.record_value(max(1, int((now - scheduled) * 1e6)))

    start = loop.time()
    while True:
        elapsed = loop.time() - start
        if elapsed >= seconds or (stop is not None and stop.is_set()):
            break
        due = int(elapsed * rate) - result.issued
        for _ in range(due):
            i = result.issued
            result.issued += 1
            if len(in_flight) >= MAX_IN_FLIGHT:
                result.dropped += 1
                continue
            task = loop.create_task(write(i, start + i / rate))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        await asyncio.sleep(0.001)
    if in_flight:
        await asyncio.wait(list(in_flight), timeout=30)
    result.seconds = loop.time() - start
    return result


async def closed_loop_writes(
    table: Table, keys: list[bytes], value: bytes, in_flight: int
) -> tuple[float, float, float]:
    """Set every key with `in_flight` writers; (first send, last ack, elapsed) in monotonic
    seconds."""
    it = iter(keys)
    t0 = time.monotonic()
    last_ack = t0

    async def worker() -> None:
        nonlocal last_ack
        for hk in it:
            await table.set(hk, SORT_KEY, value)
            last_ack = time.monotonic()

    async with asyncio.TaskGroup() as tg:
        for _ in range(in_flight):
            tg.create_task(worker())
    return t0, last_ack, last_ack - t0


async def wait_visible(table: Table, keys: list[bytes], timeout_s: float) -> float | None:
    """Poll the remote for `keys` (rounds of concurrent gets of those still missing) until
    every one is there; the monotonic time the last was found, None on timeout."""
    missing = list(keys)
    deadline = time.monotonic() + timeout_s
    found_at = None
    while missing and time.monotonic() < deadline:
        got = await asyncio.gather(*(table.get(hk, SORT_KEY, timeout_ms=2000) for hk in missing))
        found_at = time.monotonic()
        missing = [hk for hk, v in zip(missing, got, strict=True) if v is None]
        if missing:
            await asyncio.sleep(READER_MIN_POLL_S)
    return None if missing else found_at


# -- the remote reader ------------------------------------------------------------------------


class ProbeReader:
    """The reader process, seen from the load process."""

    def __init__(self, meta: str, table: str, source_partitions: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self.proc = ctx.Process(
            target=_reader_process,
            args=(meta, table, source_partitions, child),
            name="probe-reader",
            daemon=True,
        )
        self.proc.start()
        child.close()
        if not self._conn.poll(READY_TIMEOUT_S) or self._conn.recv() != ("ready",):
            self.stop()
            raise RuntimeError("the probe reader did not start")

    @property
    def pid(self) -> int:
        assert self.proc.pid is not None
        return self.proc.pid

    def watch(self, probe: Probe) -> None:
        self._conn.send(("probe", probe.n, probe.hash_key, probe.t_issue))

    async def collect(self, timeout_s: float) -> tuple[dict[int, float], int]:
        """Wait (up to `timeout_s`) until every probe sent so far is seen; returns
        {probe n: time seen} and how many were still not seen. Starts a new round."""
        self._conn.send(("collect", timeout_s))

        def recv() -> Any:
            if not self._conn.poll(timeout_s + 30):
                raise TimeoutError("the probe reader did not answer")
            return self._conn.recv()

        kind, seen, missing = await asyncio.to_thread(recv)
        assert kind == "seen"
        return seen, missing

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._conn.send(("quit",))
        self.proc.join(timeout=10)
        if self.proc.is_alive():
            assert self.proc.pid is not None
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.join(timeout=10)


def _reader_process(
    meta: str, table: str, partitions: int, conn: multiprocessing.connection.Connection
) -> None:
    asyncio.run(_reader(meta, table, partitions, conn))


async def _reader(
    meta: str, table_name: str, partitions: int, conn: multiprocessing.connection.Connection
) -> None:
    loop = asyncio.get_running_loop()
    client = await Client.connect(meta)
    table = await client.open_table(table_name)
    # Per source partition: probe n -> (hash key, issue time), oldest first.
    pending: list[OrderedDict[int, tuple[bytes, float]]] = [
        OrderedDict() for _ in range(partitions)
    ]
    seen: dict[int, float] = {}
    wake = asyncio.Event()
    state: dict[str, Any] = {"collect_by": None, "quit": False}

    def on_message() -> None:
        while conn.poll():
            msg = conn.recv()
            if msg[0] == "probe":
                _, n, hk, t_issue = msg
                pidx = partition_index(key_hash(hk, SORT_KEY), partitions)
                pending[pidx][n] = (hk, t_issue)
            elif msg[0] == "collect":
                state["collect_by"] = time.monotonic() + msg[1]
            else:
                state["quit"] = True
            wake.set()

    loop.add_reader(conn.fileno(), on_message)
    conn.send(("ready",))
    try:
        while not state["quit"]:
            batch = [
                (q, n, hk, t_issue)
                for q in pending
                for n, (hk, t_issue) in itertools.islice(q.items(), READER_PER_PARTITION)
            ]
            collect_by = state["collect_by"]
            if collect_by is not None and (not batch or time.monotonic() > collect_by):
                conn.send(("seen", seen, sum(len(q) for q in pending)))
                seen = {}
                for q in pending:
                    q.clear()
                state["collect_by"] = None
                continue
            if not batch:
                wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.1):
                        await wake.wait()
                continue
            t0 = time.monotonic()
            got = await asyncio.gather(
                *(table.get(hk, SORT_KEY, timeout_ms=1000) for _, _, hk, _ in batch),
                return_exceptions=True,
            )
            t1 = time.monotonic()
            found = False
            for (q, n, _, _), value in zip(batch, got, strict=True):
                if isinstance(value, DupkvError):
                    continue
                if isinstance(value, BaseException):
                    raise value
                if value is not None:
                    seen[n] = t1
                    del q[n]
                    found = True
            if not found:
                oldest = min(t_issue for *_, t_issue in batch)
                interval = READER_AGE_FRACTION * (t1 - oldest)
                interval = min(READER_MAX_POLL_S, max(READER_MIN_POLL_S, interval))
                wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.0, interval - (t1 - t0))):
                        await wake.wait()
    finally:
        loop.remove_reader(conn.fileno())
        await client.close()


@dataclass
class Lag:
    """Probe lags of one phase."""

    hist: HdrHistogram
    from_issue: HdrHistogram
    series: list[tuple[float, float]]  # (seconds since the phase began, lag ms)
    probes: int
    lost: int
    before_ack: int

    def as_json(self) -> dict[str, Any]:
        return {
            **summary_ms(self.hist),
            "from_issue": summary_ms(self.from_issue),
            "probes": self.probes,
            "not_seen": self.lost,
            "seen_before_ack": self.before_ack,
        }


def probe_lags(probes: list[Probe], seen: dict[int, float], t0: float) -> Lag:
    """Lag from the source's ack to the reader's sighting, per probe; a probe seen before
    its ack reached the load process counts as 0 (and is counted)."""
    h, hi = hist(), hist()
    series = []
    lost = before = 0
    for p in probes:
        t = seen.get(p.n)
        if t is None or p.t_ack is None:
            lost += 1
            continue
        lag = t - p.t_ack
        if lag < 0:
            before += 1
            lag = 0.0
        h.record_value(max(1, int(lag * 1e6)))
        hi.record_value(max(1, int((t - p.t_issue) * 1e6)))
        series.append((round(p.t_ack - t0, 3), round(lag * 1000, 3)))
    return Lag(h, hi, series, len(probes), lost, before)


# -- samplers -------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all its threads), from /proc."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()  # fields[0] is the state, the 3rd field of stat
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class MachineLoad:
    """How busy the whole machine was between start and `read()`, and how much of that was
    this process and the children it has reaped (the clusters a scenario started and
    stopped): the rest is other people's work sharing the machine, which skews figures."""

    def __init__(self) -> None:
        self.gauge0 = loop_gauge_s()
        self.rtt0 = round_trip_us()
        self.t0 = time.monotonic()
        self.busy0 = self._machine_busy()
        self.own0 = self._own()

    @staticmethod
    def _machine_busy() -> float:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        ticks = [int(x) for x in fields]
        idle = ticks[3] + ticks[4]  # idle + iowait
        return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _own() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def read(self) -> dict[str, float]:
        elapsed = max(time.monotonic() - self.t0, 1e-6)
        busy = (self._machine_busy() - self.busy0) / elapsed
        own = (self._own() - self.own0) / elapsed
        return {
            "machine_busy_cores": round(busy, 2),
            "suite_cores": round(own, 2),
            "other_cores": round(max(0.0, busy - own), 2),
            "loadavg_1m_end": round(os.getloadavg()[0], 2),
            "loop_1m_s_start": self.gauge0,
            "loop_1m_s_end": loop_gauge_s(),
            "round_trip_us_start": self.rtt0,
            "round_trip_us_end": round_trip_us(),
        }


def loop_gauge_s() -> float:
    """A 1M-step Python loop's seconds: the VM's speed of the moment (it has varied 2.5x
    within an hour on this machine), to read a scenario's figures by."""
    return python_loop_s(1_000_000)


class CpuMeter:
    """CPU used by some processes between start and `read()`: % of one core each."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.t0 = time.monotonic()
        self.start = {name: cpu_seconds(pid) for name, pid in pids.items()}

    def seconds(self) -> dict[str, float]:
        return {
            name: cpu_seconds(pid) - self.start[name]
            for name, pid in self.pids.items()
            if Path(f"/proc/{pid}").exists()
        }

    def read(self) -> dict[str, float]:
        elapsed = max(time.monotonic() - self.t0, 1e-6)
        return {name: round(100 * s / elapsed, 1) for name, s in self.seconds().items()}


@contextlib.asynccontextmanager
async def sampling(
    pair: Pair, table: DupTable, period_s: float, t0: float
) -> AsyncIterator[list[dict[str, Any]]]:
    """Every `period_s`, the source's backlog, shipped and committed totals and its own lag
    percentiles, into the yielded list (t in seconds since `t0`)."""
    samples: list[dict[str, Any]] = []

    def sample() -> dict[str, Any]:
        p = progress(pair, table)
        lag = server_lag(pair.a)
        return {
            "t": round(time.monotonic() - t0, 3),
            "backlog": p.backlog,
            "shipped": p.shipped,
            "committed": p.committed,
            "server_lag_p99_ms": lag["p99"],
        }

    async def run() -> None:
        while True:
            with contextlib.suppress(OSError):
                samples.append(await asyncio.to_thread(sample))
            await asyncio.sleep(period_s)

    task = asyncio.get_running_loop().create_task(run())
    try:
        yield samples
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# -- profiles -------------------------------------------------------------------------------

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _frame_name(frame: str) -> str:
    m = FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    path = m["file"]
    for marker in ("site-packages/", "lib/python3.11/", "src/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{m['func']} ({path})"


def summarise_profile(raw: str, seconds: float, top: int = 12) -> dict[str, Any]:
    """py-spy's raw (collapsed) stacks -> the functions with the most samples on CPU: by
    self time (the leaf frame) and, for dupkv's own functions, inclusive time; the share of
    samples inside the duplication pipeline (any frame in dupkv/duplication/); and how busy
    the threads were (py-spy leaves idle samples out: samples / (seconds x 100 Hz))."""
    self_counts: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = in_dup = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [_frame_name(f) for f in stack.split(";")]
        # py-spy puts "process ..." and "thread ..." pseudo-frames first.
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        self_counts[frames[-1]] += count
        if any("dupkv/duplication/" in f for f in frames):
            in_dup += count
        for name in set(frames):
            if "dupkv/" in name and "dupkv/cli/" not in name:  # cli: the process entry
                incl[name] += count

    def pct(c: Counter[str]) -> list[list[Any]]:
        return [[name, round(100 * n / total, 1)] for name, n in c.most_common(top)]

    return {
        "samples": total,
        "on_cpu_pct": round(100 * total / max(1.0, seconds * PROFILE_HZ), 1),
        "duplication_pct": round(100 * in_dup / max(total, 1), 1),
        "self_pct": pct(self_counts),
        "dupkv_inclusive_pct": pct(incl),
    }


@contextlib.asynccontextmanager
async def profiled(
    pids: dict[str, int], seconds: float, out_dir: Path, label: str
) -> AsyncIterator[dict[str, Any]]:
    """py-spy records every process of `pids` for `seconds` (100 Hz, not pausing them) while
    the body runs; afterwards the yielded dict holds each one's summary (or why none)."""
    out: dict[str, Any] = {}
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    out_dir.mkdir(parents=True, exist_ok=True)
    procs = {}
    for name, pid in pids.items():
        path = out_dir / f"{label}-{name}.txt"
        procs[name] = (
            subprocess.Popen(
                [
                    exe,
                    "record",
                    "-p",
                    str(pid),
                    "-d",
                    str(max(1, round(seconds))),
                    "-r",
                    str(PROFILE_HZ),
                    "--nonblocking",
                    "-f",
                    "raw",
                    "-o",
                    str(path),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            ),
            path,
        )
    meter = CpuMeter(pids)
    try:
        yield out
    finally:
        cpu = meter.read()
        for name, (proc, path) in procs.items():
            try:
                _, err = await asyncio.to_thread(proc.communicate, None, seconds + 30)
            except subprocess.TimeoutExpired:
                stop_pid(proc)
                err = b"timed out"
            if path.exists():
                out[name] = {
                    "file": path.name,
                    "cpu_pct": cpu.get(name),
                    **summarise_profile(path.read_text(), max(1, round(seconds))),
                }
            else:
                out[name] = {"error": err.decode(errors="replace")[-300:]}


# -- small helpers --------------------------------------------------------------------------


async def connect_both(pair: Pair) -> tuple[Client, Client]:
    return await Client.connect(pair.a.meta_address), await Client.connect(pair.b.meta_address)


async def close_all(*clients: Client) -> None:
    for c in clients:
        await c.close()


async def bounded(aw: Awaitable[Any], timeout_s: float, what: str) -> Any:
    try:
        async with asyncio.timeout(timeout_s):
            return await aw
    except TimeoutError:
        raise TimeoutError(f"{what}: not done after {timeout_s:g} s") from None


def value_of(size: int) -> bytes:
    return os.urandom(size)


def keys(prefix: bytes, n: int) -> list[bytes]:
    return [prefix + b"%09d" % i for i in range(n)]
