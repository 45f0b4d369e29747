"""The benchmark suite's smoke mode (`bench/suite.py --smoke`, what `make bench-smoke` runs):
every scenario starts its clusters, measures for a few seconds, stops them, and writes JSON
whose figures are there and make sense. The figures themselves mean nothing at this size."""

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = ("steady_lag", "burst", "apply", "wan", "catchup", "overhead", "client")
SMOKE_TIMEOUT_S = 240


def positive(doc: dict[str, Any], *path: str) -> float:
    value: Any = doc
    for key in path:
        assert isinstance(value, dict) and key in value, f"{'.'.join(path)} missing"
        value = value[key]
    assert isinstance(value, int | float) and value > 0, f"{'.'.join(path)} = {value!r}"
    return float(value)


def check_lag(lag: dict[str, Any]) -> None:
    for key in ("p50_ms", "p99_ms", "p999_ms", "max_ms"):
        positive(lag, key)
    assert lag["p50_ms"] <= lag["p99_ms"] <= lag["p999_ms"] <= lag["max_ms"]
    assert lag["not_seen"] == 0, f"{lag['not_seen']} probes never became visible at the remote"


def check_phases(phases: list[dict[str, Any]]) -> None:
    assert phases
    for ph in phases:
        positive(ph, "achieved_rate")
        check_lag(ph["lag"])
        assert ph["series"]["probes"], "no lag-over-time series"
        assert ph["server_lag_ms"]["p99"] >= 0


def test_smoke_run_writes_sane_results_for_every_scenario(tmp_path: Path) -> None:
    out = tmp_path / "results"
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "suite.py"),
            "--smoke",
            "--out",
            str(out),
            "--dir",
            str(tmp_path / "data"),
        ],
        capture_output=True,
        text=True,
        timeout=SMOKE_TIMEOUT_S,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    docs = {name: json.loads((out / f"{name}.json").read_text()) for name in SCENARIOS}
    for name, doc in docs.items():
        assert "error" not in doc, f"{name}: {doc['error']}"
        assert doc["smoke"] is True
        positive(doc, "machine", "cores")
        assert doc["machine"]["commit"] and doc["machine"]["cpu"]
        for goal in doc["goals"]:
            assert {"name", "value", "target", "met"} <= goal.keys()

    steady = docs["steady_lag"]
    positive(steady, "max_rate", "rate")
    check_phases(steady["phases"])
    assert [ph["load_fraction"] for ph in steady["phases"]] == [0.25, 0.5, 0.75]

    burst = docs["burst"]
    positive(burst, "dupkv", "write_rate")
    positive(burst, "dupkv", "last_ack_to_visible_ms")
    redis = burst["redis"]
    assert "skipped" in redis or positive(redis, "last_ack_to_visible_ms")

    for size in ("100", "1024"):
        positive(docs["apply"], "drain", size, "rate")
        positive(docs["apply"], "direct", size, "rate")

    wan = docs["wan"]
    check_phases(wan["steady_lag"]["phases"])
    positive(wan, "apply", "drain", "100", "rate")
    positive(wan, "ratios_to_loopback", "drain_rate_100B")
    # 30 ms each way: no write is visible at the remote sooner than 30 ms after it was sent.
    for ph in wan["steady_lag"]["phases"]:
        assert ph["lag"]["from_issue"]["p50_ms"] >= 30

    catchup = docs["catchup"]["result"]
    positive(catchup, "backlog_at_resume")
    positive(catchup, "drain_over_write")
    positive(catchup, "resume_to_drained_s")
    check_lag(catchup["lag"])

    overhead = docs["overhead"]["same_disk"]["result"]
    positive(overhead, "ratio")
    positive(overhead, "cpu_us_per_write", "on", "source-replica0")

    client = docs["client"]
    assert {(r["op"], r["in_flight"]) for r in client["results"]} == {
        ("set", 1),
        ("get", 1),
        ("set", 64),
        ("get", 64),
    }
    for r in client["results"]:
        positive(r, "ops_per_s")
    assert "skipped" in client["redis"] or len(client["ratios"]) == 4

    section = (out / "BENCHMARKS.section.md").read_text()
    assert "### Goals" in section and "Smoke run" in section
