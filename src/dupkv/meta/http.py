"""The meta server's HTTP endpoints (Pegasus's `/meta/*` URLs), as JSON."""

import json
from typing import TYPE_CHECKING, Any

from dupkv.rpc.httpcodec import HttpResponse

if TYPE_CHECKING:
    from dupkv.meta.server import MetaServer


def _json(status: int, obj: Any) -> HttpResponse:
    return HttpResponse(status, "application/json", json.dumps(obj, indent=2).encode() + b"\n")


async def handle(
    server: "MetaServer", method: str, path: str, query: dict[str, str], body: bytes
) -> HttpResponse:
    if method != "GET":
        return _json(400, {"error_message": f"{method} is not supported; use GET"})
    if path == "/meta/cluster":
        return _json(200, server.cluster_info())
    if path == "/meta/apps":
        return _json(200, server.apps_json())
    if path == "/meta/nodes":
        return _json(200, server.nodes_json())
    if path == "/meta/app":
        name = query.get("name", "")
        if not name:
            return _json(400, {"error_message": "missing argument: name=<table>"})
        found = server.app_json(name)
        if found is None:
            return _json(404, {"error_message": f'table not found: "{name}"'})
        return _json(200, found)
    route = server.http_routes.get(path)
    if route is not None:
        return await route(query)
    return _json(404, {"error_message": f"no such path: {path}"})
