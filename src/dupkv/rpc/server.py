"""The RPC server: THFT and HTTP on one TCP port (asyncio shell around the pure codecs).

Each connection is an asyncio.Protocol that sniffs its first bytes: "THFT" starts the RPC
codec (dupkv.rpc.framing), an HTTP method the HTTP codec (dupkv.rpc.httpcodec); anything
else is closed.

RPC: a request whose task code has a handler in the dispatcher runs as its own task, so
requests on one connection run concurrently and replies may leave out of order (clients
match them by seqid). An `inline` handler is a plain function, called as its request is
decoded: it returns the reply, or a Future of the result (a write waiting for its group
commit), answered with ERR_OK when it is done or like a raising handler when it fails.
That saves a Task per request — creating, scheduling and finishing one costs about as much
as decoding, serving and encoding a get — so reads and writes of the data path are inline;
a handler that awaits anything else stays a coroutine. What goes back:
- no handler for the code (unknown code, or one this server does not serve):
  ERR_HANDLER_NOT_FOUND, and the connection stays up;
- args that are malformed or cannot be decoded: ERR_INVALID_DATA;
- the handler's RpcReply; a DupkvError it raises becomes its code, a BadInput becomes
  ERR_INVALID_PARAMETERS;
- any other exception is a bug in the handler: it is logged with its traceback, counted
  in `handler_errors`, and answered with ERR_UNKNOWN. We answer rather than crash or stay
  silent so one bad request neither takes down every partition on the server nor leaves
  the client waiting for its timeout; the log and the counter keep the bug loud.
- oneway RPCs (clear_scanner, or a ONEWAY message) never get a reply.
A broken stream (bad header or header CRC, oversized frame, unreadable message begin) is
logged and the connection closed without an answer.

Back-pressure: a connection stops reading once `max_inflight_per_conn` of its requests are
running (a task, or an inline handler's pending Future), or while its transport's write
buffer is over the high-water mark, and reads again when both are below. Every handler
task and pending Future is owned by the server: `stop()` closes the listener and every
connection, waits up to `stop_timeout_s` for running handlers, then cancels the rest and
waits for them.

HTTP: one request at a time per connection (reading pauses meanwhile), keep-alive honoured;
a malformed request gets its 4xx and the connection is closed; a failing http_handler is
logged and answered with 500.
"""

import asyncio
import functools
import inspect
import logging
import socket
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, NamedTuple

from dupkv.base.errors import BadInput, DupkvError, ErrorCode
from dupkv.rpc import codes, framing, httpcodec
from dupkv.rpc.coalesce import CoalescingWriter
from dupkv.rpc.framing import FrameError, Request, RequestHeader
from dupkv.rpc.httpcodec import HttpError, HttpRequest, HttpResponse

log = logging.getLogger(__name__)

DEFAULT_MAX_INFLIGHT_PER_CONN = 64
DEFAULT_MAX_CONNECTIONS = 4096
DEFAULT_STOP_TIMEOUT_S = 5.0


class RpcRequest(NamedTuple):
    """What a handler gets: the decoded argument, its raw bytes, and where it came from."""

    name: str  # task code, e.g. "RPC_RRDB_RRDB_PUT"
    seqid: int
    header: RequestHeader  # app_id, partition_index, partition_hash, client_timeout_ms, ...
    arg: Any  # the RPC's single argument, decoded by thriftpy2
    args_raw: bytes  # its standard Thrift encoding, sliced from the request
    peer: str  # the client's "ip:port"
    local: str  # this server's "host:port"


class RpcReply(NamedTuple):
    error_code: str  # an ErrorCode name; the result is sent only with ERR_OK
    result: Any = None


Handler = Callable[[RpcRequest], Awaitable[RpcReply]]
# Called as the request is decoded; must not block. It returns the reply, or a Future of the
# result to answer with ERR_OK when it is done.
InlineHandler = Callable[[RpcRequest], "RpcReply | asyncio.Future[Any]"]
HttpHandler = Callable[[str, str, dict[str, str], bytes], Awaitable[HttpResponse]]


def _host_port(addr: Any) -> str:
    if isinstance(addr, tuple) and len(addr) >= 2:
        return f"{addr[0]}:{addr[1]}"
    return str(addr)


class RpcServer:
    def __init__(
        self,
        host: str,
        port: int,
        dispatcher: Mapping[str, Handler],
        http_handler: HttpHandler | None = None,
        *,
        inline: Mapping[str, InlineHandler] | None = None,
        max_frame_bytes: int = framing.DEFAULT_MAX_FRAME_BYTES,
        max_inflight_per_conn: int = DEFAULT_MAX_INFLIGHT_PER_CONN,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_http_body_bytes: int = httpcodec.DEFAULT_MAX_BODY_BYTES,
        stop_timeout_s: float = DEFAULT_STOP_TIMEOUT_S,
        fast_args: Mapping[str, framing.FastArgs] | None = None,
    ) -> None:
        """`fast_args`: hand-written decoders of some task codes' args (see
        `framing.RequestDecoder`)."""
        inline = dict(inline or {})
        unknown = sorted((set(dispatcher) | set(inline)) - set(codes.METHODS))
        if unknown:
            raise ValueError(f"no task code registered in rpc.codes for {unknown}")
        both = sorted(set(dispatcher) & set(inline))
        if both:
            raise ValueError(f"task codes with both a handler and an inline handler: {both}")
        coroutines = sorted(c for c, h in inline.items() if inspect.iscoroutinefunction(h))
        if coroutines:
            raise ValueError(f"inline handlers must be plain functions: {coroutines}")
        if max_inflight_per_conn < 1 or max_connections < 1:
            raise ValueError("max_inflight_per_conn and max_connections must be at least 1")
        self.host = host
        self.port = port
        self._dispatcher = dict(dispatcher)
        self._inline = inline
        self._http_handler = http_handler
        self.max_frame_bytes = max_frame_bytes
        self.max_inflight_per_conn = max_inflight_per_conn
        self.max_connections = max_connections
        self.max_http_body_bytes = max_http_body_bytes
        self.stop_timeout_s = stop_timeout_s
        self.fast_args = dict(fast_args or {})
        self._server: asyncio.base_events.Server | None = None
        self._conns: set[_Connection] = set()
        self._tasks: set[asyncio.Future[Any]] = set()  # handler tasks and inline Futures
        self._stopping = False
        self.handler_errors = 0  # handler bugs answered with ERR_UNKNOWN

    @property
    def address(self) -> str:
        """This server's "host:port" (the bound port once started)."""
        return f"{self.host}:{self.port}"

    @property
    def connection_count(self) -> int:
        return len(self._conns)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self), self.host, self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("rpc server listening on %s", self.address)

    async def stop(self) -> None:
        self._stopping = True
        if self._server is not None:
            self._server.close()
        for conn in list(self._conns):
            conn.close()
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=self.stop_timeout_s)
            for task in pending:
                task.cancel()
            if pending:
                log.warning("rpc server %s cancelled %d handlers", self.address, len(pending))
                await asyncio.wait(pending)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    # -- used by connections -------------------------------------------------------------

    def _spawn(self, coro: Awaitable[None]) -> None:
        self._own(asyncio.ensure_future(coro))

    def _own(self, future: "asyncio.Future[Any]") -> None:
        self._tasks.add(future)
        future.add_done_callback(self._tasks.discard)


class _Connection(asyncio.Protocol):
    def __init__(self, server: RpcServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.writer: CoalescingWriter | None = None
        self.peer = "?"
        self.local = server.address
        self._limit = server.max_inflight_per_conn
        self.mode: str | None = None
        self.first = b""
        self.rpc: framing.RequestDecoder | None = None
        self.http: httpcodec.HttpRequestParser | None = None
        self.http_busy = False
        self.inflight = 0
        self.read_paused = False
        self.write_paused = False
        self.closed = False

    # -- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.writer = CoalescingWriter(transport)
        self.peer = _host_port(transport.get_extra_info("peername"))
        if self.server._stopping or self.server.connection_count >= self.server.max_connections:
            log.warning("refusing connection from %s: server full or stopping", self.peer)
            self.closed = True
            transport.abort()
            return
        self.server._conns.add(self)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server._conns.discard(self)

    def pause_writing(self) -> None:
        self.write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        self._update_reading()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        if self.mode is None:
            self.first += data
            kind = framing.sniff(self.first)
            if kind == framing.SNIFF_MORE:
                return
            data, self.first = self.first, b""
            if kind == framing.SNIFF_THFT:
                self.mode = kind
                self.rpc = framing.RequestDecoder(
                    self.server.max_frame_bytes, fast_args=self.server.fast_args
                )
            elif kind == framing.SNIFF_HTTP:
                self.mode = kind
                self.http = httpcodec.HttpRequestParser(
                    max_body_bytes=self.server.max_http_body_bytes
                )
            else:
                log.info("closing %s: neither THFT nor HTTP (%r)", self.peer, data[:8])
                self.close()
                return
        if self.rpc is not None:
            self.rpc.receive_data(data)
            self._pump_rpc()
        elif self.http is not None:
            self.http.receive_data(data)
            self._pump_http()

    # -- shared --------------------------------------------------------------------------

    def close(self) -> None:
        if not self.closed and self.transport is not None:
            self.closed = True
            if self.writer is not None:
                self.writer.flush_now()
            self.transport.close()

    def _update_reading(self) -> None:
        if self.closed or self.transport is None:
            return
        busy = self.write_paused or self.http_busy
        busy = busy or self.inflight >= self.server.max_inflight_per_conn
        if busy and not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()
        elif not busy and self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()

    def _write(self, data: bytes) -> None:
        if not self.closed and self.writer is not None:
            self.writer.write(data)

    # -- RPC -----------------------------------------------------------------------------

    def _pump_rpc(self) -> None:
        rpc = self.rpc
        assert rpc is not None
        limit = self._limit
        while not self.closed and self.inflight < limit:
            event = rpc.next_event()
            if event is None:
                break
            if isinstance(event, FrameError):
                log.warning("closing RPC connection from %s: %s", self.peer, event.reason)
                self.close()
                return
            self._dispatch(event)
        self._update_reading()

    def _answer(self, req: Request, error_code: str, result: bytes | None = None) -> None:
        oneway = req.msg_type == framing.MSG_ONEWAY or (req.method and req.method.oneway)
        if not oneway:
            self._write(framing.encode_response(req.name, req.seqid, error_code, result))

    def _dispatch(self, req: Request) -> None:
        server = self.server
        method = req.method
        inline = server._inline.get(req.name)
        handler = server._dispatcher.get(req.name) if inline is None else None
        if (inline is None and handler is None) or method is None:
            log.info("no handler for %s from %s", req.name, self.peer)
            self._answer(req, ErrorCode.HANDLER_NOT_FOUND)
            return
        if req.bad_args is not None or req.args is None or req.args_raw is None:
            log.info("malformed %s from %s: %s", req.name, self.peer, req.bad_args)
            self._answer(req, ErrorCode.INVALID_DATA)
            return
        try:
            arg = req.arg if req.arg is not None else method.decode_arg_raw(req.args, req.args_raw)
        except ValueError as e:
            log.info("undecodable %s from %s: %s", req.name, self.peer, e)
            self._answer(req, ErrorCode.INVALID_DATA)
            return
        rpc_req = RpcRequest(
            req.name, req.seqid, req.header, arg, req.args_raw, self.peer, self.local
        )
        if inline is None:
            assert handler is not None
            self.inflight += 1
            server._spawn(self._run(handler, rpc_req, req))
            return
        try:
            out = inline(rpc_req)
        except Exception as e:
            self._reply(req, self._error_reply(rpc_req, e))
            return
        if isinstance(out, asyncio.Future):
            self.inflight += 1
            server._tasks.add(out)  # owned like a task; _inline_done lets go of it
            out.add_done_callback(functools.partial(self._inline_done, rpc_req, req))
            return
        self._reply(req, self._checked(rpc_req, out))

    def _inline_done(
        self, rpc_req: RpcRequest, req: Request, future: "asyncio.Future[Any]"
    ) -> None:
        self.server._tasks.discard(future)
        self._handler_done()
        if future.cancelled():  # the server is stopping: nobody to answer
            return
        error = future.exception()
        if error is not None:
            self._reply(req, self._error_reply(rpc_req, error))
        else:
            self._reply(req, RpcReply(ErrorCode.OK, future.result()))

    async def _run(self, handler: Handler, rpc_req: RpcRequest, req: Request) -> None:
        try:
            reply = await self._call(handler, rpc_req)
        finally:
            self._handler_done()
        self._reply(req, reply)

    def _handler_done(self) -> None:
        """A running request ended. Only one that was at the limit can have left frames
        unread (or reading paused): then read on. (Pumping after every write found nothing
        to read at ~1 us a time.)"""
        self.inflight -= 1
        if not self.closed and (self.read_paused or self.inflight + 1 >= self._limit):
            self._pump_rpc()

    def _reply(self, req: Request, reply: RpcReply) -> None:
        """Encode and send a handler's reply; an unencodable result is a handler bug."""
        method = req.method
        assert method is not None
        result = None
        if reply.error_code == ErrorCode.OK and not method.oneway:
            try:
                if reply.result is None:
                    raise ValueError("ERR_OK without a result")
                result = method.encode_result(reply.result)
            except Exception:
                self.server.handler_errors += 1
                log.exception("handler for %s returned an unencodable result", req.name)
                reply = RpcReply(ErrorCode.UNKNOWN)
        self._answer(req, reply.error_code, result)

    async def _call(self, handler: Handler, req: RpcRequest) -> RpcReply:
        try:
            reply = await handler(req)
        except Exception as e:
            return self._error_reply(req, e)
        return self._checked(req, reply)

    def _error_reply(self, req: RpcRequest, error: BaseException) -> RpcReply:
        """The reply to a handler that raised (see the module docstring)."""
        if isinstance(error, DupkvError):
            return RpcReply(error.code)
        if isinstance(error, BadInput):
            log.info("%s from %s: bad input: %s", req.name, req.peer, error)
            return RpcReply(ErrorCode.INVALID_PARAMETERS)
        self.server.handler_errors += 1
        log.error(
            "handler for %s (seqid %d from %s) failed",
            req.name,
            req.seqid,
            req.peer,
            exc_info=error,
        )
        return RpcReply(ErrorCode.UNKNOWN)

    def _checked(self, req: RpcRequest, reply: Any) -> RpcReply:
        if not isinstance(reply, RpcReply):
            self.server.handler_errors += 1
            log.error("handler for %s returned %r, not an RpcReply", req.name, reply)
            return RpcReply(ErrorCode.UNKNOWN)
        return reply

    # -- HTTP ----------------------------------------------------------------------------

    def _pump_http(self) -> None:
        assert self.http is not None
        if self.http_busy or self.closed:
            return
        event = self.http.next_event()
        if event is None:
            return
        if isinstance(event, HttpError):
            log.info("bad HTTP request from %s: %s %s", self.peer, event.status, event.reason)
            self._write(
                httpcodec.encode_response(httpcodec.error_response(event), keep_alive=False)
            )
            self.close()
            return
        self.http_busy = True
        self._update_reading()
        self.server._spawn(self._serve_http(event))

    async def _serve_http(self, req: HttpRequest) -> None:
        handler = self.server._http_handler
        try:
            if handler is None:
                resp = HttpResponse(404, "text/plain; charset=utf-8", b"no HTTP endpoints\n")
            else:
                resp = await handler(req.method, req.path, req.query, req.body)
        except Exception:
            log.exception("HTTP handler failed on %s %s", req.method, req.path)
            resp = HttpResponse(500, "text/plain; charset=utf-8", b"internal error\n")
        self._write(
            httpcodec.encode_response(
                resp, keep_alive=req.keep_alive, head_only=req.method == "HEAD"
            )
        )
        self.http_busy = False
        if not req.keep_alive:
            self.close()
            return
        self._update_reading()
        self._pump_http()
