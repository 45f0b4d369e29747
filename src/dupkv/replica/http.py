"""The replica server's HTTP endpoints (Pegasus's `/replica/*` URLs), as JSON."""

from typing import TYPE_CHECKING, Any

from dupkv.base.errors import BadInput
from dupkv.http.router import json_response

if TYPE_CHECKING:
    from dupkv.replica.server import ReplicaServer

__all__ = ["install_routes", "json_response"]


def _app_id(query: dict[str, str], name: str) -> int:
    text = query.get(name, "")
    if not text.isdigit():
        raise BadInput(f"expected {name}=<table id>, got {text!r}")
    return int(text)


def install_routes(server: "ReplicaServer") -> None:
    async def data_version(query: dict[str, str], body: bytes) -> Any:
        app_id = _app_id(query, "app_id")
        return {
            str(p): {"data_version": "1"} for (a, p) in sorted(server.partitions) if a == app_id
        }

    async def partitions(query: dict[str, str], body: bytes) -> Any:
        return {
            f"{a}.{p}": {
                "app_name": h.app.app_name,
                "last_committed_decree": h.partition.last_committed_decree,
                "last_flushed_decree": h.partition.last_flushed_decree,
                "plog_first_decree": h.partition.plog.first_decree,
                "plog_bytes": h.partition.plog.size_bytes(),
                "duplicating": h.partition.options.duplicating,
            }
            for (a, p), h in sorted(server.partitions.items())
        }

    server.router.add(
        "/replica/data_version", data_version, "ip:port/replica/data_version?app_id=<id>"
    )
    server.router.add("/replica/partitions", partitions, "ip:port/replica/partitions")
    if server.dup_manager is not None:

        async def duplication(query: dict[str, str], body: bytes) -> Any:
            return await server.dup_manager.http_duplication(query)

        server.router.add(
            "/replica/duplication", duplication, "ip:port/replica/duplication?appid=<id>"
        )
