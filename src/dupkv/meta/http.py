"""The meta server's HTTP endpoints (Pegasus's `/meta/*` URLs), as JSON."""

from typing import TYPE_CHECKING, Any

from dupkv.base.errors import BadInput
from dupkv.http.router import HttpStatusError

if TYPE_CHECKING:
    from dupkv.meta.server import MetaServer


def install_routes(server: "MetaServer") -> None:
    async def cluster(query: dict[str, str], body: bytes) -> Any:
        return server.cluster_info()

    async def apps(query: dict[str, str], body: bytes) -> Any:
        return server.apps_json()

    async def nodes(query: dict[str, str], body: bytes) -> Any:
        return server.nodes_json()

    async def app(query: dict[str, str], body: bytes) -> Any:
        name = query.get("name", "")
        if not name:
            raise BadInput("missing argument: name=<table>")
        found = server.app_json(name)
        if found is None:
            raise HttpStatusError(404, f'table not found: "{name}"')
        return found

    router = server.router
    router.add("/meta/cluster", cluster, "ip:port/meta/cluster")
    router.add("/meta/apps", apps, "ip:port/meta/apps")
    router.add("/meta/nodes", nodes, "ip:port/meta/nodes")
    router.add("/meta/app", app, "ip:port/meta/app?name=<table>")
