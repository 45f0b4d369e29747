"""A blocking face of the asyncio client, for the shell, the demo and scripts (thin shell).

`BlockingClient` owns one event loop running in a daemon thread; every method hands its
coroutine to that loop (`asyncio.run_coroutine_threadsafe`) and waits for the result, so
many threads may share one client and their requests are in flight together. `close()`
closes the client's connections, stops the loop and joins the thread.

Each wait has a safety bound above the op's own deadline (the async op always ends by its
deadline; the bound only guards against a bug): 4 x timeout_ms + 10 s, plus `wait_ready_s`
for create_table. `count` is left unbounded: it runs as many RPCs as the table needs, each
with its own deadline. Calling a blocking method from the loop's own thread (a callback of
the async client) would deadlock, so it raises RuntimeError instead.
"""

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

from dupkv.base.errors import DupkvError, ErrorCode
from dupkv.client.client import DEFAULT_TIMEOUT_MS, Client, parse_meta_servers
from dupkv.client.scanner import Record, Scanner
from dupkv.client.table import Table
from dupkv.client.types import (
    Bytes,
    CheckAndMutateResult,
    CheckAndSetResult,
    Mutate,
    NodeInfo,
    ScanOptions,
    TableInfo,
)

T = TypeVar("T")

JOIN_TIMEOUT_S = 10.0
SAFETY_FACTOR = 4
SAFETY_EXTRA_S = 10.0


class _LoopThread:
    """An event loop in a daemon thread, and a way to run coroutines on it and wait."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._main, name="dupkv-client", daemon=True)
        self.thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            tasks = asyncio.all_tasks(self.loop)
            for task in tasks:
                task.cancel()
            if tasks:
                self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    def run(self, coro: Coroutine[Any, Any, T], wait_s: float | None) -> T:
        if threading.current_thread() is self.thread:
            coro.close()
            raise RuntimeError("a blocking dupkv call from the client's own event loop thread")
        if not self.thread.is_alive():
            coro.close()
            raise DupkvError(ErrorCode.SESSION_RESET, "the blocking client is closed")
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(wait_s)
        except concurrent.futures.TimeoutError:
            if future.done():
                raise  # the coroutine itself raised TimeoutError
            future.cancel()
            raise DupkvError(
                ErrorCode.TIMEOUT, f"blocking call did not finish within {wait_s} s"
            ) from None
        except BaseException:
            future.cancel()  # e.g. KeyboardInterrupt while waiting: stop the async op too
            raise

    def stop(self) -> None:
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(JOIN_TIMEOUT_S)


def _wait_s(timeout_ms: int | None, default_ms: int, extra_s: float = 0.0) -> float:
    ms = default_ms if timeout_ms is None else timeout_ms
    return SAFETY_FACTOR * ms / 1000 + SAFETY_EXTRA_S + extra_s


class BlockingScanner:
    """An iterator of (hash_key, sort_key, value); use `with` or `close()`."""

    def __init__(self, runner: _LoopThread, scanner: Scanner) -> None:
        self._runner = runner
        self._scanner = scanner
        self._wait_s = _wait_s(scanner.options.timeout_ms, scanner.options.timeout_ms)

    def next(self) -> Record | None:
        return self._runner.run(self._scanner.next(), self._wait_s)

    def __iter__(self) -> "BlockingScanner":
        return self

    def __next__(self) -> Record:
        record = self.next()
        if record is None:
            raise StopIteration
        return record

    def count(self) -> int:
        return self._runner.run(self._scanner.count(), None)

    def close(self) -> None:
        if not self._scanner.closed:
            self._runner.run(self._scanner.close(), self._wait_s)

    def __enter__(self) -> "BlockingScanner":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BlockingTable:
    """The methods of `Table`, blocking; see there for what each does."""

    def __init__(self, runner: _LoopThread, table: Table) -> None:
        self._runner = runner
        self.table = table

    @property
    def name(self) -> str:
        return self.table.name

    @property
    def app_id(self) -> int:
        return self.table.app_id

    @property
    def partition_count(self) -> int:
        return self.table.partition_count

    def _run(self, coro: Coroutine[Any, Any, T], timeout_ms: int | None) -> T:
        return self._runner.run(coro, _wait_s(timeout_ms, self.table.timeout_ms))

    def set(
        self,
        hash_key: Bytes,
        sort_key: Bytes,
        value: Bytes,
        ttl_seconds: int = 0,
        *,
        timeout_ms: int | None = None,
    ) -> None:
        t = self.table
        self._run(t.set(hash_key, sort_key, value, ttl_seconds, timeout_ms=timeout_ms), timeout_ms)

    def multi_set(
        self,
        hash_key: Bytes,
        kvs: dict[Any, Any] | Sequence[tuple[Bytes, Bytes]],
        ttl_seconds: int = 0,
        *,
        timeout_ms: int | None = None,
    ) -> None:
        t = self.table
        self._run(t.multi_set(hash_key, kvs, ttl_seconds, timeout_ms=timeout_ms), timeout_ms)

    def get(
        self, hash_key: Bytes, sort_key: Bytes, *, timeout_ms: int | None = None
    ) -> bytes | None:
        return self._run(self.table.get(hash_key, sort_key, timeout_ms=timeout_ms), timeout_ms)

    def multi_get(
        self, hash_key: Bytes, sort_keys: Sequence[Bytes] | None = None, **kw: Any
    ) -> tuple[list[tuple[bytes, bytes]], bool]:
        """Keyword options as `Table.multi_get` (max_kv_count, start_sortkey, ...)."""
        return self._run(self.table.multi_get(hash_key, sort_keys, **kw), kw.get("timeout_ms"))

    def batch_get(
        self, keys: Sequence[tuple[Bytes, Bytes]], *, timeout_ms: int | None = None
    ) -> list[bytes | None]:
        return self._run(self.table.batch_get(keys, timeout_ms=timeout_ms), timeout_ms)

    def delete(self, hash_key: Bytes, sort_key: Bytes, *, timeout_ms: int | None = None) -> None:
        self._run(self.table.delete(hash_key, sort_key, timeout_ms=timeout_ms), timeout_ms)

    def multi_del(
        self, hash_key: Bytes, sort_keys: Sequence[Bytes], *, timeout_ms: int | None = None
    ) -> int:
        t = self.table
        return self._run(t.multi_del(hash_key, sort_keys, timeout_ms=timeout_ms), timeout_ms)

    def incr(
        self,
        hash_key: Bytes,
        sort_key: Bytes,
        increment: int = 1,
        ttl_seconds: int = 0,
        *,
        timeout_ms: int | None = None,
    ) -> int:
        coro = self.table.incr(hash_key, sort_key, increment, ttl_seconds, timeout_ms=timeout_ms)
        return self._run(coro, timeout_ms)

    def check_and_set(
        self,
        hash_key: Bytes,
        check_sort_key: Bytes,
        check_type: int,
        check_operand: Bytes,
        set_sort_key: Bytes,
        set_value: Bytes,
        **kw: Any,
    ) -> CheckAndSetResult:
        """Keyword options as `Table.check_and_set` (ttl_seconds, return_check_value)."""
        coro = self.table.check_and_set(
            hash_key, check_sort_key, check_type, check_operand, set_sort_key, set_value, **kw
        )
        return self._run(coro, kw.get("timeout_ms"))

    def check_and_mutate(
        self,
        hash_key: Bytes,
        check_sort_key: Bytes,
        check_type: int,
        check_operand: Bytes,
        mutations: Sequence[Mutate],
        **kw: Any,
    ) -> CheckAndMutateResult:
        """Keyword options as `Table.check_and_mutate` (return_check_value)."""
        coro = self.table.check_and_mutate(
            hash_key, check_sort_key, check_type, check_operand, mutations, **kw
        )
        return self._run(coro, kw.get("timeout_ms"))

    def ttl(self, hash_key: Bytes, sort_key: Bytes, *, timeout_ms: int | None = None) -> int | None:
        return self._run(self.table.ttl(hash_key, sort_key, timeout_ms=timeout_ms), timeout_ms)

    def exist(self, hash_key: Bytes, sort_key: Bytes, *, timeout_ms: int | None = None) -> bool:
        return self._run(self.table.exist(hash_key, sort_key, timeout_ms=timeout_ms), timeout_ms)

    def sortkey_count(self, hash_key: Bytes, *, timeout_ms: int | None = None) -> int:
        return self._run(self.table.sortkey_count(hash_key, timeout_ms=timeout_ms), timeout_ms)

    # Building a scanner reads the route and sends nothing, so it runs in the caller's thread.
    def get_scanner(
        self,
        hash_key: Bytes,
        start_sort_key: Bytes = b"",
        stop_sort_key: Bytes = b"",
        options: ScanOptions | None = None,
    ) -> BlockingScanner:
        scanner = self.table.get_scanner(hash_key, start_sort_key, stop_sort_key, options)
        return BlockingScanner(self._runner, scanner)

    def get_unordered_scanners(
        self, max_count: int, options: ScanOptions | None = None
    ) -> list[BlockingScanner]:
        scanners = self.table.get_unordered_scanners(max_count, options)
        return [BlockingScanner(self._runner, s) for s in scanners]

    def count(self, max_scanners: int = 8, options: ScanOptions | None = None) -> int:
        return self._runner.run(self.table.count(max_scanners, options), None)

    def refresh_route(self, timeout_ms: int | None = None) -> None:
        self._run(self.table.refresh_route(timeout_ms), timeout_ms)


class BlockingClient:
    """`BlockingClient("127.0.0.1:34601")`: the methods of `Client`, blocking."""

    def __init__(
        self, meta_servers: str | list[str], *, timeout_ms: int = DEFAULT_TIMEOUT_MS
    ) -> None:
        addresses = parse_meta_servers(meta_servers)  # bad input fails before a thread starts
        self.timeout_ms = timeout_ms
        self._runner = _LoopThread()
        try:
            self.client: Client = self._runner.run(
                Client.connect(addresses, timeout_ms=timeout_ms),
                _wait_s(None, timeout_ms, extra_s=timeout_ms / 1000 * len(addresses)),
            )
        except BaseException:
            self._runner.stop()
            raise

    @classmethod
    def connect(
        cls, meta_servers: str | list[str], *, timeout_ms: int = DEFAULT_TIMEOUT_MS
    ) -> "BlockingClient":
        return cls(meta_servers, timeout_ms=timeout_ms)

    def _run(self, coro: Coroutine[Any, Any, T], timeout_ms: int | None, extra_s: float = 0) -> T:
        return self._runner.run(coro, _wait_s(timeout_ms, self.timeout_ms, extra_s))

    def close(self) -> None:
        try:
            if self._runner.thread.is_alive():
                self._run(self.client.close(), None)
        finally:
            self._runner.stop()

    def __enter__(self) -> "BlockingClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def meta_call(self, code: str, request: Any, *, timeout_ms: int | None = None) -> Any:
        return self._run(self.client.meta_call(code, request, timeout_ms=timeout_ms), timeout_ms)

    def open_table(self, name: str, *, timeout_ms: int | None = None) -> BlockingTable:
        table = self._run(self.client.open_table(name, timeout_ms=timeout_ms), timeout_ms)
        return BlockingTable(self._runner, table)

    def create_table(
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
        coro = self.client.create_table(
            name,
            partition_count,
            replica_count,
            envs,
            success_if_exist,
            wait_ready_s,
            timeout_ms=timeout_ms,
        )
        return self._run(coro, timeout_ms, extra_s=wait_ready_s)

    def drop_table(
        self,
        name: str,
        *,
        success_if_not_exist: bool = False,
        reserve_seconds: int | None = None,
        timeout_ms: int | None = None,
    ) -> None:
        coro = self.client.drop_table(
            name,
            success_if_not_exist=success_if_not_exist,
            reserve_seconds=reserve_seconds,
            timeout_ms=timeout_ms,
        )
        self._run(coro, timeout_ms)

    def list_tables(
        self, include_dropped: bool = False, *, timeout_ms: int | None = None
    ) -> list[TableInfo]:
        coro = self.client.list_tables(include_dropped, timeout_ms=timeout_ms)
        return self._run(coro, timeout_ms)

    def list_nodes(self, *, timeout_ms: int | None = None) -> list[NodeInfo]:
        return self._run(self.client.list_nodes(timeout_ms=timeout_ms), timeout_ms)

    def cluster_info(self, *, timeout_ms: int | None = None) -> dict[str, str]:
        return self._run(self.client.cluster_info(timeout_ms=timeout_ms), timeout_ms)
