"""The routes every dupkv server serves, as Pegasus's do (asyncio shell; reference
pegasus-kv.md §6 and §8):

- `/`: `{"/path": "help text", ...}`;
- `/version`: `{"Version": ..., "GitCommit": ...}`;
- `/recentStartTime`: `{"RecentStartTime": "YYYY-MM-DD hh:mm:ss"}` (local time);
- `/metrics`: the registry as Pegasus's JSON by default, or Prometheus text with
  `format=prometheus` (the handler sees no Accept header, so a query arg chooses);
- `/metrics/prometheus`: the Prometheus text, for scrapers configured with a bare path.

Both metrics routes run the registry's collectors first, so gauges fed from outside (the
process memory installed here, and whatever a server adds) are fresh at each scrape.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dupkv
from dupkv.http.router import HttpRouter, json_response
from dupkv.metrics.export import PROMETHEUS_CONTENT_TYPE, parse_query, snapshot, to_prometheus
from dupkv.metrics.process import install_process_metrics
from dupkv.metrics.registry import Registry
from dupkv.rpc.httpcodec import HttpResponse


@dataclass(frozen=True)
class VersionInfo:
    version: str = f"dupkv {dupkv.__version__}"
    git_commit: str = "unknown"


def format_start_time(unix_seconds: float) -> str:
    """Pegasus's `YYYY-MM-DD hh:mm:ss` in local time."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(unix_seconds))


def common_routes(
    router: HttpRouter,
    registry: Registry,
    version_info: VersionInfo,
    start_time: float,
    *,
    clock_ns: Callable[[], int] = time.time_ns,
) -> None:
    """Add the built-in routes to `router`; `start_time` is the server's Unix start time."""
    install_process_metrics(registry)

    async def index(query: dict[str, str], body: bytes) -> Any:
        return router.routes()

    async def version(query: dict[str, str], body: bytes) -> Any:
        return {"Version": version_info.version, "GitCommit": version_info.git_commit}

    async def recent_start_time(query: dict[str, str], body: bytes) -> Any:
        return {"RecentStartTime": format_start_time(start_time)}

    async def metrics(query: dict[str, str], body: bytes) -> HttpResponse:
        parsed = parse_query(query)
        registry.collect()
        if parsed.format == "prometheus":
            text = to_prometheus(registry, parsed)
            return HttpResponse(200, PROMETHEUS_CONTENT_TYPE, text.encode())
        return json_response(200, snapshot(registry, parsed, clock_ns()))

    async def prometheus(query: dict[str, str], body: bytes) -> HttpResponse:
        return await metrics({**query, "format": "prometheus"}, body)

    router.add("/", index, "ip:port/ (this list)")
    router.add("/version", version, "ip:port/version")
    router.add("/recentStartTime", recent_start_time, "ip:port/recentStartTime")
    router.add(
        "/metrics",
        metrics,
        "ip:port/metrics[?with_metric_fields=f1,f2][&types=t1,t2][&ids=i1,i2]"
        "[&attributes=k1,v1,k2,v2][&metrics=m1,m2][&detail=true][&format=json|prometheus]",
    )
    router.add(
        "/metrics/prometheus",
        prometheus,
        "ip:port/metrics/prometheus[?types=..][&ids=..][&attributes=..][&metrics=..] "
        "(Prometheus text exposition 0.0.4)",
    )
