"""`Table`: the Pegasus data API of one table (asyncio shell).

Owns the table's route (a `routing.Route` from query_cfg) and the loop that sends one data
RPC: pick the partition from the key's hash, send it to that partition's primary through
the client's connection pool (many requests in flight per connection, no per-request lock),
and on a frame-level error do what `policy.decide` says, within the op's deadline
(`timeout_ms`, default the client's). At most one route refresh per table is in flight:
callers that saw the same route wait for it instead of querying the meta server again.

The `error` field of a data response is a RocksDB status: each op names the statuses that
are results for it (get: OK/NotFound, check_and_set: OK/TryAgain, multi_get:
OK/Incomplete, ...); any other raises `PegasusError`.
"""

import asyncio
import dataclasses
import logging
import random
import time
from collections.abc import Awaitable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from dupkv.base.crc64 import crc64, key_hash
from dupkv.base.errors import BadInput, DupkvError, ErrorCode, RocksStatus
from dupkv.client import ops, policy
from dupkv.client.routing import Route, Target
from dupkv.client.scanner import Scanner, Span
from dupkv.client.types import (
    Bytes,
    CheckAndMutateResult,
    CheckAndSetResult,
    Mutate,
    ScanOptions,
    as_bytes,
)
from dupkv.rpc.client import Outcome
from dupkv.rpc.thrift import rrdb
from dupkv.storage.mutation import TaskCode
from dupkv.storage.schema import encode_key

if TYPE_CHECKING:
    from dupkv.client.client import Client

log = logging.getLogger(__name__)

T = TypeVar("T")

GET = "RPC_RRDB_RRDB_GET"
MULTI_GET = "RPC_RRDB_RRDB_MULTI_GET"
BATCH_GET = "RPC_RRDB_RRDB_BATCH_GET"
SORTKEY_COUNT = "RPC_RRDB_RRDB_SORTKEY_COUNT"
TTL = "RPC_RRDB_RRDB_TTL"

# query_cfg errors meaning the table itself is gone: an op fails rather than retrying.
TABLE_GONE = frozenset(
    {ErrorCode.OBJECT_NOT_FOUND, ErrorCode.APP_NOT_EXIST, ErrorCode.BUSY_DROPPING}
)
I64_MIN, I64_MAX = -(1 << 63), (1 << 63) - 1


async def gather_all(coros: Iterable[Awaitable[T]]) -> list[T]:
    """Run coroutines concurrently under one TaskGroup; results in order. The first failure
    cancels the others and is raised as itself (not as an ExceptionGroup)."""
    tasks: list[asyncio.Task[T]] = []
    try:
        async with asyncio.TaskGroup() as tg:
            for coro in coros:
                tasks.append(tg.create_task(_as_coroutine(coro)))
    except BaseExceptionGroup as group:
        first = group.exceptions[0]
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from group
    return [t.result() for t in tasks]


async def _as_coroutine(aw: Awaitable[T]) -> T:
    return await aw


class Table:
    """One table of a cluster; get it from `Client.open_table`."""

    def __init__(self, client: "Client", name: str, route: Route) -> None:
        self.name = name
        self.timeout_ms = client.timeout_ms
        self._client = client
        self._route = route
        self._refresh_lock = asyncio.Lock()
        self._refresh_gen = 0  # bumped when a refresh attempt ends
        self._stale = False
        self.refresh_count = 0  # successful route refreshes, for tests and diagnostics

    @property
    def app_id(self) -> int:
        return self._route.app_id

    @property
    def partition_count(self) -> int:
        return self._route.partition_count

    @property
    def route(self) -> Route:
        return self._route

    def __repr__(self) -> str:
        return f"Table({self.name!r}, app_id={self.app_id}, partitions={self.partition_count})"

    async def refresh_route(self, timeout_ms: int | None = None) -> None:
        """Re-query the table's partition map now; raises DupkvError if that fails."""
        deadline = self._deadline(timeout_ms)
        remaining = deadline - asyncio.get_running_loop().time()
        try:
            async with asyncio.timeout(remaining), self._refresh_lock:
                left = deadline - asyncio.get_running_loop().time()
                await self._refresh(int(left * 1000), quiet=False)
        except TimeoutError:
            raise DupkvError(ErrorCode.TIMEOUT, f"refresh route of table {self.name!r}") from None

    # -- single-key operations -----------------------------------------------------------

    async def set(
        self,
        hash_key: Bytes,
        sort_key: Bytes,
        value: Bytes,
        ttl_seconds: int = 0,
        *,
        timeout_ms: int | None = None,
    ) -> None:
        hk, sk, h = _single_key(hash_key, sort_key, "set")
        ts = ops.expire_ts(ttl_seconds, time.time(), "set")
        req = ops.put_request(hk, sk, as_bytes(value, "value"), ts)
        # _call's steps written out (here and in get): one coroutine frame less per call.
        deadline = self._deadline(timeout_ms)
        sent = self._attempt(TaskCode.PUT, req, h, None, deadline)
        error, resp = await sent.outcome if sent is not None else _NOT_SENT
        if error != ErrorCode.OK:
            failed = None if sent is None else (error, sent)
            resp = await self._retry(
                "set", TaskCode.PUT, req, h, None, timeout_ms, deadline, failed
            )
        ops.status_of(resp, "set")

    async def get(
        self, hash_key: Bytes, sort_key: Bytes, *, timeout_ms: int | None = None
    ) -> bytes | None:
        hk, sk, h = _single_key(hash_key, sort_key, "get")
        key = encode_key(hk, sk)
        deadline = self._deadline(timeout_ms)
        sent = self._attempt(GET, key, h, None, deadline)
        error, resp = await sent.outcome if sent is not None else _NOT_SENT
        if error != ErrorCode.OK:
            failed = None if sent is None else (error, sent)
            resp = await self._retry("get", GET, key, h, None, timeout_ms, deadline, failed)
        if ops.status_of(resp, "get", (RocksStatus.OK, RocksStatus.NOT_FOUND)):
            return None
        return resp.value or b""

    async def delete(
        self, hash_key: Bytes, sort_key: Bytes, *, timeout_ms: int | None = None
    ) -> None:
        hk, sk, h = _single_key(hash_key, sort_key, "delete")
        resp = await self._call(
            "delete", TaskCode.REMOVE, encode_key(hk, sk), key_hash=h, timeout_ms=timeout_ms
        )
        ops.status_of(resp, "delete")

    async def ttl(
        self, hash_key: Bytes, sort_key: Bytes, *, timeout_ms: int | None = None
    ) -> int | None:
        """Seconds left; -1 if the record has no TTL; None if it does not exist."""
        hk, sk, h = _single_key(hash_key, sort_key, "ttl")
        resp = await self._call("ttl", TTL, encode_key(hk, sk), key_hash=h, timeout_ms=timeout_ms)
        if ops.status_of(resp, "ttl", (RocksStatus.OK, RocksStatus.NOT_FOUND)):
            return None
        return resp.ttl_seconds if resp.ttl_seconds is not None else -1

    async def exist(
        self, hash_key: Bytes, sort_key: Bytes, *, timeout_ms: int | None = None
    ) -> bool:
        return await self.ttl(hash_key, sort_key, timeout_ms=timeout_ms) is not None

    async def incr(
        self,
        hash_key: Bytes,
        sort_key: Bytes,
        increment: int = 1,
        ttl_seconds: int = 0,
        *,
        timeout_ms: int | None = None,
    ) -> int:
        """Add `increment` to the record's integer value and return the new value.

        `ttl_seconds`: 0 keeps the record's TTL, -1 clears it, > 0 sets it. Not retried after
        a timeout or a lost connection (it might have been applied): those raise DupkvError.
        """
        hk, sk, h = _single_key(hash_key, sort_key, "incr")
        if not isinstance(increment, int) or not I64_MIN <= increment <= I64_MAX:
            raise BadInput(f"incr: increment is {increment!r}; accepted: a 64-bit integer")
        req = rrdb.incr_request(
            key=encode_key(hk, sk),
            increment=increment,
            expire_ts_seconds=ops.incr_expire_ts(ttl_seconds, time.time()),
        )
        resp = await self._call(
            "incr", TaskCode.INCR, req, key_hash=h, timeout_ms=timeout_ms, idempotent=False
        )
        ops.status_of(resp, "incr")
        return resp.new_value or 0

    # -- one hash key, several sort keys -------------------------------------------------

    async def multi_set(
        self,
        hash_key: Bytes,
        kvs: dict[Any, Any] | Sequence[tuple[Bytes, Bytes]],
        ttl_seconds: int = 0,
        *,
        timeout_ms: int | None = None,
    ) -> None:
        hk = ops.hash_key(hash_key, "multi_set")
        ts = ops.expire_ts(ttl_seconds, time.time(), "multi_set")
        req = ops.multi_put_request(hk, ops.kv_pairs(kvs), ts)
        resp = await self._call(
            "multi_set", TaskCode.MULTI_PUT, req, key_hash=crc64(hk), timeout_ms=timeout_ms
        )
        ops.status_of(resp, "multi_set")

    async def multi_get(
        self,
        hash_key: Bytes,
        sort_keys: Sequence[Bytes] | None = None,
        *,
        max_kv_count: int = 100,
        max_kv_size: int = 1_000_000,
        start_sortkey: Bytes = b"",
        stop_sortkey: Bytes = b"",
        start_inclusive: bool = True,
        stop_inclusive: bool = False,
        sort_key_filter_type: int = 0,
        sort_key_filter_pattern: Bytes = b"",
        no_value: bool = False,
        reverse: bool = False,
        timeout_ms: int | None = None,
    ) -> tuple[list[tuple[bytes, bytes]], bool]:
        """([(sort_key, value)] in sort-key order, all_fetched).

        With `sort_keys`, those records (absent ones left out); without, the sort-key range
        [start_sortkey, stop_sortkey) (empty stop: to the end of the hash key). all_fetched
        is False when a limit (count, size, server iteration cap) cut the answer short.
        """
        hk = ops.hash_key(hash_key, "multi_get")
        req = ops.multi_get_request(
            hk,
            [as_bytes(s, "sort_key") for s in sort_keys or ()],
            max_kv_count=max_kv_count,
            max_kv_size=max_kv_size,
            start_sortkey=as_bytes(start_sortkey, "start_sortkey"),
            stop_sortkey=as_bytes(stop_sortkey, "stop_sortkey"),
            start_inclusive=start_inclusive,
            stop_inclusive=stop_inclusive,
            sort_key_filter_type=sort_key_filter_type,
            sort_key_filter_pattern=as_bytes(sort_key_filter_pattern, "sort_key_filter_pattern"),
            no_value=no_value,
            reverse=reverse,
        )
        resp = await self._call(
            "multi_get", MULTI_GET, req, key_hash=crc64(hk), timeout_ms=timeout_ms
        )
        status = ops.status_of(resp, "multi_get", (RocksStatus.OK, RocksStatus.INCOMPLETE))
        kvs = [(kv.key or b"", kv.value or b"") for kv in resp.kvs or []]
        return kvs, status == RocksStatus.OK

    async def multi_del(
        self, hash_key: Bytes, sort_keys: Sequence[Bytes], *, timeout_ms: int | None = None
    ) -> int:
        """Delete those sort keys atomically; returns how many were asked (Pegasus counts
        requested keys, not existing ones)."""
        hk = ops.hash_key(hash_key, "multi_del")
        req = ops.multi_remove_request(hk, [as_bytes(s, "sort_key") for s in sort_keys])
        resp = await self._call(
            "multi_del", TaskCode.MULTI_REMOVE, req, key_hash=crc64(hk), timeout_ms=timeout_ms
        )
        ops.status_of(resp, "multi_del")
        return resp.count or 0

    async def sortkey_count(self, hash_key: Bytes, *, timeout_ms: int | None = None) -> int:
        """Live records under the hash key (-1 if the server hit its iteration time limit)."""
        hk = ops.hash_key(hash_key, "sortkey_count")
        resp = await self._call(
            "sortkey_count", SORTKEY_COUNT, hk, key_hash=crc64(hk), timeout_ms=timeout_ms
        )
        ops.status_of(resp, "sortkey_count")
        return resp.count or 0

    async def check_and_set(
        self,
        hash_key: Bytes,
        check_sort_key: Bytes,
        check_type: int,
        check_operand: Bytes,
        set_sort_key: Bytes,
        set_value: Bytes,
        *,
        ttl_seconds: int = 0,
        return_check_value: bool = False,
        timeout_ms: int | None = None,
    ) -> CheckAndSetResult:
        """If the check on `check_sort_key` passes, set `set_sort_key` (atomically).

        A failed check is a result (`set_succeed=False`), not an exception. Not retried after
        a timeout or a lost connection (it might have been applied).
        """
        hk = ops.hash_key(hash_key, "check_and_set")
        check_sk = as_bytes(check_sort_key, "check_sort_key")
        req = ops.check_and_set_request(
            hk,
            check_sk,
            check_type,
            as_bytes(check_operand, "check_operand"),
            as_bytes(set_sort_key, "set_sort_key"),
            as_bytes(set_value, "set_value"),
            ops.expire_ts(ttl_seconds, time.time(), "check_and_set"),
            return_check_value,
        )
        resp = await self._call(
            "check_and_set",
            TaskCode.CHECK_AND_SET,
            req,
            key_hash=crc64(hk),
            timeout_ms=timeout_ms,
            idempotent=False,
        )
        return CheckAndSetResult(*_check_outcome(resp, "check_and_set"))

    async def check_and_mutate(
        self,
        hash_key: Bytes,
        check_sort_key: Bytes,
        check_type: int,
        check_operand: Bytes,
        mutations: Sequence[Mutate],
        *,
        return_check_value: bool = False,
        timeout_ms: int | None = None,
    ) -> CheckAndMutateResult:
        """If the check passes, apply every mutation (Mutate.put / Mutate.delete) atomically."""
        hk = ops.hash_key(hash_key, "check_and_mutate")
        req = ops.check_and_mutate_request(
            hk,
            as_bytes(check_sort_key, "check_sort_key"),
            check_type,
            as_bytes(check_operand, "check_operand"),
            list(mutations),
            return_check_value,
            time.time(),
        )
        resp = await self._call(
            "check_and_mutate",
            TaskCode.CHECK_AND_MUTATE,
            req,
            key_hash=crc64(hk),
            timeout_ms=timeout_ms,
            idempotent=False,
        )
        return CheckAndMutateResult(*_check_outcome(resp, "check_and_mutate"))

    # -- several hash keys ---------------------------------------------------------------

    async def batch_get(
        self, keys: Sequence[tuple[Bytes, Bytes]], *, timeout_ms: int | None = None
    ) -> list[bytes | None]:
        """Values of (hash_key, sort_key) pairs, None where absent, in the order given.

        One batch_get RPC per partition, all sent concurrently.
        """
        full = [_single_key(hk, sk, "batch_get") for hk, sk in keys]
        if not full:
            return []
        groups: dict[int, list[tuple[bytes, bytes, int]]] = {}
        route = self._route
        for key in full:
            groups.setdefault(route.for_hash(key[2]).partition_index, []).append(key)

        async def one(group: list[tuple[bytes, bytes, int]]) -> list[Any]:
            req = rrdb.batch_get_request(
                keys=[rrdb.full_key(hash_key=hk, sort_key=sk) for hk, sk, _ in group]
            )
            resp = await self._call(
                "batch_get", BATCH_GET, req, key_hash=group[0][2], timeout_ms=timeout_ms
            )
            ops.status_of(resp, "batch_get")
            return list(resp.data or [])

        found: dict[tuple[bytes, bytes], bytes] = {}
        for data in await gather_all(one(g) for g in groups.values()):
            for d in data:
                found[(d.hash_key or b"", d.sort_key or b"")] = d.value or b""
        return [found.get((hk, sk)) for hk, sk, _ in full]

    # -- scanners ------------------------------------------------------------------------

    def get_scanner(
        self,
        hash_key: Bytes,
        start_sort_key: Bytes = b"",
        stop_sort_key: Bytes = b"",
        options: ScanOptions | None = None,
    ) -> Scanner:
        """Records of one hash key with sort keys in [start, stop) (ScanOptions decide the
        inclusivity; an empty stop means the end of the hash key), in sort-key order."""
        options = options or ScanOptions()
        hk = ops.hash_key(hash_key, "get_scanner")
        rng = ops.scan_range(
            hk,
            as_bytes(start_sort_key, "start_sort_key"),
            as_bytes(stop_sort_key, "stop_sort_key"),
            start_inclusive=options.start_inclusive,
            stop_inclusive=options.stop_inclusive,
            sort_key_filter_type=options.sort_key_filter_type,
            sort_key_filter_pattern=as_bytes(options.sort_key_filter_pattern, "filter pattern"),
        )
        spans = [] if rng is None else [Span(*rng, key_hash=crc64(hk))]
        return Scanner(self, spans, options, full_scan=False)

    def get_unordered_scanners(
        self, max_count: int, options: ScanOptions | None = None
    ) -> list[Scanner]:
        """min(max_count, partitions) scanners that together cover the whole table, each
        over whole partitions (in no particular key order)."""
        if not isinstance(max_count, int) or max_count < 1:
            raise BadInput(f"get_unordered_scanners: max_count is {max_count!r}; accepted: >= 1")
        options = options or ScanOptions()
        count = self._route.partition_count
        n = min(count, max_count)
        size, more = divmod(count, n)
        pidx = count
        scanners = []
        for i in range(n):  # as Java's client: partitions handed out from the last one down
            spans = []
            for _ in range(size + 1 if i < more else size):
                pidx -= 1
                spans.append(Span(ops.FULL_SCAN_START, ops.FULL_SCAN_STOP, True, False, pidx=pidx))
            scanners.append(Scanner(self, spans, options, full_scan=True))
        return scanners

    async def count(self, max_scanners: int = 8, options: ScanOptions | None = None) -> int:
        """Live records in the whole table, counted by the servers (`only_return_count`)
        with up to `max_scanners` scanners running concurrently."""
        base = options or ScanOptions(batch_size=1000)
        opts = dataclasses.replace(base, only_return_count=True, no_value=True)
        scanners = self.get_unordered_scanners(max_scanners, opts)
        try:
            counts = await gather_all(s.count() for s in scanners)
        finally:
            for s in scanners:
                await s.close()
        return sum(counts)

    # -- the RPC loop ----------------------------------------------------------------------

    def _deadline(self, timeout_ms: int | None) -> float:
        ms = self.timeout_ms if timeout_ms is None else timeout_ms
        if not isinstance(ms, int | float) or ms <= 0:
            raise BadInput(f"timeout_ms is {ms!r}; accepted: a positive number of milliseconds")
        return asyncio.get_running_loop().time() + ms / 1000

    def _target(self, key_hash: int | None, pidx: int | None) -> Target:
        if pidx is not None:
            return self._route.for_partition(pidx)
        assert key_hash is not None, "a data RPC is routed by key hash or partition"
        return self._route.for_hash(key_hash)

    async def _call(
        self,
        op: str,
        code: str,
        arg: Any,
        *,
        key_hash: int | None = None,
        pidx: int | None = None,
        timeout_ms: int | None = None,
        idempotent: bool = True,
    ) -> Any:
        """Send one data RPC to the right primary, retrying per `policy` until the deadline.

        Returns the response struct (its RocksDB status is the caller's to judge); raises
        DupkvError for frame-level failures and ERR_TIMEOUT when the deadline passes.
        """
        deadline = self._deadline(timeout_ms)
        sent = self._attempt(code, arg, key_hash, pidx, deadline)
        error, result = await sent.outcome if sent is not None else _NOT_SENT
        if error == ErrorCode.OK:
            return result
        failed = None if sent is None else (error, sent)
        return await self._retry(
            op, code, arg, key_hash, pidx, timeout_ms, deadline, failed, idempotent=idempotent
        )

    def _attempt(
        self, code: str, arg: Any, key_hash: int | None, pidx: int | None, deadline: float
    ) -> "_Sent | None":
        """The first try, sent at once on the route as it is; None when the route must be
        refreshed first or has no primary for the key (`_retry` does that)."""
        if self._client.closed:
            raise DupkvError(ErrorCode.SESSION_RESET, f"table {self.name!r}: client closed")
        if self._stale:
            return None
        target = self._target(key_hash, pidx)
        remaining_ms = int((deadline - asyncio.get_running_loop().time()) * 1000)
        if target.address is None or remaining_ms <= 0:
            return None
        return _Sent(self._send(target, code, arg, remaining_ms), target, self._refresh_gen)

    def _send(self, target: Target, code: str, arg: Any, timeout_ms: int) -> Awaitable[Outcome]:
        """One call to `target`'s primary, bounded by `timeout_ms` (connecting included)."""
        assert target.address is not None
        return self._client._pool.call(
            target.address,
            code,
            arg,
            app_id=target.app_id,
            partition_index=target.partition_index,
            partition_hash=target.partition_hash,
            timeout_ms=timeout_ms,
        )

    async def _retry(
        self,
        op: str,
        code: str,
        arg: Any,
        key_hash: int | None,
        pidx: int | None,
        timeout_ms: int | None,
        deadline: float,
        failed: "tuple[str, _Sent] | None",
        *,
        idempotent: bool = True,
    ) -> Any:
        """The rest of `_call` after a first try that failed (`failed`: its error, and the
        try) or was not sent (None): judge each failure by `policy`, refresh the route,
        back off and try again until the deadline."""
        loop = asyncio.get_running_loop()
        attempt = 0
        last = "none"
        while True:
            if failed is not None:  # judged below, like any failed attempt
                error, target, gen = failed[0], failed[1].target, failed[1].gen
                failed = None
            else:
                if self._stale and not await self._refresh_within(self._refresh_gen, deadline):
                    break
                gen = self._refresh_gen
                target = self._target(key_hash, pidx)
                remaining_ms = int((deadline - loop.time()) * 1000)
                if remaining_ms <= 0:
                    break
                if target.address is None:
                    error, result = ErrorCode.OBJECT_NOT_FOUND, None  # no primary: refresh
                else:
                    error, result = await self._send(target, code, arg, remaining_ms)
                if error == ErrorCode.OK:
                    return result
            attempt += 1
            where = f"{target.app_id}.{target.partition_index} at {target.address or 'no primary'}"
            last = f"{error} from {where}"
            step = policy.decide(error, attempt, idempotent=idempotent, rand=random.random())
            if step.route_stale:
                self._stale = True
            if step.action is policy.Action.FAIL:
                hint = f"{op} on table {self.name!r} ({where})"
                if error in policy.AMBIGUOUS_ERRORS and not idempotent:
                    hint += "; not retried: it may or may not have been applied"
                raise DupkvError(error, hint)
            if step.action is policy.Action.REFRESH and not await self._refresh_within(
                gen, deadline
            ):
                break
            if step.delay_ms > 0:
                await asyncio.sleep(min(step.delay_ms / 1000, max(0.0, deadline - loop.time())))
        ms = self.timeout_ms if timeout_ms is None else timeout_ms
        raise DupkvError(
            ErrorCode.TIMEOUT,
            f"{op} on table {self.name!r}: no success within {ms} ms "
            f"({attempt} attempts, last error: {last})",
        )

    async def _refresh_within(self, seen_gen: int, deadline: float) -> bool:
        """Refresh the route unless someone did since `seen_gen`; False if the deadline
        passed first. Raises DupkvError if the meta says the table is gone."""
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            return False
        try:
            async with asyncio.timeout(remaining):
                async with self._refresh_lock:
                    if self._refresh_gen != seen_gen:
                        return True
                    await self._refresh(int(remaining * 1000))
        except TimeoutError:
            return False
        return True

    async def _refresh(self, timeout_ms: int, *, quiet: bool = True) -> None:
        """One query_cfg; call with `_refresh_lock` held. A failure that leaves the table in
        place is logged and swallowed when `quiet` (the caller's retry loop goes on with the
        old route); a table that is gone always raises."""
        self._stale = False  # one attempt answers a stale mark, whatever its outcome
        try:
            route = await self._client._fetch_route(self.name, timeout_ms=max(1, timeout_ms))
        except DupkvError as e:
            self._refresh_gen += 1
            if e.code in TABLE_GONE:
                raise DupkvError(e.code, f"table {self.name!r} is gone: {e.hint}") from e
            if not quiet:
                raise
            log.info("route refresh of table %r failed: %s", self.name, e)
            return
        self._refresh_gen += 1
        if route.app_id != self._route.app_id:
            log.warning(
                "table %r now has app_id %d (was %d)", self.name, route.app_id, self._route.app_id
            )
        self._route = route
        self.refresh_count += 1


@dataclasses.dataclass(slots=True)
class _Sent:
    """A first try on its way: its outcome to await, where it went, the route's generation."""

    outcome: Awaitable[Outcome]
    target: Target
    gen: int


_NOT_SENT: Outcome = ("", None)  # no first try: not ERR_OK, so _retry takes over


def _single_key(hash_key: Bytes, sort_key: Bytes, op: str) -> tuple[bytes, bytes, int]:
    hk = ops.hash_key(hash_key, op, allow_empty=True)
    sk = as_bytes(sort_key, "sort_key")
    return hk, sk, key_hash(hk, sk)


def _check_outcome(resp: Any, op: str) -> tuple[bool, bool, bool, bytes | None]:
    """(succeeded, check_value_returned, check_value_exist, check_value) of a check op;
    TryAgain (the check failed) is a result."""
    status = ops.status_of(resp, op, (RocksStatus.OK, RocksStatus.TRY_AGAIN))
    returned = bool(resp.check_value_returned)
    exist = returned and bool(resp.check_value_exist)
    return status == RocksStatus.OK, returned, exist, (resp.check_value or b"") if exist else None
