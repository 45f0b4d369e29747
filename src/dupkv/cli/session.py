"""What a shell session holds between commands (thin shell around the blocking client).

The cluster (its meta servers, and its name when known), the client of that cluster, opened
on first use so that `help` works without a cluster, the table chosen with `use`, display
settings, and the output stream. Every command handler gets the session and prints through
`say`.
"""

import json
import sys
import urllib.error
import urllib.request
from typing import Any, TextIO

from dupkv.base.config import Config
from dupkv.base.errors import DupkvError, ErrorCode
from dupkv.client.blocking import BlockingClient, BlockingTable
from dupkv.client.client import parse_meta_servers

DEFAULT_META = "127.0.0.1:34601"
HTTP_TIMEOUT_S = 3.0


class NoTable(Exception):
    """A data command before `use`."""


class Session:
    def __init__(
        self,
        meta_servers: list[str],
        *,
        cluster_name: str | None = None,
        config: Config | None = None,
        out: TextIO = sys.stdout,
        timeout_ms: int = 5000,
    ) -> None:
        self.meta_servers = meta_servers
        self.cluster_name = cluster_name
        self.config = config
        self.out = out
        self.timeout_ms = timeout_ms
        self.escape_all = False
        self.stop = False  # `exit` was run
        self.app_name: str | None = None
        self._client: BlockingClient | None = None
        self._table: BlockingTable | None = None

    # -- output --------------------------------------------------------------------------

    def say(self, *lines: str) -> None:
        for line in lines:
            print(line, file=self.out)

    # -- the cluster ---------------------------------------------------------------------

    @property
    def client(self) -> BlockingClient:
        if self._client is None:
            self._client = BlockingClient(self.meta_servers, timeout_ms=self.timeout_ms)
        return self._client

    def resolve_cluster(self, name: str) -> list[str]:
        """Meta servers of a cluster named in [pegasus.clusters], or given as host:port,...;
        DupkvError-free: raises ValueError with what is accepted."""
        if self.config is not None and name in self.config.clusters:
            return list(self.config.clusters[name])
        if ":" in name:
            return parse_meta_servers(name)
        if self.config is None:
            raise ValueError(
                f"cluster {name!r} is unknown: no config file was given (start the shell with "
                "--config FILE listing clusters in [pegasus.clusters]), or give host:port"
            )
        known = ", ".join(sorted(self.config.clusters)) or "none"
        raise ValueError(
            f"cluster {name!r} is not in [pegasus.clusters] of {self.config.source} "
            f"(known: {known}); or give host:port"
        )

    def switch_cluster(self, name: str) -> None:
        """Connect to another cluster (now, so that a wrong one fails here); the current
        client and table are kept if it fails."""
        servers = self.resolve_cluster(name)
        client = BlockingClient(servers, timeout_ms=self.timeout_ms)
        self.close()
        self._client = client
        self.meta_servers = servers
        self.cluster_name = None if ":" in name else name

    def current_cluster_name(self) -> str:
        """This cluster's name: as chosen with -n/cc, else as its meta server says."""
        if self.cluster_name is None:
            self.cluster_name = self.client.cluster_info().get("cluster_name", "") or ""
        return self.cluster_name

    # -- the table -----------------------------------------------------------------------

    def use(self, name: str) -> BlockingTable:
        """Open `name` (a query to the meta server: it must exist) and make it current."""
        table = self.client.open_table(name)
        self.app_name, self._table = name, table
        return table

    def table(self) -> BlockingTable:
        if self.app_name is None:
            raise NoTable()
        if self._table is None:
            self._table = self.client.open_table(self.app_name)
        return self._table

    def forget_table(self, name: str) -> None:
        """After `drop name`: the current table is gone."""
        if self.app_name == name:
            self.app_name, self._table = None, None

    def close(self) -> None:
        self._table = None
        if self._client is not None:
            client, self._client = self._client, None
            client.close()


def http_json(address: str, path: str, timeout_s: float = HTTP_TIMEOUT_S) -> Any:
    """GET http://address/path as JSON; DupkvError(ERR_NETWORK_FAILURE) naming the server
    when it cannot be read."""
    url = f"http://{address}{path}"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as e:
        body = e.read().decode(errors="replace").strip()
        raise DupkvError(ErrorCode.NETWORK_FAILURE, f"GET {url}: HTTP {e.code} {body}") from None
    except (OSError, ValueError) as e:
        raise DupkvError(ErrorCode.NETWORK_FAILURE, f"GET {url}: {e}") from None
