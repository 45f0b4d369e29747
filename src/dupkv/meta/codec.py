"""Pegasus's JSON for metadata nodes (pure).

Pegasus's json_helper writes enums as `"<enum>::<NAME>"`, booleans as 1/0 and addresses as
"ip:port" (or "invalid address"); decoders accept missing newer fields and JSON booleans.
Field order is kept as Pegasus writes it, so a node written by dupkv reads the same way an
operator is used to.
"""

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dupkv.meta.state import App

INVALID_ADDRESS = "invalid address"

_APP_STATUS_NAMES = {
    0: "AS_INVALID",
    1: "AS_AVAILABLE",
    2: "AS_CREATING",
    3: "AS_CREATE_FAILED",
    4: "AS_DROPPING",
    5: "AS_DROP_FAILED",
    6: "AS_DROPPED",
    7: "AS_RECALLING",
}
_APP_STATUS_VALUES = {v: k for k, v in _APP_STATUS_NAMES.items()}


def _dumps(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _bool(value: Any) -> bool:
    return bool(int(value)) if not isinstance(value, bool) else value


def encode_app(app: "App") -> bytes:
    return _dumps(
        {
            "status": f"app_status::{_APP_STATUS_NAMES[app.status]}",
            "app_type": app.app_type,
            "app_name": app.app_name,
            "app_id": app.app_id,
            "partition_count": app.partition_count,
            "envs": app.envs,
            "is_stateful": 1,
            "max_replica_count": app.max_replica_count,
            "expire_second": app.expire_second,
            "create_second": app.create_second,
            "drop_second": app.drop_second,
            "duplicating": int(app.duplicating),
            "init_partition_count": app.partition_count,
            "is_bulk_loading": 0,
            "atomic_idempotent": int(app.atomic_idempotent),
        }
    )


def decode_app(blob: bytes) -> "App":
    from dupkv.meta.state import App

    try:
        d = json.loads(blob)
        status = d["status"].split("::")[-1]
        return App(
            app_id=int(d["app_id"]),
            app_name=str(d["app_name"]),
            partition_count=int(d["partition_count"]),
            max_replica_count=int(d.get("max_replica_count", 1)),
            status=_APP_STATUS_VALUES[status],
            envs={str(k): str(v) for k, v in d.get("envs", {}).items()},
            create_second=int(d.get("create_second", 0)),
            drop_second=int(d.get("drop_second", 0)),
            expire_second=int(d.get("expire_second", 0)),
            duplicating=_bool(d.get("duplicating", 0)),
            atomic_idempotent=_bool(d.get("atomic_idempotent", 0)),
            app_type=str(d.get("app_type", "pegasus")),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"not a Pegasus app_info JSON: {e}") from e


def encode_partition(app: "App", pidx: int, primary: str) -> bytes:
    return _dumps(
        {
            "pid": f"{app.app_id}.{pidx}",
            "ballot": 1,
            "max_replica_count": app.max_replica_count,
            "primary": primary or INVALID_ADDRESS,
            "secondaries": [],
            "last_drops": [],
            "last_committed_decree": 0,
            "partition_flags": 0,
        }
    )


def decode_partition_primary(blob: bytes) -> str:
    try:
        primary = json.loads(blob).get("primary", INVALID_ADDRESS)
    except (ValueError, AttributeError) as e:
        raise ValueError(f"not a Pegasus partition_configuration JSON: {e}") from e
    return "" if primary == INVALID_ADDRESS else str(primary)
