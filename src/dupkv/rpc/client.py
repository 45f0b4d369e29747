"""RPC client connections and a small pool (asyncio shell around dupkv.rpc.framing).

`call()` never raises for an operating error: it returns `(error_code, result)`, where
result is the decoded result value with ERR_OK and None otherwise.
- ERR_TIMEOUT: no reply within `timeout_ms` (also sent as the header's client_timeout);
  a reply that comes later is dropped.
- ERR_SESSION_RESET: the connection was lost or closed with the call pending, or the call
  was made on a closed connection.
- ERR_NETWORK_FAILURE: the pool could not connect.
- ERR_INVALID_DATA: a reply that arrived but could not be decoded.

Many calls share one connection, matched by seqid. At most `max_pending` are in flight
per connection; a call beyond that waits for a slot (first come, first served), and that
wait counts against its own timeout (so callers slow down under load instead of failing,
and nothing waits forever). Requests go out in rDSN's dialect, as a Pegasus server
expects, with header CRC 0 unless `header_crc` is set.

Timeouts: a call's deadline goes into a per-connection heap and one loop timer is armed
for the earliest; it fails the calls whose deadline has passed. (An `asyncio.timeout()`
per call costs a TimerHandle pushed into the loop's heap, compared in Python, and a
cancellation on the way out: several microseconds per call at 64 in flight.) Through the
pool, a call's timeout also bounds opening the connection.
"""

import asyncio
import heapq
import itertools
import logging
import socket
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from typing import Any

from dupkv.base.errors import BadInput, DupkvError, ErrorCode
from dupkv.rpc import codes, framing
from dupkv.rpc.coalesce import CoalescingWriter
from dupkv.rpc.framing import FrameError, Response

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_MS = 5000
DEFAULT_CONNECT_TIMEOUT_MS = 3000
DEFAULT_MAX_PENDING = 1024
DEFAULT_MAX_CONNECTIONS = 256

Outcome = tuple[str, Any]
_TIMED_OUT: Outcome = (ErrorCode.TIMEOUT, None)
_RESET: Outcome = (ErrorCode.SESSION_RESET, None)
# A timer may fire a hair before its deadline by the loop's clock; count that as passed.
_TIMER_SLACK_S = 1e-6


def _method(name: str) -> codes.RpcMethod:
    method = codes.lookup(name)
    if method is None:
        raise BadInput(f"unknown task code {name!r}; known: see dupkv.rpc.codes.TASK_CODES")
    return method


class _ClientProtocol(asyncio.Protocol):
    def __init__(self, conn: "RpcClientConnection") -> None:
        self.conn = conn

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.conn._received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.conn._lost(exc)


class RpcClientConnection:
    """One TCP connection to a server; create it with `connect()`."""

    def __init__(
        self, address: str, *, max_pending: int, max_frame_bytes: int, header_crc: bool = False
    ) -> None:
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        self.address = address
        self.max_pending = max_pending
        self.header_crc = header_crc
        self._decoder = framing.ResponseDecoder(max_frame_bytes)
        self._transport: asyncio.Transport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop it was opened on
        self._writer: CoalescingWriter | None = None
        # seqid -> (method, future, deadline) of each call waiting for its reply
        self._pending: dict[int, tuple[codes.RpcMethod, asyncio.Future[Outcome], float]] = {}
        self._deadlines: list[tuple[float, int]] = []  # heap; entries of ended calls linger
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._slot_waiters: deque[asyncio.Future[bool]] = deque()
        self._reserved = 0  # slots handed to woken waiters that have not taken them yet
        self._seqids = itertools.count(1)
        self._closed = asyncio.Event()
        self.late_replies = 0  # replies for calls that had already timed out

    @property
    def is_closed(self) -> bool:
        return self._closed.is_set()

    @property
    def pending_count(self) -> int:
        return len(self._pending)

    def call(
        self,
        name: str,
        arg: Any,
        *,
        app_id: int = 0,
        partition_index: int = 0,
        partition_hash: int = 0,
        timeout_ms: int = DEFAULT_TIMEOUT_MS,
    ) -> Awaitable[Outcome]:
        """Send one RPC; await the result for its outcome (see the module docstring).

        A plain function returning an awaitable (see `_call`): an unknown task code or an
        argument that cannot be encoded raises here, at once.
        """
        method = _method(name)
        return self._call(
            method, method.encode_arg(arg), app_id, partition_index, partition_hash, timeout_ms
        )

    def call_encoded(
        self,
        name: str,
        args_struct: bytes,
        *,
        app_id: int = 0,
        partition_index: int = 0,
        partition_hash: int = 0,
        timeout_ms: int = DEFAULT_TIMEOUT_MS,
    ) -> Awaitable[Outcome]:
        """Like call(), with the whole args struct already encoded in rDSN's dialect (a
        caller that writes a hot request by hand, e.g. duplication's DUPLICATE)."""
        return self._call(
            _method(name), args_struct, app_id, partition_index, partition_hash, timeout_ms
        )

    def close(self) -> None:
        if self._transport is not None:
            if self._writer is not None:
                self._writer.flush_now()
            self._transport.close()
        else:
            self._lost(None)

    async def wait_closed(self) -> None:
        await self._closed.wait()

    # -- internals -----------------------------------------------------------------------

    def _call(
        self,
        method: codes.RpcMethod,
        args: bytes,
        app_id: int,
        partition_index: int,
        partition_hash: int,
        timeout_ms: int,
    ) -> Awaitable[Outcome]:
        """The call's outcome to await: a Future when a slot is free (the request is on its
        way), else a coroutine that waits for one first. A Future and not a coroutine of
        our own: every frame between the caller and the Future is entered on the way out
        and again on the way back, and the data path stacks several of them."""
        loop = self._loop
        if self.is_closed or self._transport is None or loop is None:
            return _ready(_RESET)
        request = (method, args, app_id, partition_index, partition_hash)
        if self._slot_waiters or len(self._pending) + self._reserved >= self.max_pending:
            return self._call_after_slot(loop, timeout_ms, request)
        return self._send(loop, timeout_ms, *request)

    async def _call_after_slot(
        self, loop: asyncio.AbstractEventLoop, timeout_ms: int, request: tuple[Any, ...]
    ) -> Outcome:
        start = loop.time()
        if not await self._wait_for_slot(loop, start + timeout_ms / 1000):
            return _TIMED_OUT
        if self.is_closed:
            return _RESET
        left = max(1, timeout_ms - int((loop.time() - start) * 1000))
        return await self._send(loop, left, *request)

    def _send(
        self,
        loop: asyncio.AbstractEventLoop,
        timeout_ms: int,
        method: codes.RpcMethod,
        args: bytes,
        app_id: int,
        partition_index: int,
        partition_hash: int,
    ) -> "asyncio.Future[Outcome]":
        """Send the request now; the Future ends with its outcome. The call's entry leaves
        `_pending` when the reply comes, the deadline passes or the connection is lost
        (a cancelled caller's entry too: its slot is freed by the same events)."""
        seqid = self._next_seqid()
        frame = framing.encode_request(
            method.code,
            seqid,
            args,
            app_id=app_id,
            partition_index=partition_index,
            client_timeout_ms=timeout_ms,
            partition_hash=partition_hash,
            with_header_crc=self.header_crc,
        )
        assert self._writer is not None
        future: asyncio.Future[Outcome] = loop.create_future()
        if method.oneway:
            self._writer.write(frame)
            future.set_result((ErrorCode.OK, None))
            return future
        deadline = loop.time() + timeout_ms / 1000
        self._pending[seqid] = (method, future, deadline)
        self._add_deadline(loop, deadline, seqid)
        self._writer.write(frame)
        return future

    # -- deadlines -----------------------------------------------------------------------

    def _add_deadline(self, loop: asyncio.AbstractEventLoop, deadline: float, seqid: int) -> None:
        heap = self._deadlines
        if len(heap) > 2 * len(self._pending) + 64:  # mostly ended calls: rebuild
            heap[:] = [(d, s) for s, (_, _, d) in self._pending.items() if s != seqid]
            heapq.heapify(heap)
        heapq.heappush(heap, (deadline, seqid))
        if self._timer is None or deadline < self._timer_at:
            self._arm(loop, deadline)

    def _arm(self, loop: asyncio.AbstractEventLoop, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_at(at, self._expire)
        self._timer_at = at

    def _expire(self) -> None:
        """Fail the calls whose deadline has passed; re-arm for the next one."""
        self._timer = None
        loop = asyncio.get_running_loop()
        now = loop.time() + _TIMER_SLACK_S
        heap = self._deadlines
        pending = self._pending
        while heap and heap[0][0] <= now:
            _, seqid = heapq.heappop(heap)
            entry = pending.get(seqid)
            if entry is not None and entry[2] <= now:  # not a later call reusing the seqid
                del pending[seqid]
                if not entry[1].done():
                    entry[1].set_result(_TIMED_OUT)
        if heap:
            self._arm(loop, heap[0][0])
        if self._slot_waiters:
            self._wake_slot_waiters()

    # -- slots ---------------------------------------------------------------------------

    async def _wait_for_slot(self, loop: asyncio.AbstractEventLoop, deadline: float) -> bool:
        """Wait in line for one of the `max_pending` slots; False if the deadline came
        first. A woken waiter holds a reservation, taken over here by its call (or given
        back if it is cancelled before it runs)."""
        waiter: asyncio.Future[bool] = loop.create_future()
        self._slot_waiters.append(waiter)
        timer = loop.call_at(deadline, _resolve, waiter, False)
        try:
            got = await waiter
        except BaseException:
            timer.cancel()
            if waiter.done() and not waiter.cancelled() and waiter.result():
                self._reserved -= 1
                self._wake_slot_waiters()
            else:
                waiter.cancel()  # stays in the line until a wake-up skips it
            raise
        timer.cancel()
        if got:
            self._reserved -= 1
        return got

    def _wake_slot_waiters(self) -> None:
        waiters = self._slot_waiters
        while waiters and (
            self.is_closed or len(self._pending) + self._reserved < self.max_pending
        ):
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(True)
                self._reserved += 1

    def _next_seqid(self) -> int:
        while True:
            seqid = next(self._seqids)
            if seqid > 0x7FFFFFFF:
                self._seqids = itertools.count(1)
                continue
            if seqid not in self._pending:
                return seqid

    def _received(self, data: bytes) -> None:
        for event in self._decoder.feed(data):
            if isinstance(event, FrameError):
                log.warning("closing connection to %s: %s", self.address, event.reason)
                self.close()
                return
            self._complete(event)

    def _complete(self, resp: Response) -> None:
        entry = self._pending.pop(resp.seqid, None)
        if entry is None:
            self.late_replies += 1
            return
        if self._slot_waiters:
            self._wake_slot_waiters()
        method, future, _ = entry
        if future.done():
            return
        if resp.error_code != ErrorCode.OK:
            future.set_result((resp.error_code, None))
        elif resp.msg_type != framing.MSG_REPLY or resp.name != method.reply_name:
            log.warning(
                "%s answered %s with %s/%d", self.address, method.code, resp.name, resp.msg_type
            )
            future.set_result((ErrorCode.INVALID_DATA, None))
        else:
            try:
                future.set_result((ErrorCode.OK, method.decode_result(resp.result)))
            except ValueError as e:
                log.warning("undecodable %s from %s: %s", resp.name, self.address, e)
                future.set_result((ErrorCode.INVALID_DATA, None))

    def _lost(self, exc: Exception | None) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._deadlines = []
        pending, self._pending = self._pending, {}
        for _, future, _ in pending.values():
            if not future.done():
                future.set_result(_RESET)
        self._wake_slot_waiters()  # they find the connection closed
        if exc is not None:
            log.info("connection to %s lost: %s", self.address, exc)


# One of RpcClientConnection's call methods, unbound: (connection, name, payload, **kw).
_Send = Callable[..., Awaitable[Outcome]]


def _ready(outcome: Outcome) -> "asyncio.Future[Outcome]":
    future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
    future.set_result(outcome)
    return future


def _resolve(future: "asyncio.Future[bool]", value: bool) -> None:
    if not future.done():
        future.set_result(value)


def parse_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise BadInput(f"address {address!r} is not of the form host:port")
    return host, int(port)


async def connect(
    host: str,
    port: int,
    *,
    connect_timeout_ms: int = DEFAULT_CONNECT_TIMEOUT_MS,
    max_pending: int = DEFAULT_MAX_PENDING,
    max_frame_bytes: int = framing.DEFAULT_MAX_FRAME_BYTES,
    header_crc: bool = False,
) -> RpcClientConnection:
    """Open a connection; raises DupkvError(ERR_NETWORK_FAILURE) if that fails.

    `header_crc` makes requests carry a CRC-32C of their header (0 otherwise, as Pegasus's
    clients send); it costs about 15 us of pure Python per request on each side.
    """
    conn = RpcClientConnection(
        f"{host}:{port}",
        max_pending=max_pending,
        max_frame_bytes=max_frame_bytes,
        header_crc=header_crc,
    )
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(connect_timeout_ms / 1000):
            transport, _ = await loop.create_connection(lambda: _ClientProtocol(conn), host, port)
    except (OSError, TimeoutError) as e:
        raise DupkvError(ErrorCode.NETWORK_FAILURE, f"connect to {host}:{port}: {e}") from e
    assert isinstance(transport, asyncio.Transport)
    conn._transport = transport
    conn._loop = loop
    conn._writer = CoalescingWriter(transport)
    return conn


class ConnectionPool:
    """Connections keyed by "host:port", opened on first use and reopened once closed.

    At most `max_connections` are kept; opening one more closes the least recently used
    connection that has no call pending, and fails with ERR_BUSY if every one is busy.
    """

    def __init__(
        self,
        *,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        connect_timeout_ms: int = DEFAULT_CONNECT_TIMEOUT_MS,
        max_pending_per_conn: int = DEFAULT_MAX_PENDING,
        max_frame_bytes: int = framing.DEFAULT_MAX_FRAME_BYTES,
    ) -> None:
        self.max_connections = max_connections
        self._connect_kw: dict[str, Any] = dict(
            connect_timeout_ms=connect_timeout_ms,
            max_pending=max_pending_per_conn,
            max_frame_bytes=max_frame_bytes,
        )
        self._conns: OrderedDict[str, RpcClientConnection] = OrderedDict()
        self._locks: dict[str, asyncio.Lock] = {}

    async def get(self, address: str) -> RpcClientConnection:
        """The open connection to `address`; raises DupkvError on failure."""
        conn = self._conns.get(address)
        if conn is not None and not conn.is_closed:
            self._conns.move_to_end(address)
            return conn
        lock = self._locks.setdefault(address, asyncio.Lock())
        async with lock:
            conn = self._conns.get(address)
            if conn is not None and not conn.is_closed:
                return conn
            self._conns.pop(address, None)
            self._make_room()
            host, port = parse_address(address)
            conn = await connect(host, port, **self._connect_kw)
            self._conns[address] = conn
            return conn

    def _make_room(self) -> None:
        for address, conn in list(self._conns.items()):
            if conn.is_closed:
                del self._conns[address]
        if len(self._conns) < self.max_connections:
            return
        for address, conn in self._conns.items():  # least recently used first
            if conn.pending_count == 0:
                del self._conns[address]
                self._locks.pop(address, None)
                conn.close()
                return
        raise DupkvError(ErrorCode.BUSY, f"all {self.max_connections} connections are busy")

    def call(
        self, address: str, name: str, arg: Any, *, timeout_ms: int = DEFAULT_TIMEOUT_MS, **kw: Any
    ) -> Awaitable[Outcome]:
        """`RpcClientConnection.call` on the connection to `address`; `timeout_ms` also
        bounds opening it. ERR_NETWORK_FAILURE (or the pool's error) if that fails."""
        return self._on_connection(address, RpcClientConnection.call, name, arg, timeout_ms, kw)

    def call_encoded(
        self,
        address: str,
        name: str,
        args_struct: bytes,
        *,
        timeout_ms: int = DEFAULT_TIMEOUT_MS,
        **kw: Any,
    ) -> Awaitable[Outcome]:
        """`RpcClientConnection.call_encoded` on the connection to `address`, as `call`."""
        send = RpcClientConnection.call_encoded
        return self._on_connection(address, send, name, args_struct, timeout_ms, kw)

    def _on_connection(
        self,
        address: str,
        send: _Send,
        name: str,
        payload: Any,
        timeout_ms: int,
        kw: dict[str, Any],
    ) -> Awaitable[Outcome]:
        """`send(connection, name, payload, ...)` on the connection to `address`. An open
        connection's call is returned as it is (no coroutine of our own around it)."""
        conn = self._conns.get(address)
        if conn is not None and not conn.is_closed:
            self._conns.move_to_end(address)
            return send(conn, name, payload, timeout_ms=timeout_ms, **kw)
        return self._connect_and_send(address, send, name, payload, timeout_ms, kw)

    async def _connect_and_send(
        self,
        address: str,
        send: _Send,
        name: str,
        payload: Any,
        timeout_ms: int,
        kw: dict[str, Any],
    ) -> Outcome:
        """Open the connection within `timeout_ms`, then send with the time left."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        try:
            async with asyncio.timeout(timeout_ms / 1000):
                conn = await self.get(address)
        except TimeoutError:
            return ErrorCode.TIMEOUT, None
        except DupkvError as e:
            return e.code, None
        left = max(1, timeout_ms - int((loop.time() - start) * 1000))
        return await send(conn, name, payload, timeout_ms=left, **kw)

    async def close(self) -> None:
        conns = list(self._conns.values())
        self._conns.clear()
        self._locks.clear()
        for conn in conns:
            conn.close()
        for conn in conns:
            await conn.wait_closed()
