"""The ZooKeeper metadata store, `meta_state_service_zookeeper` (asyncio shell over kazoo).

kazoo runs its own threads. Every call here uses one of its `*_async` methods and bridges the
result to an asyncio future (`_bridge`), so the event loop never blocks on ZooKeeper. Every
public call runs under one deadline, `[zookeeper] timeout_ms` (also the session timeout):
it waits for a connection, issues its request(s), and raises StoreUnavailable when the
deadline passes. kazoo keeps reconnecting in the background with a backoff capped at
`RECONNECT_MAX_DELAY_S`, so the store works again as soon as ZooKeeper is back.

Reads (get, exists, children, and the listing before a recursive delete) are idempotent and
are retried after a lost connection until the deadline. Writes are sent once: after a lost
connection their outcome is unknown, and they raise StoreUnavailable.

A recursive delete lists the subtree, then deletes it leaves-first in transactions of at
most MAX_COMMIT_OPS operations: a subtree of that size disappears atomically, a larger one
shrinks from the leaves, so an interrupted delete never leaves an orphan and can be redone.
Calls take effect in the order they were made (`_turn`): ZooKeeper keeps one session's
requests in order, so only calls that need several round trips (create with missing parents,
recursive delete, the first calls while the root is ensured) make later calls wait.
kazoo exceptions are translated to the store's errors here and nowhere else.
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from functools import partial
from typing import Any, TypeVar

from kazoo.client import KazooClient
from kazoo.exceptions import (
    ConnectionClosedError,
    ConnectionLoss,
    KazooException,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    OperationTimeoutError,
    RolledBackError,
    RuntimeInconsistency,
    SessionExpiredError,
    ZookeeperStoppedError,
)
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.interfaces import IAsyncResult
from kazoo.protocol.states import KazooState

from dupkv.base.errors import BadInput, ErrorCode
from dupkv.meta.store.api import (
    ERR_ZOOKEEPER_OPERATION,
    Create,
    Delete,
    NodeExists,
    NoNode,
    NotEmpty,
    Op,
    Set,
    StoreError,
    StoreUnavailable,
    check_data,
    check_deletable,
    check_in_root,
    check_ops,
    check_root,
    chunked,
    join,
    leaf_first,
)

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_MS = 30_000  # Pegasus's [zookeeper] timeout_ms
RECONNECT_MAX_DELAY_S = 1.0
# Pause after a lost connection before a read is retried, so a retry does not spin while
# kazoo has not yet reported the connection as suspended.
RETRY_PAUSE_S = 0.05
# How many times a recursive delete lists the subtree again when a concurrent writer changed it.
DELETE_ATTEMPTS = 5
# How many children listings one recursive delete keeps in flight.
LIST_WINDOW = 64

T = TypeVar("T")

_UNAVAILABLE = (
    ConnectionLoss,
    SessionExpiredError,  # includes ConnectionClosedError
    OperationTimeoutError,
    ZookeeperStoppedError,
    KazooTimeoutError,
)


class ZooKeeperStore:
    """A MetaStore in ZooKeeper, shared by every meta server of the cluster."""

    def __init__(self, hosts: str, root: str, *, timeout_ms: int = DEFAULT_TIMEOUT_MS) -> None:
        self._root = check_root(root)
        if not isinstance(hosts, str) or not hosts.strip():
            raise BadInput("[zookeeper] hosts_list is empty; give host:port[,host:port...]")
        if not isinstance(timeout_ms, int) or timeout_ms <= 0:
            raise BadInput(f"[zookeeper] timeout_ms = {timeout_ms!r}; a positive integer")
        self._hosts = hosts
        self._timeout_ms = timeout_ms
        try:
            self._client = KazooClient(
                hosts=hosts,
                timeout=timeout_ms / 1000,
                connection_retry={
                    "max_tries": -1,
                    "delay": 0.05,
                    "backoff": 2,
                    "max_jitter": 0.05,
                    "max_delay": RECONNECT_MAX_DELAY_S,
                },
            )
        except ValueError as e:
            raise BadInput(f"[zookeeper] hosts_list = {hosts!r}: {e}") from e
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connected = asyncio.Event()
        self._started = False
        self._root_ready = False
        self._gate: asyncio.Future[None] | None = None  # the latest exclusive call's end
        self._closed = False

    @property
    def root(self) -> str:
        return self._root

    # -- the MetaStore interface --

    async def create(self, path: str, data: bytes = b"", *, make_parents: bool = True) -> None:
        path = check_in_root(self._root, path)
        data = check_data(path, data)
        await self._guard(
            "create",
            path,
            lambda: self._once(
                lambda: self._client.create_async(path, data, makepath=make_parents)
            ),
            exclusive=make_parents,  # a missing parent costs more round trips
        )

    async def set(self, path: str, data: bytes) -> None:
        path = check_in_root(self._root, path)
        data = check_data(path, data)
        await self._guard(
            "set", path, lambda: self._once(lambda: self._client.set_async(path, data))
        )

    async def get(self, path: str) -> bytes | None:
        path = check_in_root(self._root, path)

        async def read() -> bytes:
            data, _stat = await self._bridge(self._client.get_async(path))
            return data or b""

        try:
            return await self._guard("get", path, lambda: self._retrying(read))
        except NoNode:
            return None

    async def exists(self, path: str) -> bool:
        path = check_in_root(self._root, path)

        async def read() -> bool:
            return await self._bridge(self._client.exists_async(path)) is not None

        return await self._guard("exists", path, lambda: self._retrying(read))

    async def children(self, path: str) -> list[str]:
        path = check_in_root(self._root, path)

        async def read() -> list[str]:
            return sorted(await self._bridge(self._client.get_children_async(path)))

        return await self._guard("children", path, lambda: self._retrying(read))

    async def delete(self, path: str, *, recursive: bool = True) -> None:
        path = check_deletable(self._root, path)
        if recursive:
            await self._guard("delete", path, lambda: self._delete_tree(path), exclusive=True)
            return
        with contextlib.suppress(NoNode):  # absent is what a delete wants
            await self._guard(
                "delete", path, lambda: self._once(lambda: self._client.delete_async(path))
            )

    async def commit(self, ops: Sequence[Op]) -> None:
        checked = check_ops(self._root, ops)
        if checked:
            await self._guard("commit", self._root, lambda: self._commit_once(checked))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._connected.clear()
        if not self._started:
            return
        self._client.remove_listener(self._on_state)
        try:
            async with asyncio.timeout(self._timeout_ms / 1000):
                await asyncio.to_thread(self._stop_client)
        except TimeoutError:
            raise StoreUnavailable(self._root, "the kazoo client did not stop in time") from None

    # -- one deadline per call; connecting; bridging kazoo's results --

    async def _guard(
        self,
        action: str,
        path: str,
        body: Callable[[], Awaitable[T]],
        *,
        exclusive: bool = False,
    ) -> T:
        """Run `body` in its turn, once connected, within the call's deadline; translate
        kazoo errors. `exclusive` marks a call that needs several round trips."""
        if self._closed:
            raise StoreUnavailable(path, "the metadata store is closed")
        # Until the root is known to exist, every call may have to create it first.
        exclusive = exclusive or not self._root_ready
        timeout = asyncio.timeout(self._timeout_ms / 1000)
        try:
            async with timeout, self._turn(exclusive):
                await self._ready()
                return await body()
        except TimeoutError:
            if not timeout.expired():
                raise
            raise StoreUnavailable(
                path,
                f"ZooKeeper {self._hosts} did not complete {action} within "
                f"{self._timeout_ms} ms; a write's outcome is unknown",
            ) from None
        except KazooException as e:
            raise _translate(e, path, self._hosts) from e

    @contextlib.asynccontextmanager
    async def _turn(self, exclusive: bool) -> AsyncIterator[None]:
        """Keep calls in the order they were made.

        ZooKeeper applies one session's requests in the order they are sent, so a call that
        sends one request only has to wait for the multi-round-trip ("exclusive") calls made
        before it. An exclusive call also makes every later call wait until it has finished.
        """
        prior = self._gate
        mine: asyncio.Future[None] | None = None
        if exclusive:
            mine = asyncio.get_running_loop().create_future()
            self._gate = mine
        try:
            if prior is not None and not prior.done():
                await asyncio.shield(prior)
            yield
        finally:
            if mine is not None:
                if prior is None or prior.done():
                    mine.set_result(None)
                    if self._gate is mine:
                        self._gate = None
                else:  # we gave up waiting; later calls still wait for the prior one
                    prior.add_done_callback(lambda _: mine.set_result(None))

    async def _ready(self) -> None:
        if not self._started:
            self._start()
        await self._connected.wait()
        if not self._root_ready:
            await self._retrying(lambda: self._bridge(self._client.ensure_path_async(self._root)))
            self._root_ready = True

    def _start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._started = True
        self._client.add_listener(self._on_state)
        # start_async only spawns kazoo's threads; the connection is reported by _on_state.
        self._client.start_async()
        if self._client.connected:
            self._connected.set()

    def _on_state(self, state: str) -> None:
        """kazoo's connection listener; runs on a kazoo thread."""
        up = state == KazooState.CONNECTED
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # a closed loop has nobody waiting
            loop.call_soon_threadsafe(self._set_connected, up)

    def _set_connected(self, up: bool) -> None:
        if up and not self._closed:
            self._connected.set()
        else:
            self._connected.clear()

    def _stop_client(self) -> None:
        self._client.stop()
        self._client.close()

    def _bridge(self, result: IAsyncResult) -> "asyncio.Future[Any]":
        """An asyncio future settled from a kazoo async result (whose callbacks run on kazoo's
        threads)."""
        loop = self._loop
        assert loop is not None, "kazoo call before the store was started"
        future: asyncio.Future[Any] = loop.create_future()

        def settle(ok: bool, payload: Any) -> None:
            if future.done():  # the caller gave up (deadline or cancellation)
                return
            if ok:
                future.set_result(payload)
            else:
                future.set_exception(payload)

        def on_done(res: IAsyncResult) -> None:
            ok = res.successful()
            payload = res.value if ok else res.exception
            with contextlib.suppress(RuntimeError):  # a closed loop has nobody waiting
                loop.call_soon_threadsafe(settle, ok, payload)

        result.rawlink(on_done)
        return future

    async def _once(
        self,
        start: Callable[[], IAsyncResult],
        unpack: Callable[[Any], object] | None = None,
    ) -> None:
        """Send a write once the connection is up; never resend it."""
        await self._connected.wait()
        result = await self._bridge(start())
        if unpack is not None:
            unpack(result)

    async def _retrying(self, read: Callable[[], Awaitable[T]]) -> T:
        """Run an idempotent read, again after each lost connection (the deadline bounds it)."""
        while True:
            await self._connected.wait()
            try:
                return await read()
            except _UNAVAILABLE as e:
                if isinstance(e, ConnectionClosedError) or self._closed:
                    raise
                log.debug("ZooKeeper read retried after %r", e)
                await asyncio.sleep(RETRY_PAUSE_S)

    async def _commit_once(self, ops: Sequence[Op]) -> None:
        await self._once(partial(self._transaction, ops), unpack=partial(_check_results, ops))

    def _transaction(self, ops: Sequence[Op]) -> IAsyncResult:
        tx = self._client.transaction()
        for op in ops:
            if isinstance(op, Create):
                tx.create(op.path, op.data)
            elif isinstance(op, Set):
                tx.set_data(op.path, op.data)
            else:
                tx.delete(op.path)
        return tx.commit_async()

    # -- recursive delete --

    async def _delete_tree(self, top: str) -> None:
        for _ in range(DELETE_ATTEMPTS):
            tree = await self._retrying(lambda: self._list_tree(top))
            if tree is None:
                return
            ops: list[Op] = [Delete(node) for node in leaf_first(tree, top)]
            try:
                for chunk in chunked(ops):
                    await self._commit_once(chunk)
                return
            except (NoNode, NotEmpty) as e:
                log.info("subtree %s changed while being deleted (%s); listing it again", top, e)
        raise StoreError(
            top,
            f"the subtree kept changing during {DELETE_ATTEMPTS} delete attempts",
            code=ErrorCode.TRY_AGAIN,
        )

    async def _list_tree(self, top: str) -> dict[str, list[str]] | None:
        """Every node of the subtree at `top` mapped to its child names; None if absent."""
        tree: dict[str, list[str]] = {}
        level = [top]
        while level:
            following: list[str] = []
            for start in range(0, len(level), LIST_WINDOW):
                window = level[start : start + LIST_WINDOW]
                pending = [self._bridge(self._client.get_children_async(n)) for n in window]
                for node, future in zip(window, pending, strict=True):
                    try:
                        names = await future
                    except NoNodeError:
                        if node == top:
                            _abandon(pending)
                            return None
                        names = []  # deleted meanwhile; the delete will notice if it matters
                    except BaseException:
                        _abandon(pending)
                        raise
                    tree[node] = names
                    following.extend(join(node, name) for name in names)
            level = following
        return tree


def _abandon(futures: list["asyncio.Future[Any]"]) -> None:
    """Give up on a window of replies without waiting (ZooKeeper may be gone): cancel what is
    pending and mark what failed as seen, so nothing logs an unretrieved exception."""
    for future in futures:
        if not future.done():
            future.cancel()
        elif not future.cancelled():
            future.exception()


def _check_results(ops: Sequence[Op], results: list[Any]) -> None:
    """Raise the error of the operation that made a kazoo transaction fail, if any."""
    for op, result in zip(ops, results, strict=True):
        if isinstance(result, RolledBackError | RuntimeInconsistency):
            continue
        if isinstance(result, Exception):
            raise _translate(result, op.path, "")


def _translate(e: BaseException, path: str, hosts: str) -> StoreError:
    """The store's error for a kazoo exception."""
    if isinstance(e, NoNodeError):
        return NoNode(path)
    if isinstance(e, NodeExistsError):
        return NodeExists(path)
    if isinstance(e, NotEmptyError):
        return NotEmpty(path)
    if isinstance(e, _UNAVAILABLE):
        return StoreUnavailable(
            path, f"ZooKeeper {hosts}: {type(e).__name__}; a write's outcome is unknown"
        )
    return StoreError(path, f"ZooKeeper: {type(e).__name__} {e}", code=ERR_ZOOKEEPER_OPERATION)
