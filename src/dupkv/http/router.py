"""HTTP endpoint routing shared by the meta and replica servers (asyncio shell).

An `HttpRouter` is the `http_handler` an `RpcServer` takes: it finds the route for a path
and turns what the route returns into an `HttpResponse`. A route's handler is
`async (query, body) -> HttpResponse | <JSON-able object>`; an object is sent as compact
JSON (application/json). Errors, each answered as JSON `{"error_message": "..."}`:

- no route for the path: 404;
- a method the route does not take: 400, as Pegasus answers a non-GET /metrics (HEAD is
  taken wherever GET is; the RPC server leaves the body out);
- the handler raises `BadInput`: 400 with its message;
- the handler raises `HttpStatusError`: its status and message (404 for a table that is
  not there, 307 with a Location header for "ask the leader");
- any other exception is a bug: 500, and the traceback goes to the log. The server keeps
  serving; `handler_errors` counts these so a test or a health check can see them.
"""

import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from dupkv.base.errors import BadInput
from dupkv.rpc.httpcodec import HttpResponse

log = logging.getLogger(__name__)

JSON_CONTENT_TYPE = "application/json"
DEFAULT_MAX_ROUTES = 128
MAX_PATH_CHARS = 256
_ECHO_CHARS = 100  # how much of a bad path an error message repeats

RouteHandler = Callable[[dict[str, str], bytes], Awaitable[Any]]


class HttpStatusError(Exception):
    """Raised by a route handler to answer `status` with `{"error_message": message}`."""

    def __init__(
        self, status: int, message: str, headers: tuple[tuple[str, str], ...] = ()
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def json_response(status: int, obj: Any, headers: tuple[tuple[str, str], ...] = ()) -> HttpResponse:
    return HttpResponse(status, JSON_CONTENT_TYPE, json.dumps(obj).encode(), headers)


def error_response(
    status: int, message: str, headers: tuple[tuple[str, str], ...] = ()
) -> HttpResponse:
    return json_response(status, {"error_message": message}, headers)


@dataclass(frozen=True)
class Route:
    path: str
    handler: RouteHandler
    help: str
    methods: frozenset[str]


class HttpRouter:
    def __init__(self, *, max_routes: int = DEFAULT_MAX_ROUTES) -> None:
        self._routes: dict[str, Route] = {}
        self._max_routes = max_routes
        self.handler_errors = 0  # handler bugs answered with 500

    def add(
        self,
        path: str,
        handler: RouteHandler,
        help: str,
        *,
        methods: Iterable[str] = ("GET",),
    ) -> None:
        """Serve `path` (exact match) with `handler`; `help` is what `/` lists for it."""
        if not path.startswith("/") or len(path) > MAX_PATH_CHARS:
            raise ValueError(f"route path {path!r} must start with / and be <= 256 chars")
        if path in self._routes:
            raise ValueError(f"route {path} is already served")
        if len(self._routes) >= self._max_routes:
            raise ValueError(f"more than {self._max_routes} routes")
        allowed = frozenset(m.upper() for m in methods)
        if "GET" in allowed:
            allowed |= {"HEAD"}
        self._routes[path] = Route(path, handler, help, allowed)

    def routes(self) -> dict[str, str]:
        """path -> help text, sorted by path (what `/` answers)."""
        return {path: self._routes[path].help for path in sorted(self._routes)}

    async def __call__(
        self, method: str, path: str, query: dict[str, str], body: bytes
    ) -> HttpResponse:
        route = self._routes.get(path)
        if route is None and len(path) > 1 and path.endswith("/"):
            route = self._routes.get(path.rstrip("/"))
        if route is None:
            return error_response(404, f"no such path: {path[:_ECHO_CHARS]}; see / for the list")
        if method not in route.methods:
            wanted = "' or '".join(sorted(route.methods - {"HEAD"}))
            return error_response(
                400, f"please use '{wanted}' method for {route.path}, not '{method}'"
            )
        try:
            result = await route.handler(query, body)
            if isinstance(result, HttpResponse):
                return result
            return json_response(200, result)  # inside: an object json cannot take is a bug
        except BadInput as e:
            return error_response(400, str(e))
        except HttpStatusError as e:
            return error_response(e.status, e.message, e.headers)
        except Exception as e:
            self.handler_errors += 1
            log.exception("HTTP handler for %s %s failed", method, route.path)
            return error_response(500, f"internal error ({type(e).__name__}); see the server log")
