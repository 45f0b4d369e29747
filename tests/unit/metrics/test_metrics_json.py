"""The /metrics JSON document, its query args, and counter rates."""

import json

import pytest

from dupkv.base.errors import BadInput
from dupkv.metrics import Registry, Unit, counter_rates, parse_query, rate, snapshot

NOW_NS = 1_700_000_000_000_000_000


def cluster() -> Registry:
    """A replica server with two partitions of table 2, one of table 3, and its server."""
    r = Registry("replica", "onebox", "host1", 34801)
    for app, pidx in [(2, 5), (2, 6), (3, 0)]:
        e = r.entity(
            "replica", f"replica@{app}.{pidx}", {"table_id": str(app), "partition_id": str(pidx)}
        )
        e.counter("get_requests", Unit.REQUESTS, "The number of GET requests").inc(10 * pidx + app)
        p = e.percentile("get_latency_ns", Unit.NANOSECONDS, "The latency of GET requests")
        for v in range(1, 101):
            p.observe(v)
        e.gauge("dup_pending_mutations", Unit.MUTATIONS, "Mutations not yet shipped").set(pidx)
    r.entity("server", "server").gauge("resident_mem_usage_mb", Unit.MEGABYTES, "RSS").set(64)
    return r


def doc(r: Registry, **query: str) -> dict:
    out = snapshot(r, parse_query(query), NOW_NS)
    json.dumps(out, allow_nan=False)  # always valid JSON
    return out


def ids(d: dict) -> list[str]:
    return [e["id"] for e in d["entities"]]


def test_default_document_has_pegasus_shape_and_brief_fields():
    r = Registry("replica", "onebox", "host1", 34801)
    e = r.entity("replica", "replica@2.5", {"table_id": "2", "partition_id": "5"})
    e.counter("get_requests", Unit.REQUESTS, "GET requests").inc(123)
    lat = e.percentile("get_latency_ns", Unit.NANOSECONDS, "GET latency")
    for v in range(100):
        lat.observe(v)
    assert doc(r) == {
        "cluster": "onebox",
        "role": "replica",
        "host": "host1",
        "port": 34801,
        "timestamp_ns": NOW_NS,
        "entities": [
            {
                "type": "replica",
                "id": "replica@2.5",
                "attributes": {"table_id": "2", "partition_id": "5"},
                "metrics": [
                    {"name": "get_requests", "value": 123},
                    {
                        "name": "get_latency_ns",
                        "p50": 50,
                        "p90": 90,
                        "p95": 95,
                        "p99": 99,
                        "p999": 99,
                    },
                ],
            }
        ],
    }


def test_detail_adds_type_unit_and_desc_in_pegasus_order():
    d = doc(cluster(), ids="replica@2.5", detail="true")
    metrics = d["entities"][0]["metrics"]
    assert metrics[0] == {
        "type": "Counter",
        "name": "get_requests",
        "unit": "Requests",
        "desc": "The number of GET requests",
        "value": 52,
    }
    assert list(metrics[1]) == ["type", "name", "unit", "desc", "p50", "p90", "p95", "p99", "p999"]
    assert metrics[1]["type"] == "Percentile" and metrics[1]["unit"] == "NanoSeconds"
    assert metrics[2]["type"] == "Gauge" and metrics[2]["value"] == 5
    assert doc(cluster(), detail="false") == doc(cluster())
    assert doc(cluster(), detail="TRUE") == doc(cluster(), detail="true")


def test_with_metric_fields_keeps_only_those_fields():
    d = doc(cluster(), ids="replica@2.5", with_metric_fields="name,p99")
    assert d["entities"][0]["metrics"] == [
        {"name": "get_requests"},
        {"name": "get_latency_ns", "p99": 100},
        {"name": "dup_pending_mutations"},
    ]
    # As in Pegasus, with_metric_fields wins over detail, and a metric with none of the
    # fields is still listed (empty).
    d = doc(cluster(), ids="replica@2.5", with_metric_fields="value", detail="true")
    assert d["entities"][0]["metrics"] == [{"value": 52}, {}, {"value": 5}]


def test_types_ids_and_metrics_filters():
    r = cluster()
    assert ids(doc(r)) == ["replica@2.5", "replica@2.6", "replica@3.0", "server"]
    assert ids(doc(r, types="server")) == ["server"]
    assert ids(doc(r, types="replica,table")) == ["replica@2.5", "replica@2.6", "replica@3.0"]
    assert ids(doc(r, ids="replica@3.0, server")) == ["replica@3.0", "server"]
    assert ids(doc(r, types="server", ids="replica@3.0")) == []
    d = doc(r, metrics="get_requests,resident_mem_usage_mb")
    assert [[m["name"] for m in e["metrics"]] for e in d["entities"]] == [
        ["get_requests"],
        ["get_requests"],
        ["get_requests"],
        ["resident_mem_usage_mb"],
    ]
    # An entity none of whose metrics is chosen is left out.
    assert ids(doc(r, metrics="resident_mem_usage_mb")) == ["server"]
    assert ids(doc(r, metrics="no_such_metric")) == []
    # An empty list restricts nothing, as in Pegasus.
    assert doc(r, types="", ids=",", metrics="") == doc(r)


def test_attributes_match_any_pair():
    r = cluster()
    assert ids(doc(r, attributes="table_id,2")) == ["replica@2.5", "replica@2.6"]
    assert ids(doc(r, attributes="table_id,3,partition_id,5")) == ["replica@2.5", "replica@3.0"]
    assert ids(doc(r, attributes="table_id,9")) == []
    assert ids(doc(r, attributes="no_such_attr,2")) == []
    with pytest.raises(BadInput, match="should be even"):
        parse_query({"attributes": "table_id,2,partition_id"})


@pytest.mark.parametrize(
    "query,message",
    [
        ({"typez": "replica"}, "unknown field typez=replica; accepted: with_metric_fields"),
        ({"with_metric_fields": "name,valu"}, "unknown metric field 'valu'"),
        ({"detail": "yes"}, "detail='yes': want true or false"),
        ({"format": "xml"}, "format='xml': want one of json, prometheus"),
        ({"format": "prometheus", "detail": "true"}, "apply to format=json only"),
        ({"format": "prometheus", "with_metric_fields": "name"}, "apply to format=json only"),
        ({"ids": ",".join(str(i) for i in range(1025))}, "at most 1024"),
    ],
)
def test_bad_query_args_name_what_is_wrong(query, message):
    with pytest.raises(BadInput) as info:
        parse_query(query)
    assert message in str(info.value)


def test_empty_percentile_reads_zero_and_non_finite_gauges_read_null():
    r = Registry("meta", "onebox", "h", 34601)
    e = r.entity("server", "server")
    e.percentile("lag_ms", Unit.MILLISECONDS, "")
    e.gauge("ratio", Unit.PERCENT, "").set(float("nan"))
    e.gauge("big", Unit.BYTES, "").set(float("inf"))
    assert doc(r)["entities"][0]["metrics"] == [
        {"name": "lag_ms", "p50": 0, "p90": 0, "p95": 0, "p99": 0, "p999": 0},
        {"name": "ratio", "value": None},
        {"name": "big", "value": None},
    ]


def test_removed_entity_is_not_exported():
    r = cluster()
    r.remove_entity("replica", "replica@2.6")
    assert ids(doc(r)) == ["replica@2.5", "replica@3.0", "server"]


def test_port_can_be_set_after_binding():
    r = cluster()
    r.port = 40123
    assert doc(r)["port"] == 40123


# -- rates -----------------------------------------------------------------------------------


def test_rate_per_second_and_after_a_reset():
    assert rate(100, 400, 2_000_000_000) == 150.0
    assert rate(400, 30, 1_000_000_000) == 30.0  # made again: counted 30 since
    with pytest.raises(ValueError):
        rate(1, 2, 0)


def test_counter_rates_between_two_documents():
    r = cluster()
    first = snapshot(r, parse_query({"metrics": "get_requests"}), NOW_NS)
    r.get_entity("replica", "replica@2.5").counter("get_requests", "Requests", "").inc(500)
    r.remove_entity("replica", "replica@3.0")
    r.entity("replica", "replica@3.1").counter("get_requests", "Requests", "").inc(7)
    second = snapshot(r, parse_query({"metrics": "get_requests"}), NOW_NS + 10_000_000_000)
    assert counter_rates(first, second) == {
        ("replica", "replica@2.5", "get_requests"): 50.0,
        ("replica", "replica@2.6", "get_requests"): 0.0,
    }
