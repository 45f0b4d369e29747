"""The metrics registry: entities and their counters, gauges and percentiles (pure core).

Mirrors Pegasus's metrics framework (reference pegasus-kv.md §8): a registry holds entities
keyed by (type, id), each with string attributes (`replica@2.5`, `table_id=2`,
`partition_id=5`) and its metrics, each with a name, a unit and a description. No IO, no
clock: exporters (dupkv.metrics.export) read the registry, and whatever needs the outside
world to refresh a gauge (dupkv.metrics.process reads /proc) is a *collector* that the shell
runs through `Registry.collect()` just before it exports.

Creating is idempotent: asking an entity for a metric it already has returns the same
object, so a component can look its metrics up again instead of threading them around.
`remove_entity` drops an entity from every later export (a closed partition disappears);
objects still held keep working but are seen by no one, and an entity made again under the
same key starts from zero, which counter rates treat as a restart.

Hot path: `Counter.inc`, `Gauge.set/inc/dec` and `Percentile.observe` are a few attribute
stores (bench/metrics.py measures them). They are meant to be called from the event loop's
thread; an update racing with another thread may be lost, never corrupted.

Limits: entities per registry, metrics per entity, distinct metric names, attributes per
entity, the length of every name, id and attribute, and each percentile's sample window.
Breaking one is a bug in the caller (an entity per connection that is never removed, a
metric name built from user input), so it raises `InvariantError` rather than dropping data
quietly.

A metric name has one kind across the registry (`get_requests` cannot be a counter in one
entity and a gauge in another), and no two names may map to the same Prometheus family; both
are needed for a valid Prometheus exposition.
"""

import bisect
import itertools
import re
from collections.abc import Callable, Iterator, Mapping
from typing import TypeVar

from dupkv.base.errors import InvariantError

DEFAULT_MAX_ENTITIES = 65536
DEFAULT_MAX_METRICS_PER_ENTITY = 256
DEFAULT_MAX_METRIC_NAMES = 4096
MAX_ATTRIBUTES = 16
MAX_COLLECTORS = 64
MAX_NAME_CHARS = 128  # metric names, entity types, attribute keys
MAX_VALUE_CHARS = 256  # entity ids, attribute values
MAX_DESC_CHARS = 512

# Pegasus's percentile keeps the last 4096 samples (`percentile<T>(..., sample_size = 4096)`).
DEFAULT_WINDOW = 4096
MAX_WINDOW = 65536

# (field name in JSON, quantile) in Pegasus's order; p999 is the 99.9th.
QUANTILES: tuple[tuple[str, float], ...] = (
    ("p50", 0.5),
    ("p90", 0.9),
    ("p95", 0.95),
    ("p99", 0.99),
    ("p999", 0.999),
)

# Label names the Prometheus exporter uses itself; attributes may not take them.
RESERVED_ATTRIBUTES = frozenset({"entity", "id", "quantile"})

_METRIC_NAME = re.compile(r"[a-z][a-z0-9_.]*\Z")
_ENTITY_TYPE = re.compile(r"[a-z][a-z0-9_]*\Z")
_ATTRIBUTE_KEY = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
_UNIT = re.compile(r"[A-Z][A-Za-z]*\Z")


class Unit:
    """Unit names as Pegasus prints them in the `unit` field; any CamelCase word is accepted."""

    NANOSECONDS = "NanoSeconds"
    MICROSECONDS = "MicroSeconds"
    MILLISECONDS = "MilliSeconds"
    SECONDS = "Seconds"
    BYTES = "Bytes"
    MEGABYTES = "MegaBytes"
    REQUESTS = "Requests"
    KEYS = "Keys"
    VALUES = "Values"
    MUTATIONS = "Mutations"
    CAPACITY_UNITS = "CapacityUnits"
    FILE_LOADS = "FileLoads"
    PARTITIONS = "Partitions"
    REPLICAS = "Replicas"
    SERVERS = "Servers"
    TASKS = "Tasks"
    PERCENT = "Percent"


def prometheus_name(name: str) -> str:
    """The Prometheus family name of a metric: `dupkv_` + name, dots made underscores."""
    return "dupkv_" + name.replace(".", "_")


def _check(pattern: re.Pattern[str], what: str, text: str, limit: int) -> None:
    if not isinstance(text, str) or len(text) > limit or not pattern.match(text):
        raise InvariantError(f"bad {what} {text!r}: want {pattern.pattern!r}, <= {limit} chars")


def _check_value(what: str, text: str) -> None:
    if not isinstance(text, str) or not text or len(text) > MAX_VALUE_CHARS:
        raise InvariantError(f"bad {what} {text!r}: want a string of 1..{MAX_VALUE_CHARS} chars")


class Metric:
    """What every metric has: a name, a unit and a description. `TYPE` is Pegasus's name."""

    TYPE = ""
    __slots__ = ("name", "unit", "desc")

    def __init__(self, name: str, unit: str, desc: str) -> None:
        self.name = name
        self.unit = unit
        self.desc = desc

    def __repr__(self) -> str:
        return f"<{self.TYPE} {self.name}>"


class Counter(Metric):
    """A monotonic count (requests served, bytes shipped). Starts at 0."""

    TYPE = "Counter"
    __slots__ = ("_value",)

    def __init__(self, name: str, unit: str, desc: str) -> None:
        super().__init__(name, unit, desc)
        self._value = 0

    def inc(self, n: int = 1) -> None:
        assert n >= 0, f"counter {self.name} cannot go down by {n}; use a gauge"
        self._value += n

    @property
    def value(self) -> int:
        return self._value


class Gauge(Metric):
    """A value that goes up and down (pending mutations, memory in use). Starts at 0."""

    TYPE = "Gauge"
    __slots__ = ("_value",)

    def __init__(self, name: str, unit: str, desc: str) -> None:
        super().__init__(name, unit, desc)
        self._value: int | float = 0

    def set(self, value: float) -> None:
        self._value = value

    def inc(self, n: float = 1) -> None:
        self._value += n

    def dec(self, n: float = 1) -> None:
        self._value -= n

    @property
    def value(self) -> int | float:
        return self._value


class Percentile(Metric):
    """p50..p999 of the recent integer samples (latency in ns, lag in ms), plus the lifetime
    count and sum.

    Pegasus keeps the last 4096 raw samples and sorts them on a timer. Sorting 4096 Python
    ints costs ~0.5 ms, which for a few thousand busy percentiles would stall the event
    loop for seconds at every scrape, so we keep a log-linear histogram instead: values
    below 128 exactly, larger ones (either sign) in 64 buckets per power of two, each read
    back as its midpoint, at most 1/128 (0.8%) off the true sample. The window is two
    generations of `window // 2` samples: the current one fills, then replaces the previous
    one, so quantiles always cover the last `window // 2` to `window` samples. An idle
    percentile keeps showing its last figures, as Pegasus's does.

    Costs: observe is a few integer operations and one dict update (~0.3 us, see
    bench/metrics.py). Quantiles merge the two generations and sort the occupied buckets
    (tens to a few hundred: ~40 us for a typical latency spread), and only again once
    something was observed. Memory is bounded by the buckets a generation can occupy (at
    most `window // 2`, and ~7,500 for any 64-bit values). A float (or any non-int) raises
    AttributeError before anything is counted.
    """

    TYPE = "Percentile"
    __slots__ = ("_cur", "_prev", "_half", "_left", "_n", "_sum", "_cached_at", "_cached")

    def __init__(self, name: str, unit: str, desc: str, window: int) -> None:
        super().__init__(name, unit, desc)
        self._cur: dict[int, int] = {}  # bucket key -> samples, filling
        self._prev: dict[int, int] = {}  # the generation before, full (or empty at first)
        self._half = window // 2
        self._left = self._half  # samples the current generation still takes
        self._n = 0
        self._sum = 0
        self._cached_at = -1
        self._cached: dict[str, int] = {}

    def observe(self, value: int) -> None:
        key = value
        shift = value.bit_length() - _EXACT_BITS
        if shift > 0:
            if value > 0:
                key = (shift << _SUB_BITS) + (value >> shift)
            else:
                key = -((shift << _SUB_BITS) + (-value >> shift))
        counts = self._cur
        counts[key] = counts.get(key, 0) + 1
        self._n += 1
        self._sum += value
        self._left -= 1
        if not self._left:
            self._prev = counts
            self._cur = {}
            self._left = self._half

    @property
    def window(self) -> int:
        """The most samples the quantiles cover (at least half as many once it is full)."""
        return self._half * 2

    @property
    def count(self) -> int:
        """Samples observed since the metric was made (not only those in the window)."""
        return self._n

    @property
    def sum(self) -> int:
        """Sum of every sample observed since the metric was made."""
        return self._sum

    def samples(self) -> int:
        """How many samples the quantiles cover now."""
        return (self._half if self._prev else 0) + self._half - self._left

    def quantiles(self) -> dict[str, int]:
        """{"p50": v, ..., "p999": v} over the window; all 0 before the first sample.

        The k-th quantile of n sorted samples is the one at index int(n * k), as Pegasus
        computes it (`kth_percentile_to_nth_index`), read back from its bucket.
        """
        if self._cached_at != self._n:
            window = self._prev.copy()
            for key, n in self._cur.items():
                window[key] = window.get(key, 0) + n
            keys = sorted(window)
            running = list(itertools.accumulate(map(window.__getitem__, keys)))
            total = running[-1] if running else 0
            out = {field: 0 for field, _ in QUANTILES}
            for field, q in QUANTILES:
                if total:
                    index = min(int(total * q), total - 1)
                    out[field] = _bucket_value(keys[bisect.bisect_right(running, index)])
            self._cached = out
            self._cached_at = self._n
        return dict(self._cached)


_EXACT_BITS = 7  # |values| below 2**7 are kept exactly
_SUB_BITS = 6  # above, 2**6 buckets per power of two


def _bucket_value(key: int) -> int:
    """The midpoint of the values `Percentile.observe` files under `key`."""
    if -(1 << _EXACT_BITS) < key < (1 << _EXACT_BITS):
        return key
    k = abs(key)
    shift = (k >> _SUB_BITS) - 1
    low = (k - (shift << _SUB_BITS)) << shift
    mid = low + (1 << (shift - 1))
    return mid if key > 0 else -mid


M = TypeVar("M", bound=Metric)


class Entity:
    """One thing measured: a server, a replica, a table. Made by `Registry.entity`."""

    __slots__ = ("type", "id", "_attributes", "_metrics", "_registry")

    def __init__(
        self, registry: "Registry", type_: str, id_: str, attributes: dict[str, str]
    ) -> None:
        self.type = type_
        self.id = id_
        self._attributes = attributes
        self._metrics: dict[str, Metric] = {}
        self._registry = registry

    def __repr__(self) -> str:
        return f"<Entity {self.type} {self.id}>"

    @property
    def attributes(self) -> dict[str, str]:
        return dict(self._attributes)

    def attribute(self, key: str) -> str | None:
        return self._attributes.get(key)

    def metrics(self) -> list[Metric]:
        """This entity's metrics, in the order they were made."""
        return list(self._metrics.values())

    def get(self, name: str) -> Metric | None:
        return self._metrics.get(name)

    def counter(self, name: str, unit: str, desc: str) -> Counter:
        return self._find_or_make(Counter, name, unit, desc, lambda: Counter(name, unit, desc))

    def gauge(self, name: str, unit: str, desc: str) -> Gauge:
        return self._find_or_make(Gauge, name, unit, desc, lambda: Gauge(name, unit, desc))

    def percentile(
        self,
        name: str,
        unit: str,
        desc: str,
        *,
        window: int = DEFAULT_WINDOW,
    ) -> Percentile:
        if not 2 <= window <= MAX_WINDOW:
            raise InvariantError(f"percentile {name}: window {window} not in 2..{MAX_WINDOW}")
        return self._find_or_make(
            Percentile, name, unit, desc, lambda: Percentile(name, unit, desc, window)
        )

    def _find_or_make(
        self, kind: type[M], name: str, unit: str, desc: str, make: Callable[[], M]
    ) -> M:
        found = self._metrics.get(name)
        if found is not None:
            if type(found) is not kind:
                raise InvariantError(
                    f"{self.type} {self.id}: {name} is a {found.TYPE}, not a {kind.TYPE}"
                )
            return found
        _check(_METRIC_NAME, "metric name", name, MAX_NAME_CHARS)
        _check(_UNIT, "unit", unit, MAX_NAME_CHARS)
        if not isinstance(desc, str) or len(desc) > MAX_DESC_CHARS:
            raise InvariantError(f"metric {name}: description longer than {MAX_DESC_CHARS}")
        limit = self._registry.max_metrics_per_entity
        if len(self._metrics) >= limit:
            raise InvariantError(f"{self.type} {self.id}: more than {limit} metrics")
        self._registry._declare(name, kind)
        metric = make()
        self._metrics[name] = metric
        return metric


class Registry:
    """Every entity one server exports, and the facts its /metrics header carries.

    `port` may be set after the server has bound an ephemeral one.
    """

    def __init__(
        self,
        role: str,
        cluster: str,
        host: str,
        port: int,
        *,
        max_entities: int = DEFAULT_MAX_ENTITIES,
        max_metrics_per_entity: int = DEFAULT_MAX_METRICS_PER_ENTITY,
        max_metric_names: int = DEFAULT_MAX_METRIC_NAMES,
    ) -> None:
        if min(max_entities, max_metrics_per_entity, max_metric_names) < 1:
            raise ValueError("registry limits must be at least 1")
        self.role = role
        self.cluster = cluster
        self.host = host
        self.port = port
        self.max_entities = max_entities
        self.max_metrics_per_entity = max_metrics_per_entity
        self.max_metric_names = max_metric_names
        self._entities: dict[tuple[str, str], Entity] = {}
        self._kinds: dict[str, type[Metric]] = {}  # metric name -> its one kind
        self._exposed: dict[str, str] = {}  # Prometheus sample name -> metric name
        self._collectors: dict[str, Callable[[], None]] = {}

    def entity(self, type_: str, id_: str, attributes: Mapping[str, str] | None = None) -> Entity:
        """The entity (type_, id_), made if new. Given attributes replace the old ones
        (as Pegasus's `find_or_create_entity` does); None leaves them as they are."""
        key = (type_, id_)
        found = self._entities.get(key)
        if found is not None:
            if attributes is not None:
                found._attributes = self._checked_attributes(attributes)
            return found
        _check(_ENTITY_TYPE, "entity type", type_, MAX_NAME_CHARS)
        _check_value("entity id", id_)
        attrs = self._checked_attributes(attributes or {})
        if len(self._entities) >= self.max_entities:
            raise InvariantError(f"more than {self.max_entities} metric entities")
        entity = Entity(self, type_, id_, attrs)
        self._entities[key] = entity
        return entity

    def get_entity(self, type_: str, id_: str) -> Entity | None:
        return self._entities.get((type_, id_))

    def remove_entity(self, type_: str, id_: str) -> bool:
        """Forget an entity; True if it was there."""
        return self._entities.pop((type_, id_), None) is not None

    def entities(self) -> list[Entity]:
        """Every entity, in the order they were made."""
        return list(self._entities.values())

    def __iter__(self) -> Iterator[Entity]:
        return iter(list(self._entities.values()))

    def __len__(self) -> int:
        return len(self._entities)

    # -- collectors -----------------------------------------------------------------------

    def add_collector(self, name: str, collect: Callable[[], None]) -> None:
        """Run `collect` on every `collect()` (just before an export). Same name replaces."""
        if name not in self._collectors and len(self._collectors) >= MAX_COLLECTORS:
            raise InvariantError(f"more than {MAX_COLLECTORS} metric collectors")
        self._collectors[name] = collect

    def remove_collector(self, name: str) -> None:
        self._collectors.pop(name, None)

    def collect(self) -> None:
        """Let every collector refresh its gauges. A collector that raises is a bug: it
        propagates, and the export fails loudly instead of showing stale figures."""
        for collect in list(self._collectors.values()):
            collect()

    # -- internals --------------------------------------------------------------------------

    def _checked_attributes(self, attributes: Mapping[str, str]) -> dict[str, str]:
        if len(attributes) > MAX_ATTRIBUTES:
            raise InvariantError(f"more than {MAX_ATTRIBUTES} attributes: {sorted(attributes)}")
        out: dict[str, str] = {}
        for key, value in attributes.items():
            _check(_ATTRIBUTE_KEY, "attribute name", key, MAX_NAME_CHARS)
            if key in RESERVED_ATTRIBUTES or key.startswith("__"):
                raise InvariantError(f"attribute name {key!r} is reserved for labels")
            if not isinstance(value, str) or len(value) > MAX_VALUE_CHARS:
                raise InvariantError(f"attribute {key}={value!r}: want a str <= 256 chars")
            out[key] = value
        return out

    def _declare(self, name: str, kind: type[Metric]) -> None:
        known = self._kinds.get(name)
        if known is not None:
            if known is not kind:
                raise InvariantError(
                    f"metric {name} is a {known.TYPE} elsewhere, not a {kind.TYPE}"
                )
            return
        if len(self._kinds) >= self.max_metric_names:
            raise InvariantError(f"more than {self.max_metric_names} metric names")
        family = prometheus_name(name)
        exposed = [family]
        if kind is Percentile:
            exposed += [family + "_sum", family + "_count"]
        for sample in exposed:
            other = self._exposed.get(sample)
            if other is not None:
                raise InvariantError(
                    f"metric {name} would be exported as {sample}, which {other} already is"
                )
        self._kinds[name] = kind
        for sample in exposed:
            self._exposed[sample] = name
