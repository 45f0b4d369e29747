"""HTTP endpoints on the RPC port: routing (`HttpRouter`) and the routes every server has
(`common_routes`). The meta and replica servers add their own `/meta/*`, `/replica/*`."""

from dupkv.http.common import VersionInfo, common_routes, format_start_time
from dupkv.http.router import (
    HttpRouter,
    HttpStatusError,
    Route,
    RouteHandler,
    error_response,
    json_response,
)

__all__ = [
    "HttpRouter",
    "HttpStatusError",
    "Route",
    "RouteHandler",
    "VersionInfo",
    "common_routes",
    "error_response",
    "format_start_time",
    "json_response",
]
