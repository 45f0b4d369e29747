"""The metadata store: one interface, two backends, chosen by `[meta_server]
meta_state_service_type` (shell: the factory; the contract lives in `api`).

- `meta_state_service_simple` (the default): SQLite in `<data_dir>/meta.db`, one meta server.
- `meta_state_service_zookeeper`: ZooKeeper through kazoo (`[zookeeper] hosts_list`,
  `timeout_ms`), shared by several meta servers.

`open_store` does no IO: the first call opens the database or connects, within its timeout.
"""

from dupkv.base.errors import BadInput
from dupkv.meta.store.api import (
    MAX_COMMIT_BYTES,
    MAX_COMMIT_OPS,
    MAX_DATA_BYTES,
    MAX_PATH_BYTES,
    Create,
    Delete,
    MetaStore,
    NodeExists,
    NoNode,
    NotEmpty,
    Op,
    Set,
    StoreError,
    StoreUnavailable,
)
from dupkv.meta.store.simple import SimpleStore
from dupkv.meta.store.zookeeper import ZooKeeperStore

SIMPLE = "meta_state_service_simple"
ZOOKEEPER = "meta_state_service_zookeeper"
KINDS = (SIMPLE, ZOOKEEPER)

__all__ = [
    "KINDS",
    "MAX_COMMIT_BYTES",
    "MAX_COMMIT_OPS",
    "MAX_DATA_BYTES",
    "MAX_PATH_BYTES",
    "SIMPLE",
    "ZOOKEEPER",
    "Create",
    "Delete",
    "MetaStore",
    "NoNode",
    "NodeExists",
    "NotEmpty",
    "Op",
    "Set",
    "SimpleStore",
    "StoreError",
    "StoreUnavailable",
    "ZooKeeperStore",
    "open_store",
]


def open_store(
    kind: str, *, data_dir: str, zk_hosts: str, zk_timeout_ms: int, root: str
) -> MetaStore:
    """The store named by `[meta_server] meta_state_service_type`, serving the subtree `root`
    (the cluster root). BadInput for an unknown kind or a malformed setting."""
    if kind == SIMPLE:
        return SimpleStore(data_dir, root)
    if kind == ZOOKEEPER:
        return ZooKeeperStore(zk_hosts, root, timeout_ms=zk_timeout_ms)
    raise BadInput(
        f"[meta_server] meta_state_service_type = {kind!r} is unknown; accepted: {', '.join(KINDS)}"
    )
