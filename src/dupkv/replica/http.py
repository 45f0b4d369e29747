"""The replica server's HTTP endpoints (Pegasus's `/replica/*` URLs), as JSON."""

import json
from typing import TYPE_CHECKING, Any

from dupkv.rpc.httpcodec import HttpResponse

if TYPE_CHECKING:
    from dupkv.replica.server import ReplicaServer


def _json(status: int, obj: Any) -> HttpResponse:
    return HttpResponse(status, "application/json", json.dumps(obj, indent=2).encode() + b"\n")


def _app_id(query: dict[str, str], name: str) -> int | HttpResponse:
    text = query.get(name, "")
    if not text:
        return _json(400, {"error_message": f"missing argument: {name}=<table id>"})
    if not text.isdigit():
        return _json(400, {"error_message": f"{name}={text!r} is not a table id"})
    return int(text)


async def handle(
    server: "ReplicaServer", method: str, path: str, query: dict[str, str], body: bytes
) -> HttpResponse:
    if method != "GET":
        return _json(400, {"error_message": f"{method} is not supported; use GET"})
    if path == "/replica/data_version":
        app_id = _app_id(query, "app_id")
        if isinstance(app_id, HttpResponse):
            return app_id
        return _json(
            200,
            {str(p): {"data_version": "1"} for (a, p) in sorted(server.partitions) if a == app_id},
        )
    if path == "/replica/partitions":
        return _json(
            200,
            {
                f"{a}.{p}": {
                    "app_name": h.app.app_name,
                    "last_committed_decree": h.partition.last_committed_decree,
                    "last_flushed_decree": h.partition.last_flushed_decree,
                    "plog_bytes": h.partition.plog.size_bytes(),
                }
                for (a, p), h in sorted(server.partitions.items())
            },
        )
    route = server.http_routes.get(path)
    if route is not None:
        return await route(query)
    return _json(404, {"error_message": f"no such path: {path}"})
