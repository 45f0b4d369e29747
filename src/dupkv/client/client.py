"""`Client`: a connection to one cluster — meta calls, table admin, opening tables (asyncio
shell).

Owns the connection pool that every Table of the client shares, and the meta-server loop:
a meta call goes to the last meta server that answered (the leader) or else down the
configured list. A follower answers ERR_FORWARD_TO_OTHERS, naming the leader in
`partitions[0].primary` of a query_cfg response: the call follows that address; without a
name, or when a meta server cannot be reached (ERR_NETWORK_FAILURE, ERR_SESSION_RESET,
ERR_TIMEOUT) or is not active yet (ERR_SERVICE_NOT_ACTIVE), it tries the next one, pausing
after each full round. Bounded by the call's deadline and `MAX_META_ATTEMPTS`.

`meta_call` returns the response struct as the meta server sent it, `err` included, so the
shell and the duplication CLI can send any meta RPC in `dupkv.rpc.codes`; the admin methods
here raise DupkvError(err, hint) for a response whose `err` is not ERR_OK.
"""

import asyncio
import logging
import re
from typing import Any

from dupkv.base.errors import BadInput, DupkvError, ErrorCode
from dupkv.client.routing import Route, leader_hint, route_from_query_cfg
from dupkv.client.table import Table
from dupkv.client.types import NodeInfo, TableInfo
from dupkv.rpc.client import DEFAULT_CONNECT_TIMEOUT_MS, ConnectionPool, parse_address
from dupkv.rpc.idl_meta import meta
from dupkv.rpc.ids import unpack_address

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_MS = 5000
MAX_META_ATTEMPTS = 16
META_ROUND_PAUSE_MS = 100
READY_POLL_MS = (50, 100, 200, 500)  # create_table's query_cfg polls, then every 500 ms

QUERY_CFG = "RPC_CM_QUERY_PARTITION_CONFIG_BY_INDEX"
CREATE_APP = "RPC_CM_CREATE_APP"
DROP_APP = "RPC_CM_DROP_APP"
LIST_APPS = "RPC_CM_LIST_APPS"
LIST_NODES = "RPC_CM_LIST_NODES"
CLUSTER_INFO = "RPC_CM_CLUSTER_INFO"

TABLE_NAME_RE = re.compile(r"[0-9a-zA-Z._:]+")
# Errors after which another meta server may answer.
META_NEXT_ERRORS = frozenset(
    {
        ErrorCode.NETWORK_FAILURE,
        ErrorCode.SESSION_RESET,
        ErrorCode.TIMEOUT,
        ErrorCode.FORWARD_TO_OTHERS,
        ErrorCode.SERVICE_NOT_ACTIVE,
        ErrorCode.HANDLER_NOT_FOUND,
        ErrorCode.BUSY,
    }
)
DROPPED_STATUSES = frozenset({4, 6})  # AS_DROPPING, AS_DROPPED


def parse_meta_servers(meta_servers: str | list[str]) -> list[str]:
    """["host:port", ...] from "a:1,b:2" or a list; raises BadInput."""
    items = meta_servers.split(",") if isinstance(meta_servers, str) else list(meta_servers)
    out: list[str] = []
    for item in items:
        address = item.strip()
        parse_address(address)  # BadInput names the bad one
        if address not in out:
            out.append(address)
    if not out:
        raise BadInput("meta_servers is empty; accepted: 'host:port[,host:port...]'")
    return out


def _check(resp: Any, what: str) -> Any:
    err = getattr(resp, "err", ErrorCode.OK) or ErrorCode.OK
    if err != ErrorCode.OK:
        hint = getattr(resp, "hint", None) or getattr(resp, "hint_message", None)
        raise DupkvError(err, f"{what}: {hint}" if hint else what)
    return resp


class Client:
    """A cluster client. `await Client.connect("127.0.0.1:34601,127.0.0.1:34602")`."""

    def __init__(self, meta_servers: list[str], *, timeout_ms: int = DEFAULT_TIMEOUT_MS) -> None:
        if not isinstance(timeout_ms, int) or timeout_ms <= 0:
            raise BadInput(f"timeout_ms is {timeout_ms!r}; accepted: a positive int")
        self.meta_servers = list(meta_servers)
        self.timeout_ms = timeout_ms
        self._pool = ConnectionPool(connect_timeout_ms=min(DEFAULT_CONNECT_TIMEOUT_MS, timeout_ms))
        self._leader: str | None = None
        self._closed = False

    @classmethod
    async def connect(
        cls, meta_servers: str | list[str], *, timeout_ms: int = DEFAULT_TIMEOUT_MS
    ) -> "Client":
        """A client of the cluster whose meta servers are given; fails with
        DupkvError(ERR_NETWORK_FAILURE) when none of them accepts a connection."""
        client = cls(parse_meta_servers(meta_servers), timeout_ms=timeout_ms)
        try:
            await client._reach_any_meta()
        except BaseException:
            await client.close()
            raise
        return client

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def leader(self) -> str | None:
        """The meta server that answered last (the leader, as far as we know)."""
        return self._leader

    async def close(self) -> None:
        self._closed = True
        await self._pool.close()

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- meta calls --------------------------------------------------------------------

    async def meta_call(self, code: str, request: Any, *, timeout_ms: int | None = None) -> Any:
        """Send a meta RPC (a task code of dupkv.rpc.codes) to the leader; the response as
        sent, `err` included. Raises DupkvError when no meta server answers in time."""
        if self._closed:
            raise DupkvError(ErrorCode.SESSION_RESET, f"{code}: client closed")
        loop = asyncio.get_running_loop()
        ms = self.timeout_ms if timeout_ms is None else timeout_ms
        deadline = loop.time() + ms / 1000
        order = self.meta_servers
        if self._leader is not None:
            order = [self._leader] + [m for m in order if m != self._leader]
        nxt = 0
        hint: str | None = None
        last_error, last = ErrorCode.TIMEOUT, "none"
        for _ in range(MAX_META_ATTEMPTS):
            remaining_ms = int((deadline - loop.time()) * 1000)
            if remaining_ms <= 0:
                last_error = ErrorCode.TIMEOUT
                break
            if hint is not None:
                address, hint = hint, None
            else:
                address = order[nxt % len(order)]
                nxt += 1
            error, resp = await self._send_meta(address, code, request, remaining_ms)
            if error == ErrorCode.OK:
                error = getattr(resp, "err", None) or ErrorCode.OK
                if error not in (ErrorCode.FORWARD_TO_OTHERS, ErrorCode.SERVICE_NOT_ACTIVE):
                    self._leader = address
                    return resp
                leader = leader_hint(resp) if error == ErrorCode.FORWARD_TO_OTHERS else None
                if leader is not None and leader != address:
                    log.debug("meta %s says the leader is %s", address, leader)
                    hint = leader
            elif error not in META_NEXT_ERRORS:
                raise DupkvError(error, f"meta server {address} answered {code} with {error}")
            last_error, last = error, f"{error} from {address}"
            if self._leader == address:
                self._leader = None
            if hint is None and nxt % len(order) == 0:  # a whole round failed: pause
                pause = min(META_ROUND_PAUSE_MS / 1000 * (nxt // len(order)), 1.0)
                await asyncio.sleep(min(pause, max(0.0, deadline - loop.time())))
        raise DupkvError(
            last_error,
            f"no meta server of {','.join(self.meta_servers)} answered {code} within {ms} ms "
            f"(last: {last})",
        )

    async def _send_meta(
        self, address: str, code: str, request: Any, timeout_ms: int
    ) -> tuple[str, Any]:
        # The pool's call is bounded by its timeout, connecting included.
        return await self._pool.call(address, code, request, timeout_ms=timeout_ms)

    async def _reach_any_meta(self) -> None:
        errors = []
        for address in self.meta_servers:
            try:
                async with asyncio.timeout(self.timeout_ms / 1000):
                    await self._pool.get(address)
                return
            except (DupkvError, TimeoutError) as e:
                errors.append(f"{address}: {e}")
        raise DupkvError(
            ErrorCode.NETWORK_FAILURE, "no meta server is reachable (" + "; ".join(errors) + ")"
        )

    async def _fetch_route(self, name: str, *, timeout_ms: int | None = None) -> Route:
        req = meta.query_cfg_request(app_name=name, partition_indices=[])
        resp = await self.meta_call(QUERY_CFG, req, timeout_ms=timeout_ms)
        _check(resp, f"query_cfg of table {name!r}")
        return route_from_query_cfg(resp, name)

    # -- tables --------------------------------------------------------------------------

    async def open_table(self, name: str, *, timeout_ms: int | None = None) -> Table:
        """The table's partition map, fetched now; waits out ERR_BUSY_CREATING."""
        _check_table_name(name)
        loop = asyncio.get_running_loop()
        ms = self.timeout_ms if timeout_ms is None else timeout_ms
        deadline = loop.time() + ms / 1000
        while True:
            remaining_ms = int((deadline - loop.time()) * 1000)
            try:
                route = await self._fetch_route(name, timeout_ms=max(1, remaining_ms))
            except DupkvError as e:
                if e.code != ErrorCode.BUSY_CREATING or loop.time() + 0.1 >= deadline:
                    raise
                await asyncio.sleep(0.1)
                continue
            return Table(self, name, route)

    async def create_table(
        self,
        name: str,
        partition_count: int = 4,
        replica_count: int = 1,
        envs: dict[str, str] | None = None,
        success_if_exist: bool = False,
        wait_ready_s: float = 30,
        *,
        timeout_ms: int | None = None,
    ) -> int:
        """Create a table and return its app_id; then wait until every partition has a
        primary (up to `wait_ready_s`; 0 does not wait; DupkvError(ERR_TIMEOUT) if they
        do not all get one in time — the table exists anyway)."""
        _check_table_name(name)
        if (
            not isinstance(partition_count, int)
            or partition_count <= 0
            or partition_count & (partition_count - 1)
        ):
            raise BadInput(
                f"partition_count is {partition_count!r}; accepted: a power of two "
                "(1, 2, 4, 8, ...)"
            )
        if not isinstance(replica_count, int) or replica_count < 1:
            raise BadInput(f"replica_count is {replica_count!r}; accepted: 1 or more")
        envs = dict(envs or {})
        for k, v in envs.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise BadInput(f"env {k!r}={v!r}: table envs are str -> str")
        req = meta.configuration_create_app_request(
            app_name=name,
            options=meta.create_app_options(
                partition_count=partition_count,
                replica_count=replica_count,
                success_if_exist=bool(success_if_exist),
                app_type="pegasus",
                is_stateful=True,
                envs=envs,
            ),
        )
        resp = _check(
            await self.meta_call(CREATE_APP, req, timeout_ms=timeout_ms),
            f"create table {name!r}",
        )
        app_id = int(resp.appid or 0)
        if wait_ready_s > 0:
            await self._wait_ready(name, app_id, wait_ready_s)
        return app_id

    async def _wait_ready(self, name: str, app_id: int, wait_s: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        polls = 0
        missing: list[int] | str = "unknown"
        while True:
            remaining_ms = int((deadline - loop.time()) * 1000)
            if remaining_ms <= 0:
                break
            try:
                route = await self._fetch_route(name, timeout_ms=min(self.timeout_ms, remaining_ms))
            except DupkvError as e:
                if e.code not in (ErrorCode.BUSY_CREATING, ErrorCode.TIMEOUT):
                    raise
                missing = f"not queryable yet ({e.code})"
            else:
                missing = route.missing_primaries()
                if not missing:
                    return
            pause = READY_POLL_MS[min(polls, len(READY_POLL_MS) - 1)] / 1000
            polls += 1
            await asyncio.sleep(min(pause, max(0.0, deadline - loop.time())))
        raise DupkvError(
            ErrorCode.TIMEOUT,
            f"table {name!r} (app_id {app_id}) was created, but after {wait_s} s these "
            f"partitions still have no primary: {missing}",
        )

    async def drop_table(
        self,
        name: str,
        *,
        success_if_not_exist: bool = False,
        reserve_seconds: int | None = None,
        timeout_ms: int | None = None,
    ) -> None:
        """Drop a table (kept `reserve_seconds`, by default the meta's hold time, before
        its data is deleted)."""
        _check_table_name(name)
        opts = meta.drop_app_options(success_if_not_exist=bool(success_if_not_exist))
        if reserve_seconds is not None:
            opts.reserve_seconds = reserve_seconds
        req = meta.configuration_drop_app_request(app_name=name, options=opts)
        _check(await self.meta_call(DROP_APP, req, timeout_ms=timeout_ms), f"drop table {name!r}")

    async def list_tables(
        self, include_dropped: bool = False, *, timeout_ms: int | None = None
    ) -> list[TableInfo]:
        req = meta.configuration_list_apps_request(status=0)  # AS_INVALID: every status
        resp = _check(await self.meta_call(LIST_APPS, req, timeout_ms=timeout_ms), "list tables")
        out = []
        for info in resp.infos or []:
            if not include_dropped and info.status in DROPPED_STATUSES:
                continue
            status = meta.app_status._VALUES_TO_NAMES.get(info.status, f"AS_{info.status}")
            out.append(
                TableInfo(
                    app_id=info.app_id or 0,
                    name=info.app_name or "",
                    status=status.removeprefix("AS_"),
                    partition_count=info.partition_count or 0,
                    replica_count=info.max_replica_count or 0,
                    envs=dict(info.envs or {}),
                    create_second=info.create_second or 0,
                    drop_second=info.drop_second or 0,
                    expire_second=info.expire_second or 0,
                    duplicating=bool(info.duplicating),
                    atomic_idempotent=bool(info.atomic_idempotent),
                )
            )
        return sorted(out, key=lambda t: t.app_id)

    async def list_nodes(self, *, timeout_ms: int | None = None) -> list[NodeInfo]:
        req = meta.configuration_list_nodes_request(status=0)  # NS_INVALID: every status
        resp = _check(await self.meta_call(LIST_NODES, req, timeout_ms=timeout_ms), "list nodes")
        out = []
        for info in resp.infos or []:
            try:
                address = unpack_address(info.address or 0) or "invalid address"
            except ValueError:
                address = f"unknown address {info.address:#x}"
            status = meta.node_status._VALUES_TO_NAMES.get(info.status, f"NS_{info.status}")
            out.append(NodeInfo(address, status.removeprefix("NS_")))
        return out

    async def cluster_info(self, *, timeout_ms: int | None = None) -> dict[str, str]:
        req = meta.configuration_cluster_info_request()
        resp = _check(
            await self.meta_call(CLUSTER_INFO, req, timeout_ms=timeout_ms), "cluster info"
        )
        return dict(zip(resp.keys or [], resp.values or [], strict=False))


def _check_table_name(name: str) -> None:
    if not isinstance(name, str) or not TABLE_NAME_RE.fullmatch(name):
        raise BadInput(
            f"table name {name!r} is not valid; accepted: one or more of the characters "
            "0-9 a-z A-Z . _ :"
        )
