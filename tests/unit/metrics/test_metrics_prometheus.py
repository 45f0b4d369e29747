"""The Prometheus text exposition (0.0.4), parsed back line by line by a strict reader."""

import math
import re

import pytest

from dupkv.metrics import Registry, Unit, parse_query, to_prometheus

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = re.compile(rf"({_NAME})(?:\{{(.*)\}})? (\S+)(?: (-?\d+))?\Z")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\\\|\\"|\\n)*)"(,|\Z)')
_TYPES = {"counter", "gauge", "summary", "histogram", "untyped"}


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "\\": "\\", '"': '"'}[m.group(1)], text)


def _labels(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    pos = 0
    while pos < len(text):
        m = _LABEL.match(text, pos)
        assert m, f"bad label set at {text[pos:]!r}"
        assert m.group(1) not in out, f"label {m.group(1)} twice"
        out[m.group(1)] = _unescape(m.group(2))
        pos = m.end()
    return out


def _value(text: str) -> float:
    assert text in ("NaN", "+Inf", "-Inf") or re.fullmatch(r"-?\d+(\.\d+)?(e[+-]?\d+)?", text), text
    return float(text.replace("Inf", "inf").replace("NaN", "nan"))


def parse(text: str) -> dict[str, dict]:
    """{family: {"help", "type", "samples": [(name, labels, value)]}}, asserting the rules
    of the format: newline-terminated lines; HELP and TYPE at most once per family and
    before its samples; a family's samples contiguous; summary samples named family,
    family_sum, family_count; no sample (name, labels) twice."""
    families: dict[str, dict] = {}
    seen: set[tuple[str, tuple]] = set()
    current = None
    assert text == "" or text.endswith("\n")
    for line in text.splitlines():
        assert line, "blank line"
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            _, kind, name, *rest = line.split(" ", 3)
            assert re.fullmatch(_NAME, name), name
            fam = families.setdefault(name, {"help": None, "type": None, "samples": []})
            assert not fam["samples"], f"{kind} for {name} after its samples"
            key = kind.lower()
            assert fam[key] is None, f"second {kind} for {name}"
            fam[key] = _unescape(rest[0]) if rest else ""
            if key == "type":
                assert fam["type"] in _TYPES, line
            current = name
            continue
        assert not line.startswith("#"), line
        m = _SAMPLE.match(line)
        assert m, f"bad sample line {line!r}"
        name, labels, value = m.group(1), _labels(m.group(2) or ""), _value(m.group(3))
        family = current
        assert family is not None, f"sample {name} before any TYPE"
        allowed = {family}
        if families[family]["type"] == "summary":
            allowed |= {family + "_sum", family + "_count"}
        assert name in allowed, f"{name} outside its family {family}"
        key = (name, tuple(sorted(labels.items())))
        assert key not in seen, f"sample {key} twice"
        seen.add(key)
        families[family]["samples"].append((name, labels, value))
    return families


def exposition(r: Registry, **query: str) -> dict[str, dict]:
    return parse(to_prometheus(r, parse_query({"format": "prometheus", **query})))


def replica_server() -> Registry:
    r = Registry("replica", "onebox", "host1", 34801)
    for pidx in (5, 6):
        e = r.entity("replica", f"replica@2.{pidx}", {"table_id": "2", "partition_id": str(pidx)})
        e.counter("get_requests", Unit.REQUESTS, "The number of GET requests").inc(pidx)
        lat = e.percentile("get_latency_ns", Unit.NANOSECONDS, "The latency of GET requests")
        for v in range(1, 101):
            lat.observe(v + pidx - 5)
    r.entity("server", "server").gauge("resident_mem_usage_mb", Unit.MEGABYTES, "RSS").set(64.5)
    return r


def test_families_types_help_and_labels():
    fams = exposition(replica_server())
    assert list(fams) == [
        "dupkv_get_requests",
        "dupkv_get_latency_ns",
        "dupkv_resident_mem_usage_mb",
    ]
    gets = fams["dupkv_get_requests"]
    assert gets["type"] == "counter"
    assert gets["help"] == "The number of GET requests (Requests)"
    assert gets["samples"] == [
        (
            "dupkv_get_requests",
            {"entity": "replica", "id": "replica@2.5", "table_id": "2", "partition_id": "5"},
            5.0,
        ),
        (
            "dupkv_get_requests",
            {"entity": "replica", "id": "replica@2.6", "table_id": "2", "partition_id": "6"},
            6.0,
        ),
    ]
    assert fams["dupkv_resident_mem_usage_mb"]["type"] == "gauge"
    assert fams["dupkv_resident_mem_usage_mb"]["samples"] == [
        ("dupkv_resident_mem_usage_mb", {"entity": "server", "id": "server"}, 64.5)
    ]


def test_percentile_is_a_summary_with_quantiles_sum_and_count():
    fam = exposition(replica_server(), ids="replica@2.5")["dupkv_get_latency_ns"]
    assert fam["type"] == "summary"
    base = {"entity": "replica", "id": "replica@2.5", "table_id": "2", "partition_id": "5"}
    by_quantile = {
        labels["quantile"]: value for name, labels, value in fam["samples"] if "quantile" in labels
    }
    assert by_quantile == {"0.5": 51, "0.9": 91, "0.95": 96, "0.99": 100, "0.999": 100}
    assert ("dupkv_get_latency_ns_sum", base, 5050) in fam["samples"]
    assert ("dupkv_get_latency_ns_count", base, 100) in fam["samples"]
    assert len(fam["samples"]) == 7


def test_empty_percentile_quantiles_are_nan():
    r = Registry("replica", "onebox", "h", 1)
    r.entity("server", "server").percentile("dup_time_lag_ms", Unit.MILLISECONDS, "lag")
    samples = exposition(r)["dupkv_dup_time_lag_ms"]["samples"]
    assert all(math.isnan(v) for n, labels, v in samples if "quantile" in labels)
    assert [(n, v) for n, labels, v in samples if "quantile" not in labels] == [
        ("dupkv_dup_time_lag_ms_sum", 0),
        ("dupkv_dup_time_lag_ms_count", 0),
    ]


def test_awkward_label_values_and_help_text_round_trip():
    r = Registry("replica", "onebox", "h", 1)
    nasty = 'a "quoted" back\\slash\nnewline'
    e = r.entity("connection", 'connection@"x"', {"peer": nasty})
    e.gauge("open.streams", Unit.TASKS, "line one\nback\\slash").set(float("inf"))
    e.gauge("neg", Unit.TASKS, "").set(float("-inf"))
    e.gauge("nan", Unit.TASKS, "").set(float("nan"))
    fams = exposition(r)
    fam = fams["dupkv_open_streams"]  # dots made underscores
    assert fam["help"] == "line one\nback\\slash (Tasks)"
    ((_, labels, value),) = fam["samples"]
    assert labels == {"entity": "connection", "id": 'connection@"x"', "peer": nasty}
    assert value == math.inf
    assert fams["dupkv_neg"]["samples"][0][2] == -math.inf
    assert math.isnan(fams["dupkv_nan"]["samples"][0][2])


def test_large_and_float_values_are_exact():
    r = Registry("replica", "onebox", "h", 1)
    e = r.entity("server", "server")
    e.counter("bytes", Unit.BYTES, "").inc(2**62 + 1)
    e.gauge("ratio", Unit.PERCENT, "").set(0.1)
    text = to_prometheus(r, parse_query({"format": "prometheus"}))
    assert 'dupkv_bytes{entity="server",id="server"} 4611686018427387905\n' in text
    assert 'dupkv_ratio{entity="server",id="server"} 0.1\n' in text


def test_filters_apply_and_an_empty_registry_exports_nothing():
    r = replica_server()
    assert list(exposition(r, types="server")) == ["dupkv_resident_mem_usage_mb"]
    assert list(exposition(r, metrics="get_requests", attributes="partition_id,6")) == [
        "dupkv_get_requests"
    ]
    assert len(exposition(r, attributes="partition_id,6")["dupkv_get_requests"]["samples"]) == 1
    assert to_prometheus(Registry("meta", "c", "h", 1), parse_query({})) == ""


def test_the_reader_is_strict():
    # The reader above must catch what it claims to, or the tests prove nothing.
    for bad in [
        "x 1",  # no trailing newline
        "# TYPE x counter\n# TYPE x counter\nx 1\n",
        "# TYPE x counter\nx 1\n# HELP x late\n",
        '# TYPE x counter\nx{a="1",a="2"} 1\n',
        '# TYPE x counter\nx{a="unescaped"quote"} 1\n',
        "# TYPE x counter\nx 1\nx 1\n",
        "# TYPE x summary\nx_bucket 1\n",
        "# TYPE x counter\nx one\n",
    ]:
        with pytest.raises(AssertionError):
            parse(bad)
