"""Server configuration: INI files with Pegasus's section and key names (pure).

Every key a server reads is declared once in `KEYS` with its type, default, bounds and a
line of help; loading validates them all up front, so a bad value stops the server at
start with a message naming the file, section, key, value and what is accepted. Two
sections are open maps: `[pegasus.clusters]` (cluster name -> meta server list) and
`[duplication-group]` (cluster name -> id 1..127, unique names and ids).

Unknown keys in known sections are reported as warnings (Pegasus ignores them too), so a
typo does not pass silently.
"""

import configparser
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dupkv.base.errors import BadInput


class ConfigError(BadInput):
    """A config value a server cannot start with."""


@dataclass(frozen=True)
class Key:
    section: str
    name: str
    kind: type  # int, bool, str
    default: Any
    help: str
    min: int | None = None
    max: int | None = None
    choices: tuple[str, ...] = ()


def _k(section: str, name: str, kind: type, default: Any, help: str, **kw: Any) -> Key:
    return Key(section, name, kind, default, help, **kw)


KEYS: tuple[Key, ...] = (
    # [replication]: the replica server and duplication
    _k("replication", "cluster_name", str, "", "name of this cluster"),
    _k(
        "replication",
        "dup_cluster_name",
        str,
        "",
        "name used for duplication (default: cluster_name)",
    ),
    _k(
        "replication", "data_dirs", str, "./data", "directory holding partitions and the meta store"
    ),
    _k("replication", "duplication_enabled", bool, True, "serve duplication on this cluster"),
    _k(
        "replication",
        "duplicate_log_batch_bytes",
        int,
        65536,  # Pegasus: 4096, which caps shipping at window x 4 KB per round trip
        "bytes of log per shipped batch",
        min=0,
    ),
    _k(
        "replication",
        "dup_max_allowed_write_size",
        int,
        1 << 20,
        "cap on one DUPLICATE RPC body",
        min=0,
    ),
    _k("replication", "dup_ignore_other_cluster_ids", bool, False, "accept any remote cluster id"),
    _k(
        "replication",
        "max_allowed_write_size",
        int,
        1 << 20,
        "largest write RPC body accepted",
        min=1,
    ),
    _k(
        "replication",
        "plog_force_flush",
        bool,
        True,
        "make writes durable before acknowledging them (one fsync of the shared log per round)",
    ),
    _k("replication", "log_private_file_size_mb", int, 32, "plog segment size", min=1, max=4096),
    _k(
        "replication",
        "log_shared_file_size_mb",
        int,
        16,
        "shared log (slog) segment size",
        min=1,
        max=1024,
    ),
    _k(
        "replication",
        "log_shared_file_count_limit",
        int,
        4,
        "slog segments kept before the plogs are fsynced and the older segments deleted",
        min=1,
        max=1000,
    ),
    _k(
        "replication",
        "ttl_sweep_interval_seconds",
        int,
        60,
        "start a sweep of expired records and old tombstones this often",
        min=1,
    ),
    _k(
        "replication",
        "plog_gc_enabled",
        bool,
        True,
        "remove plog segments that are no longer needed",
    ),
    _k(
        "replication",
        "checkpoint_interval_seconds",
        int,
        60,
        "RocksDB flush + plog GC period",
        min=1,
    ),
    _k(
        "replication",
        "config_sync_interval_ms",
        int,
        1000,
        "replica -> meta heartbeat period",
        min=50,
    ),
    _k(
        "replication",
        "duplication_sync_interval_ms",
        int,
        1000,
        "duplication progress report period",
        min=50,
    ),
    _k(
        "replication",
        "dup_max_inflight_batches",
        int,
        32,
        "shipped batches in flight per remote partition",
        min=1,
        max=1024,
    ),
    _k(
        "replication",
        "dup_retry_backoff_max_ms",
        int,
        5000,
        "cap on shipping retry backoff",
        min=10,
    ),
    _k("replication", "dup_rpc_timeout_ms", int, 5000, "timeout of one DUPLICATE RPC", min=10),
    _k(
        "replication",
        "dup_fail_skip_max_retries",
        int,
        5,
        "FAIL_SKIP: attempts before a batch is skipped",
        min=1,
    ),
    _k(
        "replication",
        "dup_tombstone_grace_seconds",
        int,
        3600,
        "keep tombstones this long after every dup confirmed them",
        min=0,
    ),
    _k(
        "replication",
        "dup_progress_min_update_period_ms",
        int,
        1000,
        "meta: least time between two stored progress updates of one partition",
        min=0,
    ),
    _k(
        "replication",
        "dup_progress_min_report_period_ms",
        int,
        300000,
        "meta: least time between two progress log lines of one duplication",
        min=0,
    ),
    _k(
        "replication",
        "dup_remote_meta_timeout_ms",
        int,
        3000,
        "meta: how long dup add waits for the remote cluster's meta",
        min=10,
        max=60000,
    ),
    # [meta_server]
    _k("meta_server", "server_list", str, "127.0.0.1:34601", "meta servers of this cluster"),
    _k(
        "meta_server",
        "cluster_root",
        str,
        "",
        "metadata root path (default: /pegasus/<cluster_name>)",
    ),
    _k(
        "meta_server",
        "meta_state_service_type",
        str,
        "meta_state_service_simple",
        "where metadata lives",
        choices=("meta_state_service_simple", "meta_state_service_zookeeper"),
    ),
    _k(
        "meta_server",
        "hold_seconds_for_dropped_app",
        int,
        604800,
        "keep dropped tables this long",
        min=0,
    ),
    _k(
        "meta_server",
        "replica_server_lease_ms",
        int,
        5000,
        "a replica server silent this long is UNALIVE",
        min=100,
    ),
    # [zookeeper]
    _k("zookeeper", "hosts_list", str, "", "ZooKeeper servers, host:port,host:port"),
    _k("zookeeper", "timeout_ms", int, 10000, "ZooKeeper session and call timeout", min=100),
    # [pegasus.server]: read limits and duplication follower metrics
    _k(
        "pegasus.server",
        "rocksdb_multi_get_max_iteration_count",
        int,
        3000,
        "multi_get visit cap",
        min=1,
    ),
    _k(
        "pegasus.server",
        "rocksdb_multi_get_max_iteration_size",
        int,
        30 << 20,
        "multi_get byte cap",
        min=0,
    ),
    _k("pegasus.server", "rocksdb_max_iteration_count", int, 1000, "scan batch visit cap", min=1),
    _k(
        "pegasus.server",
        "rocksdb_iteration_threshold_time_ms",
        int,
        30000,
        "range read time cap",
        min=0,
    ),
    _k(
        "pegasus.server",
        "rocksdb_block_cache_capacity",
        int,
        64 << 20,
        "block cache bytes per partition",
        min=0,
    ),
    _k(
        "pegasus.server",
        "dup_lagging_write_threshold_ms",
        int,
        10000,
        "lag above which a duplicated write counts as lagging",
        min=0,
    ),
    # [apps.meta] / [apps.replica]: listening ports
    _k("apps.meta", "ports", int, 34601, "meta server port", min=1, max=65535),
    _k("apps.replica", "ports", int, 34801, "replica server port", min=1, max=65535),
)

MAP_SECTIONS = ("pegasus.clusters", "duplication-group", "duplication.address_map")
_BY_NAME = {(k.section, k.name): k for k in KEYS}


def _parse(key: Key, raw: str, where: str) -> Any:
    text = raw.strip()
    if key.kind is bool:
        low = text.lower()
        if low in ("true", "1", "yes", "on"):
            return True
        if low in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"{where} = {raw!r}: expected true or false")
    if key.kind is int:
        try:
            value = int(text, 0)
        except ValueError:
            raise ConfigError(f"{where} = {raw!r}: expected an integer") from None
        if key.min is not None and value < key.min:
            raise ConfigError(f"{where} = {value}: must be >= {key.min}")
        if key.max is not None and value > key.max:
            raise ConfigError(f"{where} = {value}: must be <= {key.max}")
        return value
    if key.choices and text not in key.choices:
        raise ConfigError(f"{where} = {raw!r}: accepted values are {', '.join(key.choices)}")
    return text


class Config:
    """Validated settings; `get(section, name)` returns the typed value or its default."""

    def __init__(
        self,
        values: dict[tuple[str, str], Any],
        clusters: dict[str, list[str]],
        dup_group: dict[str, int],
        source: str,
        warnings: list[str],
    ) -> None:
        self._values = values
        self.clusters = clusters
        # [duplication.address_map] remote address -> address to dial instead (a relay or a
        # WAN-emulating proxy in front of a remote replica server).
        self.address_map: dict[str, str] = {}
        self.dup_group = dup_group
        self.source = source
        self.warnings = warnings

    @classmethod
    def load(
        cls, path: str | Path, overrides: dict[tuple[str, str], str] | None = None
    ) -> "Config":
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as e:
            raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
        return cls.parse(text, str(path), overrides)

    @classmethod
    def parse(
        cls,
        text: str,
        source: str = "<config>",
        overrides: dict[tuple[str, str], str] | None = None,
    ) -> "Config":
        parser = configparser.ConfigParser(
            interpolation=None,
            delimiters=("=",),
            comment_prefixes=(";", "#"),
            inline_comment_prefixes=(";", "#"),
        )
        parser.optionxform = str  # type: ignore[assignment,method-assign]  # keep key case
        try:
            parser.read_string(text, source=source)
        except configparser.Error as e:
            raise ConfigError(f"{source}: not a valid INI file: {e}") from None
        raw: dict[tuple[str, str], str] = {}
        warnings: list[str] = []
        known_sections = {k.section for k in KEYS}
        for section in parser.sections():
            if section in MAP_SECTIONS:
                continue
            for name, value in parser.items(section):
                if (section, name) in _BY_NAME:
                    raw[(section, name)] = value
                elif section in known_sections:
                    warnings.append(f"{source}: [{section}] {name} is not a known key; ignored")
        raw.update(overrides or {})
        values: dict[tuple[str, str], Any] = {}
        for (section, name), value in raw.items():
            key = _BY_NAME.get((section, name))
            if key is None:
                raise ConfigError(f"unknown setting [{section}] {name}")
            values[(section, name)] = _parse(key, value, f"{source}: [{section}] {name}")
        clusters = _parse_clusters(parser, source)
        address_map: dict[str, str] = {}
        if parser.has_section("duplication.address_map"):
            for real, dial in parser.items("duplication.address_map"):
                where = f"{source}: [duplication.address_map] {real}"
                _check_address(real, where)
                _check_address(dial.strip(), where)
                address_map[real] = dial.strip()
        dup_group = _parse_dup_group(parser, source)
        config = cls(values, clusters, dup_group, source, warnings)
        config.address_map = address_map
        return config

    def get(self, section: str, name: str) -> Any:
        if (section, name) in self._values:
            return self._values[(section, name)]
        key = _BY_NAME.get((section, name))
        if key is None:
            raise KeyError(f"[{section}] {name} is not a declared config key")
        return key.default

    @property
    def cluster_name(self) -> str:
        return self.get("replication", "cluster_name")

    @property
    def dup_cluster_name(self) -> str:
        return self.get("replication", "dup_cluster_name") or self.cluster_name

    @property
    def cluster_root(self) -> str:
        return self.get("meta_server", "cluster_root") or f"/pegasus/{self.cluster_name}"

    def cluster_id(self) -> int:
        """This cluster's [duplication-group] id, 0 when it is not in the group."""
        return self.dup_group.get(self.dup_cluster_name, 0)

    def require(self, section: str, name: str) -> Any:
        value = self.get(section, name)
        if value in ("", None):
            raise ConfigError(f"{self.source}: [{section}] {name} must be set")
        return value


def _parse_clusters(parser: configparser.ConfigParser, source: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    if not parser.has_section("pegasus.clusters"):
        return out
    for name, value in parser.items("pegasus.clusters"):
        addrs = [a.strip() for a in value.split(",") if a.strip()]
        for addr in addrs:
            _check_address(addr, f"{source}: [pegasus.clusters] {name}")
        if not addrs:
            raise ConfigError(f"{source}: [pegasus.clusters] {name} lists no meta servers")
        out[name] = addrs
    return out


def _parse_dup_group(parser: configparser.ConfigParser, source: str) -> dict[str, int]:
    out: dict[str, int] = {}
    if not parser.has_section("duplication-group"):
        return out
    seen: dict[int, str] = {}
    for name, value in parser.items("duplication-group"):
        where = f"{source}: [duplication-group] {name}"
        try:
            cid = int(value.strip())
        except ValueError:
            raise ConfigError(f"{where} = {value!r}: expected a cluster id 1..127") from None
        if not 1 <= cid <= 127:
            raise ConfigError(f"{where} = {cid}: cluster ids are 1..127")
        if cid in seen:
            raise ConfigError(
                f"{where} = {cid}: id already used by {seen[cid]}; ids must be unique"
            )
        seen[cid] = name
        out[name] = cid
    return out


def _check_address(addr: str, where: str) -> None:
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{where}: {addr!r} is not host:port")


def parse_address(addr: str) -> tuple[str, int]:
    """Split "host:port"; raises BadInput naming the accepted form."""
    _check_address(addr, "address")
    host, _, port = addr.rpartition(":")
    return host, int(port)
