"""Metrics in Pegasus's framework: a registry of entities and metrics (pure core), its
/metrics JSON and Prometheus exporters (pure), and the process gauges read from /proc
(shell). See dupkv.metrics.registry for the model and dupkv.metrics.export for the wire.

    registry = Registry("replica", "onebox", "host1", 34801)
    replica = registry.entity("replica", "replica@2.5", {"table_id": "2", "partition_id": "5"})
    gets = replica.counter("get_requests", Unit.REQUESTS, "The number of GET requests")
    latency = replica.percentile("get_latency_ns", Unit.NANOSECONDS, "The latency of GET")
    gets.inc()
    latency.observe(1200)
    doc = snapshot(registry, parse_query({"types": "replica"}), now_ns=time.time_ns())
"""

from dupkv.metrics.export import (
    PROMETHEUS_CONTENT_TYPE,
    MetricQuery,
    counter_rates,
    parse_query,
    rate,
    snapshot,
    to_prometheus,
)
from dupkv.metrics.process import install_process_metrics
from dupkv.metrics.registry import (
    Counter,
    Entity,
    Gauge,
    Metric,
    Percentile,
    Registry,
    Unit,
    prometheus_name,
)

__all__ = [
    "PROMETHEUS_CONTENT_TYPE",
    "Counter",
    "Entity",
    "Gauge",
    "Metric",
    "MetricQuery",
    "Percentile",
    "Registry",
    "Unit",
    "counter_rates",
    "install_process_metrics",
    "parse_query",
    "prometheus_name",
    "rate",
    "snapshot",
    "to_prometheus",
]
