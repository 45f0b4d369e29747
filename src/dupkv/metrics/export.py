"""Reading a registry out: Pegasus's /metrics JSON, Prometheus text, and counter rates (pure).

`parse_query` turns /metrics query args into a `MetricQuery` or raises `BadInput` (the
HTTP layer answers 400 `{"error_message": ...}`). The args are Pegasus's (reference
pegasus-kv.md §8), all comma lists:

- `types`, `ids`, `metrics`: keep only those entity types, entity ids, metric names;
- `attributes=k1,v1,k2,v2`: keep entities having *any* of these pairs (Pegasus's rule);
- `with_metric_fields`: emit only these fields of each metric;
- `detail=true`: emit every field (`type, name, unit, desc` and the values); without it and
  without `with_metric_fields`, only the brief fields `name, value, p50..p999`;
- `format=json|prometheus` (ours). A bare `/metrics` answers Prometheus text, which is what
  scrapers ask for; any of Pegasus's query args (what its shell and collector send) selects
  Pegasus's JSON, and `format=json` asks for it outright. The Prometheus text takes the
  entity/metric filters but not the field args, which mean nothing to it.

An empty list (`types=`) restricts nothing, as in Pegasus. An entity none of whose metrics
is chosen is left out of the JSON.

Prometheus text exposition 0.0.4: one family per metric name, `dupkv_<name>` (dots made
underscores), HELP with the description and unit, TYPE counter|gauge|summary. Each sample
is labelled `entity="<type>",id="<id>"` and the entity's attributes. A percentile is a
summary: one sample per quantile (`quantile="0.5"` .. `"0.999"`, NaN before the first
sample), then `_sum` and `_count` over the metric's life, so `rate(_sum)/rate(_count)` is
the mean.

`rate`/`counter_rates` compute per-second rates from two readings, as the shell shows QPS.
"""

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from dupkv.base.errors import BadInput
from dupkv.metrics.registry import (
    QUANTILES,
    Counter,
    Entity,
    Gauge,
    Metric,
    Percentile,
    Registry,
    prometheus_name,
)

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

QUANTILE_FIELDS = tuple(field for field, _ in QUANTILES)
ALL_FIELDS = ("type", "name", "unit", "desc", "value", *QUANTILE_FIELDS)
BRIEF_FIELDS = frozenset({"name", "value", *QUANTILE_FIELDS})
FORMATS = ("json", "prometheus")
QUERY_ARGS = ("with_metric_fields", "types", "ids", "attributes", "metrics", "detail", "format")
MAX_LIST_ITEMS = 1024  # items in one comma list of a query arg

_PROMETHEUS_TYPES = {Counter: "counter", Gauge: "gauge", Percentile: "summary"}


@dataclass(frozen=True)
class MetricQuery:
    """What one /metrics request asks for; empty sets restrict nothing."""

    fields: frozenset[str] = BRIEF_FIELDS
    types: frozenset[str] = frozenset()
    ids: frozenset[str] = frozenset()
    attributes: tuple[tuple[str, str], ...] = ()
    metrics: frozenset[str] = frozenset()
    format: str = "json"

    def match_entity(self, entity: Entity) -> bool:
        if self.types and entity.type not in self.types:
            return False
        if self.ids and entity.id not in self.ids:
            return False
        if self.attributes:
            return any(entity.attribute(key) == value for key, value in self.attributes)
        return True

    def chosen_metrics(self, entity: Entity) -> list[Metric]:
        if not self.metrics:
            return entity.metrics()
        return [m for m in entity.metrics() if m.name in self.metrics]

    def select(self, registry: Registry) -> Iterator[tuple[Entity, list[Metric]]]:
        """(entity, its chosen metrics) for each entity chosen with at least one metric."""
        for entity in registry.entities():
            if self.match_entity(entity):
                chosen = self.chosen_metrics(entity)
                if chosen:
                    yield entity, chosen


def _split(name: str, text: str) -> list[str]:
    items = [item.strip() for item in text.split(",")]
    items = [item for item in items if item]
    if len(items) > MAX_LIST_ITEMS:
        raise BadInput(f"{name} lists {len(items)} items; at most {MAX_LIST_ITEMS} are accepted")
    return items


def parse_query(query: Mapping[str, str]) -> MetricQuery:
    """The MetricQuery for /metrics query args; BadInput names the arg that is wrong."""
    fields: frozenset[str] | None = None
    detail = False
    types: frozenset[str] = frozenset()
    ids: frozenset[str] = frozenset()
    attributes: tuple[tuple[str, str], ...] = ()
    metrics: frozenset[str] = frozenset()
    fmt = "json" if query else "prometheus"  # a bare /metrics is a scraper's request
    for key, value in query.items():
        if key == "with_metric_fields":
            wanted = _split(key, value)
            unknown = [f for f in wanted if f not in ALL_FIELDS]
            if unknown:
                raise BadInput(
                    f"unknown metric field {unknown[0]!r} in with_metric_fields; "
                    f"accepted: {','.join(ALL_FIELDS)}"
                )
            fields = frozenset(wanted) or None
        elif key == "types":
            types = frozenset(_split(key, value))
        elif key == "ids":
            ids = frozenset(_split(key, value))
        elif key == "attributes":
            items = _split(key, value)
            if len(items) % 2:
                raise BadInput(
                    "the number of arguments for attributes should be even, since each "
                    "attribute name always pairs with a value"
                )
            attributes = tuple(zip(items[::2], items[1::2], strict=True))
        elif key == "metrics":
            metrics = frozenset(_split(key, value))
        elif key == "detail":
            if value.lower() not in ("true", "false"):
                raise BadInput(f"detail={value[:40]!r}: want true or false")
            detail = value.lower() == "true"
        elif key == "format":
            if value not in FORMATS:
                raise BadInput(f"format={value[:40]!r}: want one of {', '.join(FORMATS)}")
            fmt = value
        else:
            raise BadInput(
                f"unknown field {key[:40]}={value[:40]}; accepted: {', '.join(QUERY_ARGS)}"
            )
    if fmt == "prometheus" and (fields is not None or detail):
        raise BadInput("with_metric_fields and detail apply to format=json only")
    if fields is None:
        fields = frozenset(ALL_FIELDS) if detail else BRIEF_FIELDS
    return MetricQuery(fields, types, ids, attributes, metrics, fmt)


# -- JSON ------------------------------------------------------------------------------------


def _json_number(value: int | float) -> int | float | None:
    # json.dumps would write NaN/Infinity, which is not JSON; a collector would choke on it.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _metric_json(metric: Metric, fields: frozenset[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "type" in fields:
        out["type"] = metric.TYPE
    if "name" in fields:
        out["name"] = metric.name
    if "unit" in fields:
        out["unit"] = metric.unit
    if "desc" in fields:
        out["desc"] = metric.desc
    if isinstance(metric, Percentile):
        for field, value in metric.quantiles().items():
            if field in fields:
                out[field] = _json_number(value)
    elif "value" in fields:
        out["value"] = _json_number(metric.value)  # type: ignore[attr-defined]
    return out


def snapshot(registry: Registry, query: MetricQuery, now_ns: int) -> dict[str, Any]:
    """The /metrics JSON document (as Python objects) at `now_ns` (Unix time, ns)."""
    entities = [
        {
            "type": entity.type,
            "id": entity.id,
            "attributes": entity.attributes,
            "metrics": [_metric_json(m, query.fields) for m in chosen],
        }
        for entity, chosen in query.select(registry)
    ]
    return {
        "cluster": registry.cluster,
        "role": registry.role,
        "host": registry.host,
        "port": registry.port,
        "timestamp_ns": now_ns,
        "entities": entities,
    }


# -- Prometheus ------------------------------------------------------------------------------


def _label_value(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _help_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _sample_value(value: int | float) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "+Inf" if value > 0 else "-Inf"
        return repr(value)
    return str(int(value))


def _quantile_label(q: float) -> str:
    return repr(q)  # 0.5, 0.9, 0.95, 0.99, 0.999


def to_prometheus(registry: Registry, query: MetricQuery) -> str:
    """The registry as Prometheus text exposition format 0.0.4."""
    families: dict[str, list[tuple[str, Metric]]] = {}
    for entity, chosen in query.select(registry):
        pairs = [("entity", entity.type), ("id", entity.id), *entity.attributes.items()]
        labels = ",".join(f'{k}="{_label_value(v)}"' for k, v in pairs)
        for metric in chosen:
            families.setdefault(metric.name, []).append((labels, metric))
    lines: list[str] = []
    for name, members in families.items():
        family = prometheus_name(name)
        first = members[0][1]
        lines.append(f"# HELP {family} {_help_text(first.desc)} ({first.unit})")
        lines.append(f"# TYPE {family} {_PROMETHEUS_TYPES[type(first)]}")
        for labels, metric in members:
            if isinstance(metric, Percentile):
                empty = metric.samples() == 0
                values = metric.quantiles()
                for field, q in QUANTILES:
                    value = math.nan if empty else values[field]
                    lines.append(
                        f'{family}{{{labels},quantile="{_quantile_label(q)}"}} '
                        f"{_sample_value(value)}"
                    )
                lines.append(f"{family}_sum{{{labels}}} {_sample_value(metric.sum)}")
                lines.append(f"{family}_count{{{labels}}} {metric.count}")
            else:
                lines.append(f"{family}{{{labels}}} {_sample_value(metric.value)}")  # type: ignore[attr-defined]
    return "\n".join(lines) + "\n" if lines else ""


# -- rates -----------------------------------------------------------------------------------


def rate(earlier: float, later: float, elapsed_ns: int) -> float:
    """Per-second rate of a counter read twice, `elapsed_ns` apart. A counter that went
    down was made again (a partition reopened, a server restarted): it counted `later`
    since then, as Prometheus reads a counter reset."""
    if elapsed_ns <= 0:
        raise ValueError(f"elapsed_ns must be positive, not {elapsed_ns}")
    delta = later - earlier if later >= earlier else later
    return delta * 1e9 / elapsed_ns


MetricKey = tuple[str, str, str]  # (entity type, entity id, metric name)


def _values(doc: Mapping[str, Any]) -> dict[MetricKey, float]:
    out: dict[MetricKey, float] = {}
    for entity in doc["entities"]:
        for metric in entity["metrics"]:
            value = metric.get("value")
            if isinstance(value, int | float) and "name" in metric:
                out[(entity["type"], entity["id"], metric["name"])] = value
    return out


def counter_rates(earlier: Mapping[str, Any], later: Mapping[str, Any]) -> dict[MetricKey, float]:
    """Per-second rates between two /metrics JSON documents, for every metric with a
    `value` in both (ask for counters only: a gauge's rate means nothing)."""
    elapsed = later["timestamp_ns"] - earlier["timestamp_ns"]
    before = _values(earlier)
    return {
        key: rate(before[key], value, elapsed)
        for key, value in _values(later).items()
        if key in before
    }
