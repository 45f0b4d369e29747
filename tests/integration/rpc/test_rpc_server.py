"""The RPC server and client over real sockets on 127.0.0.1 (ephemeral ports)."""

import asyncio
import contextlib
import struct

from dupkv.base.errors import DupkvError, ErrorCode
from dupkv.rpc import codes, framing
from dupkv.rpc.client import ConnectionPool, connect
from dupkv.rpc.httpcodec import HttpResponse
from dupkv.rpc.server import RpcReply, RpcRequest, RpcServer
from dupkv.rpc.thrift import rrdb, serialize

PUT = codes.METHODS["RPC_RRDB_RRDB_PUT"]
GET = "RPC_RRDB_RRDB_GET"


def run(coro):
    async def bounded():
        async with asyncio.timeout(20):
            return await coro

    return asyncio.run(bounded())


@contextlib.asynccontextmanager
async def serving(dispatcher, http_handler=None, **kw):
    server = RpcServer("127.0.0.1", 0, dispatcher, http_handler, **kw)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def echo_put(req: RpcRequest) -> RpcReply:
    """Answers a put with what it learnt: the key as `server`, the header in the ids."""
    await asyncio.sleep(0)
    return RpcReply(
        ErrorCode.OK,
        rrdb.update_response(
            error=0,
            app_id=req.header.app_id,
            partition_index=req.header.partition_index,
            decree=req.seqid,
            server=req.arg.key.decode(),
        ),
    )


def update(key: bytes) -> object:
    return rrdb.update_request(key=key, value=b"v", expire_ts_seconds=0)


async def open_raw(server):
    return await asyncio.open_connection("127.0.0.1", server.port)


async def read_response(reader) -> framing.Response:
    head = await reader.readexactly(4)
    rest = await reader.readexactly(struct.unpack(">I", head)[0] - 4)
    (resp,) = framing.ResponseDecoder().feed(head + rest)
    return resp


async def assert_closed_without_answer(reader, writer) -> None:
    assert await reader.read() == b""
    writer.close()
    await writer.wait_closed()


def test_call_round_trip_and_what_the_handler_sees():
    seen = []

    async def handler(req: RpcRequest) -> RpcReply:
        seen.append(req)
        return await echo_put(req)

    async def main():
        async with serving({PUT.code: handler}) as server:
            conn = await connect("127.0.0.1", server.port, header_crc=True)
            code, resp = await conn.call(
                PUT.code, update(b"hello"), app_id=4, partition_index=2, partition_hash=99
            )
            assert code == ErrorCode.OK
            assert (resp.server, resp.app_id, resp.partition_index) == ("hello", 4, 2)
            (req,) = seen
            assert req.args_raw == serialize(update(b"hello"))
            assert req.header.partition_hash == 99 and req.header.client_timeout_ms == 5000
            assert req.header.header_crc32 != 0  # a correct CRC is accepted
            assert req.local == server.address == f"127.0.0.1:{server.port}"
            assert req.peer.startswith("127.0.0.1:")
            conn.close()
            await conn.wait_closed()

    run(main())


def test_64_concurrent_calls_on_one_connection_answered_out_of_order():
    started = []

    async def slow_put(req: RpcRequest) -> RpcReply:
        started.append(req.seqid)
        await asyncio.sleep((64 - len(started)) * 0.002)  # later requests answer first
        return await echo_put(req)

    async def main():
        async with serving({PUT.code: slow_put}, max_inflight_per_conn=64) as server:
            conn = await connect("127.0.0.1", server.port)
            keys = [f"k{i}".encode() for i in range(64)]
            outcomes = await asyncio.gather(*(conn.call(PUT.code, update(k)) for k in keys))
            assert [(c, r.server) for c, r in outcomes] == [
                (ErrorCode.OK, k.decode()) for k in keys
            ]
            assert len(started) == 64
            conn.close()

    run(main())


def test_unknown_names_get_handler_not_found_and_the_connection_stays_up():
    async def main():
        async with serving({PUT.code: echo_put}) as server:
            reader, writer = await open_raw(server)
            writer.write(framing.encode_request("RPC_NO_SUCH_THING", 7, b"\x00"))
            resp = await read_response(reader)
            assert (resp.name, resp.seqid, resp.error_code) == (
                "RPC_NO_SUCH_THING_ACK",
                7,
                ErrorCode.HANDLER_NOT_FOUND,
            )
            writer.write(framing.encode_request(PUT.code, 8, PUT.encode_arg(update(b"x"))))
            resp = await read_response(reader)
            assert (resp.seqid, resp.error_code) == (8, ErrorCode.OK)
            writer.close()
            await writer.wait_closed()
            # A registered code that this server does not serve.
            conn = await connect("127.0.0.1", server.port)
            assert await conn.call(GET, b"k") == (ErrorCode.HANDLER_NOT_FOUND, None)
            conn.close()

    run(main())


def test_broken_streams_close_their_connection_only():
    async def main():
        async with serving({PUT.code: echo_put}, max_frame_bytes=4096) as server:
            conn = await connect("127.0.0.1", server.port)
            frame = bytearray(framing.encode_request(PUT.code, 1, PUT.encode_arg(update(b"x"))))
            frame[12:16] = b"\x12\x34\x56\x78"
            big = framing.encode_request(PUT.code, 2, PUT.encode_arg(update(b"x" * 5000)))
            bad_version = framing.encode_request(PUT.code, 3, b"\x00")
            bad_version = bad_version[:4] + b"\x00\x00\x00\x07" + bad_version[8:]
            for data in (bytes(frame), big, bad_version, b"\x16\x03\x01\x02\x00"):
                reader, writer = await open_raw(server)
                writer.write(data)
                await assert_closed_without_answer(reader, writer)
                code, resp = await conn.call(PUT.code, update(b"still"))
                assert (code, resp.server) == (ErrorCode.OK, "still")
            conn.close()

    run(main())


def test_malformed_args_get_invalid_data_and_the_connection_stays_up():
    async def main():
        async with serving({PUT.code: echo_put}) as server:
            reader, writer = await open_raw(server)
            writer.write(framing.encode_request(PUT.code, 1, b"\x0c\x00\x01\x0b\x00\x01\xff"))
            writer.write(framing.encode_request(PUT.code, 2, PUT.encode_arg(update(b"ok"))))
            first, second = await read_response(reader), await read_response(reader)
            assert (first.seqid, first.error_code) == (1, ErrorCode.INVALID_DATA)
            assert (second.seqid, second.error_code) == (2, ErrorCode.OK)
            writer.close()
            await writer.wait_closed()

    run(main())


def test_handler_errors_are_translated_and_bugs_answered_with_err_unknown():
    async def handler(req: RpcRequest) -> RpcReply:
        key = req.arg.key
        if key == b"busy":
            raise DupkvError(ErrorCode.BUSY, "throttled")
        if key == b"bug":
            raise KeyError("a bug")
        if key == b"none":
            return RpcReply(ErrorCode.OK, None)
        return RpcReply(ErrorCode.INVALID_STATE)

    async def main():
        async with serving({PUT.code: handler}) as server:
            conn = await connect("127.0.0.1", server.port)
            call = conn.call
            assert await call(PUT.code, update(b"busy")) == (ErrorCode.BUSY, None)
            assert await call(PUT.code, update(b"bug")) == (ErrorCode.UNKNOWN, None)
            assert await call(PUT.code, update(b"none")) == (ErrorCode.UNKNOWN, None)
            assert await call(PUT.code, update(b"x")) == (ErrorCode.INVALID_STATE, None)
            assert server.handler_errors == 2
            conn.close()

    run(main())


def test_oneway_rpcs_send_nothing_back():
    cleared = []

    async def clear(req: RpcRequest) -> RpcReply:
        cleared.append(req.arg)
        return RpcReply(ErrorCode.OK)

    async def main():
        dispatcher = {"RPC_RRDB_RRDB_CLEAR_SCANNER": clear, PUT.code: echo_put}
        async with serving(dispatcher) as server:
            reader, writer = await open_raw(server)
            clear_m = codes.METHODS["RPC_RRDB_RRDB_CLEAR_SCANNER"]
            writer.write(framing.encode_request(clear_m.code, 1, clear_m.encode_arg(77)))
            writer.write(framing.encode_request(PUT.code, 2, PUT.encode_arg(update(b"a"))))
            resp = await read_response(reader)
            assert resp.seqid == 2 and cleared == [77]
            writer.close()
            await writer.wait_closed()
            conn = await connect("127.0.0.1", server.port)
            assert await conn.call(clear_m.code, 78) == (ErrorCode.OK, None)
            conn.close()

    run(main())


def test_back_pressure_bounds_running_handlers_per_connection():
    running, peak = 0, 0
    gate = asyncio.Event()

    async def gated(req: RpcRequest) -> RpcReply:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await gate.wait()
        running -= 1
        return await echo_put(req)

    async def main():
        async with serving({PUT.code: gated}, max_inflight_per_conn=3) as server:
            conn = await connect("127.0.0.1", server.port)
            calls = [asyncio.ensure_future(conn.call(PUT.code, update(b"k"))) for _ in range(20)]
            await asyncio.sleep(0.1)
            assert running == 3
            gate.set()
            outcomes = await asyncio.gather(*calls)
            assert all(code == ErrorCode.OK for code, _ in outcomes)
            assert peak == 3
            conn.close()

    run(main())


def test_timeout_and_late_reply_dropped():
    async def slow(req: RpcRequest) -> RpcReply:
        if req.arg.key == b"slow":
            await asyncio.sleep(0.3)
        return await echo_put(req)

    async def main():
        async with serving({PUT.code: slow}) as server:
            conn = await connect("127.0.0.1", server.port)
            assert await conn.call(PUT.code, update(b"slow"), timeout_ms=50) == (
                ErrorCode.TIMEOUT,
                None,
            )
            code, resp = await conn.call(PUT.code, update(b"fast"))
            assert (code, resp.server) == (ErrorCode.OK, "fast")
            await asyncio.sleep(0.4)
            assert conn.late_replies == 1 and conn.pending_count == 0
            conn.close()

    run(main())


def test_max_pending_makes_callers_wait_within_their_timeout():
    gate = asyncio.Event()

    async def gated(req: RpcRequest) -> RpcReply:
        await gate.wait()
        return await echo_put(req)

    async def main():
        async with serving({PUT.code: gated}) as server:
            conn = await connect("127.0.0.1", server.port, max_pending=2)
            calls = [asyncio.ensure_future(conn.call(PUT.code, update(b"k"))) for _ in range(2)]
            await asyncio.sleep(0.05)
            assert conn.pending_count == 2
            assert await conn.call(PUT.code, update(b"k"), timeout_ms=50) == (
                ErrorCode.TIMEOUT,
                None,
            )
            # Waiters are served in order; one cancelled while waiting gives its turn on.
            cancelled = asyncio.ensure_future(conn.call(PUT.code, update(b"x")))
            waiting = asyncio.ensure_future(conn.call(PUT.code, update(b"w")))
            await asyncio.sleep(0.05)
            cancelled.cancel()
            gate.set()
            outcomes = await asyncio.gather(*calls, waiting)
            assert [c for c, _ in outcomes] == [ErrorCode.OK] * 3
            assert outcomes[2][1].server == "w" and cancelled.cancelled()
            assert conn.pending_count == 0
            assert (await conn.call(PUT.code, update(b"k"), timeout_ms=1000))[0] == ErrorCode.OK
            conn.close()

    run(main())


def test_server_stop_fails_pending_calls_and_pool_reports_network_failure():
    async def forever(req: RpcRequest) -> RpcReply:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def main():
        pool = ConnectionPool(connect_timeout_ms=500)
        server = RpcServer("127.0.0.1", 0, {PUT.code: forever}, stop_timeout_s=0.1)
        await server.start()
        address = server.address
        calls = [
            asyncio.ensure_future(pool.call(address, PUT.code, update(b"k"), timeout_ms=5000))
            for _ in range(5)
        ]
        await asyncio.sleep(0.1)
        await server.stop()
        assert await asyncio.gather(*calls) == [(ErrorCode.SESSION_RESET, None)] * 5
        assert await pool.call(address, PUT.code, update(b"k")) == (ErrorCode.NETWORK_FAILURE, None)
        await pool.close()

    run(main())


def test_pool_reconnects_lazily_and_evicts_idle_connections():
    async def main():
        async with serving({PUT.code: echo_put}) as a, serving({PUT.code: echo_put}) as b:
            pool = ConnectionPool(max_connections=1)
            assert (await pool.call(a.address, PUT.code, update(b"1")))[0] == ErrorCode.OK
            first = await pool.get(a.address)
            first.close()
            await first.wait_closed()
            assert (await pool.call(a.address, PUT.code, update(b"2")))[0] == ErrorCode.OK
            second = await pool.get(a.address)
            assert second is not first and not second.is_closed
            assert (await pool.call(b.address, PUT.code, update(b"3")))[0] == ErrorCode.OK
            await second.wait_closed()  # evicted to make room for b
            await pool.close()

    run(main())


async def http_exchange(server, raw: bytes) -> tuple[bytes, bytes]:
    reader, writer = await open_raw(server)
    writer.write(raw)
    data = await reader.read()
    writer.close()
    await writer.wait_closed()
    return data.partition(b"\r\n\r\n")[::2]


def test_http_on_the_same_port():
    async def http(method, path, query, body):
        if path == "/boom":
            raise RuntimeError("endpoint bug")
        text = f"{method} {path} {sorted(query.items())} {body.decode()}"
        return HttpResponse(200, "text/plain", text.encode())

    async def main():
        async with serving({PUT.code: echo_put}, http) as server:
            head, body = await http_exchange(
                server, b"GET /meta/app?name=t&detail HTTP/1.1\r\nConnection: close\r\n\r\n"
            )
            assert head.startswith(b"HTTP/1.1 200 OK")
            assert body == b"GET /meta/app [('detail', ''), ('name', 't')] "
            # keep-alive: two requests on one connection, then a bad one closes it
            reader, writer = await open_raw(server)
            writer.write(b"POST /a HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi")
            writer.write(b"GET /b HTTP/1.1\r\n\r\n")
            writer.write(b"NONSENSE\r\n\r\n")
            data = await reader.read()
            writer.close()
            await writer.wait_closed()
            assert data.count(b"HTTP/1.1 200 OK") == 2 and b"POST /a [] hi" in data
            assert b"HTTP/1.1 400 Bad Request" in data
            head, _ = await http_exchange(server, b"GET /boom HTTP/1.0\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 500")
            # RPC still served
            conn = await connect("127.0.0.1", server.port)
            assert (await conn.call(PUT.code, update(b"k")))[0] == ErrorCode.OK
            conn.close()

    run(main())


def test_dispatcher_keys_must_be_registered_codes():
    try:
        RpcServer("127.0.0.1", 0, {"RPC_MADE_UP": echo_put})
    except ValueError as e:
        assert "RPC_MADE_UP" in str(e)
    else:
        raise AssertionError("expected ValueError")


def test_inline_handlers_answer_at_once_or_when_their_future_is_done():
    pending: list[asyncio.Future] = []

    def put(req: RpcRequest):
        key = req.arg.key
        if key == b"busy":
            raise DupkvError(ErrorCode.BUSY, "throttled")
        if key == b"bug":
            raise KeyError("a bug")
        if key == b"bad":
            return "not a reply"
        if key.startswith(b"later"):
            future = asyncio.get_running_loop().create_future()
            pending.append(future)
            return future
        return RpcReply(ErrorCode.OK, rrdb.update_response(error=0, server=key.decode()))

    async def main():
        async with serving({}, inline={PUT.code: put}, max_inflight_per_conn=2) as server:
            conn = await connect("127.0.0.1", server.port)
            call = conn.call
            code, resp = await call(PUT.code, update(b"now"))
            assert (code, resp.server) == (ErrorCode.OK, "now")
            assert await call(PUT.code, update(b"busy")) == (ErrorCode.BUSY, None)
            assert await call(PUT.code, update(b"bug")) == (ErrorCode.UNKNOWN, None)
            assert await call(PUT.code, update(b"bad")) == (ErrorCode.UNKNOWN, None)
            assert server.handler_errors == 2
            # Pending futures count against max_inflight_per_conn: the third waits unread.
            calls = [
                asyncio.ensure_future(call(PUT.code, update(b"later%d" % i))) for i in range(3)
            ]
            await asyncio.sleep(0.1)
            assert len(pending) == 2
            pending[0].set_result(rrdb.update_response(error=0, server="first"))
            pending[1].set_exception(DupkvError(ErrorCode.INVALID_STATE, "closing"))
            await asyncio.sleep(0.1)
            assert len(pending) == 3
            pending[2].set_result(rrdb.update_response(error=0, server="third"))
            (c0, r0), c1, (c2, r2) = await asyncio.gather(*calls)
            assert (c0, r0.server, c1, c2, r2.server) == (
                ErrorCode.OK,
                "first",
                (ErrorCode.INVALID_STATE, None),
                ErrorCode.OK,
                "third",
            )
            conn.close()

    run(main())


def test_inline_handlers_must_be_plain_functions_of_their_own_codes():
    for kw in (
        {"inline": {PUT.code: echo_put}},  # a coroutine function
        {
            "inline": {PUT.code: lambda req: RpcReply(ErrorCode.OK)},
            "dispatcher": {PUT.code: echo_put},
        },
    ):
        dispatcher = kw.pop("dispatcher", {})
        try:
            RpcServer("127.0.0.1", 0, dispatcher, **kw)
        except ValueError as e:
            assert PUT.code in str(e)
        else:
            raise AssertionError(f"expected ValueError for {kw}")
