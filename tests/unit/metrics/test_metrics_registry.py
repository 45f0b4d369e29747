"""The metrics registry: entities, counters, gauges, windowed percentiles, limits."""

import math
import random
import tracemalloc

import pytest

from dupkv.base.errors import InvariantError
from dupkv.metrics import Counter, Gauge, Percentile, Registry, Unit


def registry(**kw) -> Registry:
    return Registry("replica", "onebox", "host1", 34801, **kw)


def replica(r: Registry, app: int = 2, pidx: int = 5):
    return r.entity(
        "replica", f"replica@{app}.{pidx}", {"table_id": str(app), "partition_id": str(pidx)}
    )


# -- counters and gauges ---------------------------------------------------------------------


def test_counter_counts_up_only():
    c = replica(registry()).counter("get_requests", Unit.REQUESTS, "GET requests")
    assert c.value == 0
    c.inc()
    c.inc(41)
    c.inc(0)
    assert c.value == 42
    with pytest.raises(AssertionError, match="cannot go down"):
        c.inc(-1)
    assert c.value == 42


def test_gauge_goes_both_ways():
    g = replica(registry()).gauge("dup_pending_mutations", Unit.MUTATIONS, "pending")
    assert g.value == 0
    g.set(10)
    g.inc()
    g.dec(4)
    assert g.value == 7
    g.set(2.5)
    assert g.value == 2.5


def test_making_a_metric_twice_returns_the_same_object():
    e = replica(registry())
    assert e.counter("put_requests", Unit.REQUESTS, "x") is e.counter(
        "put_requests", Unit.REQUESTS, "x"
    )
    assert e.gauge("g", Unit.KEYS, "x") is e.gauge("g", Unit.KEYS, "x")
    assert e.percentile("p", Unit.NANOSECONDS, "x") is e.percentile("p", Unit.NANOSECONDS, "x")
    assert [m.name for m in e.metrics()] == ["put_requests", "g", "p"]
    assert isinstance(e.get("g"), Gauge) and e.get("nope") is None


def test_a_name_has_one_kind():
    r = registry()
    e = replica(r)
    e.counter("get_requests", Unit.REQUESTS, "x")
    with pytest.raises(InvariantError, match="is a Counter, not a Gauge"):
        e.gauge("get_requests", Unit.REQUESTS, "x")
    with pytest.raises(InvariantError, match="is a Counter elsewhere, not a Percentile"):
        replica(r, 2, 6).percentile("get_requests", Unit.REQUESTS, "x")
    # Same kind in another entity (or another entity type) is fine.
    assert isinstance(r.entity("table", "table@2").counter("get_requests", "Requests", ""), Counter)


def test_names_that_would_clash_in_prometheus_are_refused():
    e = replica(registry())
    e.percentile("get_latency_ns", Unit.NANOSECONDS, "x")
    with pytest.raises(InvariantError, match="dupkv_get_latency_ns_count"):
        e.counter("get_latency_ns_count", Unit.REQUESTS, "x")
    e.counter("a_b", Unit.REQUESTS, "x")
    with pytest.raises(InvariantError, match="dupkv_a_b"):
        e.counter("a.b", Unit.REQUESTS, "x")
    e.counter("put_sum", Unit.REQUESTS, "x")
    with pytest.raises(InvariantError, match="dupkv_put_sum"):
        e.percentile("put", Unit.NANOSECONDS, "x")


@pytest.mark.parametrize(
    "name,unit",
    [
        ("GetRequests", "Requests"),
        ("get-requests", "Requests"),
        ("", "Requests"),
        ("x" * 129, "Requests"),
        ("get_requests", "requests"),
        ("get_requests", ""),
    ],
)
def test_bad_metric_names_and_units_are_refused(name, unit):
    with pytest.raises(InvariantError):
        replica(registry()).counter(name, unit, "x")


# -- entities --------------------------------------------------------------------------------


def test_entities_are_keyed_by_type_and_id():
    r = registry()
    a = replica(r)
    assert replica(r) is a
    assert r.entity("table", "replica@2.5") is not a  # another type, another entity
    assert r.get_entity("replica", "replica@2.5") is a
    assert [(e.type, e.id) for e in r.entities()] == [
        ("replica", "replica@2.5"),
        ("table", "replica@2.5"),
    ]
    assert len(r) == 2


def test_attributes_are_replaced_when_given_and_kept_when_not():
    r = registry()
    e = r.entity("replica", "replica@1.0", {"table_id": "1", "partition_id": "0"})
    assert r.entity("replica", "replica@1.0") is e
    assert e.attributes == {"table_id": "1", "partition_id": "0"}
    r.entity("replica", "replica@1.0", {"table_id": "1"})
    assert e.attributes == {"table_id": "1"} and e.attribute("partition_id") is None
    e.attributes["table_id"] = "9"  # a copy: the entity is not changed through it
    assert e.attribute("table_id") == "1"


def test_a_removed_entity_disappears_and_comes_back_fresh():
    r = registry()
    c = replica(r).counter("get_requests", Unit.REQUESTS, "x")
    c.inc(5)
    assert r.remove_entity("replica", "replica@2.5")
    assert not r.remove_entity("replica", "replica@2.5")
    assert r.entities() == []
    c.inc()  # a holder's object keeps working, unseen
    again = replica(r).counter("get_requests", Unit.REQUESTS, "x")
    assert again is not c and again.value == 0


@pytest.mark.parametrize(
    "type_,id_,attrs",
    [
        ("Replica", "r", {}),
        ("replica", "", {}),
        ("replica", "r" * 257, {}),
        ("replica", "r", {"entity": "x"}),
        ("replica", "r", {"id": "x"}),
        ("replica", "r", {"quantile": "x"}),
        ("replica", "r", {"__name__": "x"}),
        ("replica", "r", {"table-id": "x"}),
        ("replica", "r", {"table_id": 2}),
        ("replica", "r", {"table_id": "v" * 257}),
        ("replica", "r", {f"k{i}": "v" for i in range(17)}),
    ],
)
def test_bad_entities_are_refused(type_, id_, attrs):
    r = registry()
    with pytest.raises(InvariantError):
        r.entity(type_, id_, attrs)
    assert r.entities() == []


def test_limits_on_entities_metrics_and_names():
    r = registry(max_entities=2, max_metrics_per_entity=2, max_metric_names=3)
    e = r.entity("server", "server")
    r.entity("table", "table@1")
    with pytest.raises(InvariantError, match="more than 2 metric entities"):
        r.entity("table", "table@2")
    r.remove_entity("table", "table@1")
    r.entity("table", "table@2")  # room again once one is gone
    e.counter("a", Unit.REQUESTS, "")
    e.counter("b", Unit.REQUESTS, "")
    with pytest.raises(InvariantError, match="more than 2 metrics"):
        e.counter("c", Unit.REQUESTS, "")
    t = r.entity("table", "table@2")
    t.counter("c", Unit.REQUESTS, "")
    with pytest.raises(InvariantError, match="more than 3 metric names"):
        t.counter("d", Unit.REQUESTS, "")
    with pytest.raises(ValueError):
        registry(max_entities=0)


def test_collectors_run_on_collect_and_a_failing_one_is_loud():
    r = registry()
    g = r.entity("server", "server").gauge("resident_mem_usage_mb", Unit.MEGABYTES, "")
    r.add_collector("mem", lambda: g.set(g.value + 1))
    r.collect()
    r.collect()
    assert g.value == 2
    r.add_collector("mem", lambda: g.set(100))  # same name replaces
    r.collect()
    assert g.value == 100

    def broken() -> None:
        raise RuntimeError("bug")

    r.add_collector("broken", broken)
    with pytest.raises(RuntimeError):
        r.collect()
    r.remove_collector("broken")
    r.collect()


# -- percentiles -----------------------------------------------------------------------------


def percentile(window: int = 4096) -> Percentile:
    return replica(registry()).percentile("get_latency_ns", Unit.NANOSECONDS, "x", window=window)


def read_back(value: int) -> int:
    """What a percentile holding only `value` reports for it."""
    p = percentile()
    p.observe(value)
    return p.quantiles()["p50"]


def test_percentile_is_zero_before_the_first_sample():
    p = percentile()
    assert p.quantiles() == {"p50": 0, "p90": 0, "p95": 0, "p99": 0, "p999": 0}
    assert (p.count, p.sum, p.samples()) == (0, 0, 0)


def test_small_values_are_exact_and_large_ones_within_one_in_128():
    for v in range(-200, 200):
        if abs(v) < 128:
            assert read_back(v) == v
    rng = random.Random(3)
    values = [rng.randrange(1, 1 << rng.randrange(8, 64)) for _ in range(3000)]
    values += [1 << k for k in range(7, 64)] + [(1 << k) - 1 for k in range(7, 64)]
    values += [-v for v in values[:500]]
    for v in values:
        got = read_back(v)
        assert abs(got - v) <= abs(v) / 128, (v, got)
    # Reading back keeps the order of the samples (ties allowed).
    ordered = sorted(values)
    read = [read_back(v) for v in ordered]
    assert read == sorted(read)


def test_percentile_on_a_shuffled_uniform_window():
    p = percentile(window=8192)
    values = list(range(4096))
    random.Random(7).shuffle(values)
    for v in values:
        p.observe(v)
    # The k-th quantile of n sorted samples is the one at index int(n * k), as in Pegasus;
    # 2048 and up are read back from their bucket (midpoints), at most 1/128 off.
    want = {"p50": 2048, "p90": 3686, "p95": 3891, "p99": 4055, "p999": 4091}
    got = p.quantiles()
    assert got.keys() == want.keys()
    for field, v in want.items():
        assert abs(got[field] - v) <= v / 128, (field, got[field], v)
    assert p.count == 4096 and p.sum == sum(values) and p.samples() == 4096
    small = percentile()
    for v in range(100):
        small.observe(v)
    assert small.quantiles() == {"p50": 50, "p90": 90, "p95": 95, "p99": 99, "p999": 99}


def test_percentile_tracks_a_known_distribution():
    rng = random.Random(20240501)
    p = percentile()
    mean = 1_000_000.0  # exponential latencies, 1 ms mean, in ns
    for _ in range(50_000):
        p.observe(int(rng.expovariate(1 / mean)))
    got = p.quantiles()
    for field, q, tolerance in [
        ("p50", 0.5, 0.08),
        ("p90", 0.9, 0.08),
        ("p95", 0.95, 0.10),
        ("p99", 0.99, 0.15),
        ("p999", 0.999, 0.40),  # a few of 2048..4096 samples lie above it: noisy by nature
    ]:
        want = -math.log(1 - q) * mean
        assert abs(got[field] - want) / want < tolerance, (field, got[field], want)


def test_percentile_window_slides_to_the_recent_samples():
    big = 1_003_520  # 1e6 lies in the bucket [999_424, 1_007_616), read back as its midpoint
    p = percentile(window=200)  # two generations of 100 samples
    for _ in range(100):
        p.observe(10)
    assert p.samples() == 100 and set(p.quantiles().values()) == {10}
    for _ in range(99):
        p.observe(1_000_000)
    # 199 samples, sorted: 100 tens then 99 millions; the k-th is at index int(199 * k).
    assert p.samples() == 199
    assert p.quantiles() == {"p50": 10, "p90": big, "p95": big, "p99": big, "p999": big}
    p.observe(1_000_000)  # the current generation is full: it replaces the one of tens
    assert p.samples() == 100 and set(p.quantiles().values()) == {big}
    assert p.quantiles() is not p.quantiles()  # callers get their own copy
    assert p.count == 200 and p.sum == 100 * 10 + 100 * 1_000_000


def test_negative_samples_order_below_the_rest():
    p = percentile()  # a lag under clock skew can be negative
    for v in range(-100, 100):
        p.observe(v * 1000)
    # Sorted, the 200 samples run -100_000 .. 99_000; the k-th is at index int(200 * k).
    want = {"p50": 0, "p90": 80_000, "p95": 90_000, "p99": 98_000, "p999": 99_000}
    got = p.quantiles()
    assert got.keys() == want.keys()
    assert all(abs(got[f] - v) <= v / 128 for f, v in want.items()), got
    assert p.sum == -100_000


def test_percentile_memory_is_bounded():
    # Worst case: samples spread over every magnitude, so each generation touches as many
    # buckets as it can. Memory must stop growing once two generations are full.
    rng = random.Random(11)
    values = [rng.randrange(1 << rng.randrange(1, 63)) for _ in range(20_000)]
    p = percentile(window=4096)
    tracemalloc.start()
    try:
        held = []
        for _ in range(5):
            for v in values:
                p.observe(v)
            p.quantiles()
            held.append(tracemalloc.get_traced_memory()[0])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert p.samples() <= 4096 and p.count == 100_000
    # Two generations of 2048 wide-spread samples (~200 KB) whatever the number of rounds,
    # and a merge on top while quantiles are computed.
    assert max(held) < 256 * 1024, held
    assert peak < 512 * 1024, peak


def test_percentile_takes_integers_only():
    p = percentile()
    with pytest.raises(AttributeError):
        p.observe(1.5)  # type: ignore[arg-type]  # a float is not truncated quietly
    assert p.count == 0 and p.sum == 0


def test_percentile_window_must_be_bounded():
    with pytest.raises(InvariantError):
        percentile(window=1)
    with pytest.raises(InvariantError):
        percentile(window=65537)
    assert percentile(window=4096).window == 4096
