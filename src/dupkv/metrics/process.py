"""The `server` entity's process figures, read from /proc on each export (shell).

`install_process_metrics(registry)` makes the `server` entity's `resident_mem_usage_mb` and
`virtual_mem_usage_mb` gauges (Pegasus's names) and a collector that refreshes them from
/proc/self/statm whenever the registry is collected, i.e. just before /metrics answers.
`parse_statm` is the pure part. Where /proc is missing (not Linux) the gauges stay at 0.
"""

import os

from dupkv.metrics.registry import Registry, Unit

STATM_PATH = "/proc/self/statm"
COLLECTOR_NAME = "process"
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_MB = 1024 * 1024


def parse_statm(text: str, page_bytes: int) -> tuple[int, int]:
    """(virtual MB, resident MB) from the text of /proc/<pid>/statm (sizes in pages)."""
    fields = text.split()
    if len(fields) < 2 or not fields[0].isdigit() or not fields[1].isdigit():
        raise ValueError(f"unexpected statm contents {text[:80]!r}")
    return int(fields[0]) * page_bytes // _MB, int(fields[1]) * page_bytes // _MB


def install_process_metrics(registry: Registry, statm_path: str = STATM_PATH) -> None:
    """Give `registry` the process gauges; calling it again changes nothing."""
    server = registry.entity("server", "server")
    resident = server.gauge(
        "resident_mem_usage_mb", Unit.MEGABYTES, "The resident memory of this process"
    )
    virtual = server.gauge(
        "virtual_mem_usage_mb", Unit.MEGABYTES, "The virtual memory of this process"
    )

    def refresh() -> None:
        try:
            with open(statm_path) as f:
                text = f.read()
        except FileNotFoundError:
            return
        vm_mb, rss_mb = parse_statm(text, PAGE_BYTES)
        virtual.set(vm_mb)
        resident.set(rss_mb)

    registry.add_collector(COLLECTOR_NAME, refresh)
