"""Our server against requests built, and replies read, the way pypegasus3 does it.

pypegasus3 (the Apache Pegasus Python client) is not installed; this file re-creates what
its code does on the wire, step by step, from its sources:
- operate/packet.py: ThriftHeader packs '>4siiiiiiiiiq' with both CRCs 0, client_timeout
  0, partition_hash 0, thread_hash = app_id * 7919 + partition_index.
- pgclient.py BaseSession.send_req: seek(48), writeMessageBegin(name, CALL, seqid) with
  Apache Thrift's TBinaryProtocol (strict), args.write(), then the header in front.
- its generated ttypes write blob / gpid / rpc_address / error_code fields with field type
  STRUCT and a raw payload, and read them back only if the field type is STRUCT.
- transport/protocol.py: a u32 length that counts itself, then stringReceived reads the
  error code string and readMessageBegin, and calls recv_<name> on the session, so the
  reply name must be exactly "<code>_ACK"; recv_ACK maps a non-OK code through its
  error_types enum, else reads <method>_result and requires a truthy `success`.
"""

import asyncio
import struct

from dupkv.base.errors import ErrorCode
from dupkv.rpc import ids
from dupkv.rpc.idl_meta import meta
from dupkv.rpc.server import RpcReply, RpcRequest, RpcServer
from dupkv.rpc.thrift import rrdb, serialize

T_STOP, T_BOOL, T_I32, T_I64, T_STRING, T_STRUCT, T_LIST = 0, 2, 8, 10, 11, 12, 15
CALL, REPLY = 1, 2
# A few names of pypegasus's error_types enum (base/ttypes.py), which lacks newer codes.
PYPEGASUS_ERROR_NAMES = {"ERR_OK", "ERR_OBJECT_NOT_FOUND", "ERR_HANDLER_NOT_FOUND", "ERR_TIMEOUT"}


class ApacheWriter:
    """The calls of Apache Thrift's TBinaryProtocol (strict_write) that pypegasus makes."""

    def __init__(self) -> None:
        self.out = bytearray()

    def message_begin(self, name: str, mtype: int, seqid: int) -> None:
        self.out += struct.pack(">I", 0x80010000 | mtype)
        self.string(name.encode())
        self.out += struct.pack(">i", seqid)

    def field(self, ftype: int, fid: int) -> None:
        self.out += struct.pack(">bh", ftype, fid)

    def stop(self) -> None:
        self.out += b"\x00"

    def string(self, data: bytes) -> None:
        self.out += struct.pack(">i", len(data)) + data

    def i32(self, v: int) -> None:
        self.out += struct.pack(">i", v)

    def list_begin(self, etype: int, size: int) -> None:
        self.out += struct.pack(">bi", etype, size)


class ApacheReader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def _take(self, fmt: str):
        v = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return v[0]

    def string(self) -> bytes:
        n = self._take(">i")
        self.pos += n
        return self.data[self.pos - n : self.pos]

    def message_begin(self) -> tuple[str, int, int]:
        word = self._take(">I")
        assert word & 0xFFFF0000 == 0x80010000
        return self.string().decode(), word & 0xFF, self._take(">i")

    def field(self) -> tuple[int, int]:
        ftype = self._take(">b")
        return (ftype, 0) if ftype == T_STOP else (ftype, self._take(">h"))

    def i32(self) -> int:
        return self._take(">i")

    def i64(self) -> int:
        return self._take(">q")

    def bool(self) -> bool:
        return self._take(">b") != 0

    def list_begin(self) -> tuple[int, int]:
        return self._take(">b"), self._take(">i")

    def skip(self, ftype: int) -> None:
        raise AssertionError(f"pypegasus would skip a field of type {ftype} here")

    def struct(self, fields: dict) -> dict:
        """Generated read(): each known field is read only if its type is the declared one."""
        out = {}
        while True:
            ftype, fid = self.field()
            if ftype == T_STOP:
                return out
            declared, read = fields[fid]
            if ftype != declared:
                self.skip(ftype)
            out[fid] = read(self)


def pypegasus_request(name: str, seqid: int, app_id: int, pidx: int, write_args) -> bytes:
    w = ApacheWriter()
    w.message_begin(name, CALL, seqid)
    write_args(w)
    header = struct.pack(
        ">4siiiiiiiiiq",
        b"THFT",
        0,
        48,
        0,
        len(w.out),
        0,
        app_id,
        pidx,
        0,
        app_id * 7919 + pidx,
        0,
    )
    return header + bytes(w.out)


def pypegasus_receive(data: bytes) -> tuple[str, str, int, ApacheReader]:
    """dataReceived + stringReceived: (errno, fname, seqid, reader positioned at the result)."""
    (length,) = struct.unpack("!I", data[:4])
    assert length == len(data)
    r = ApacheReader(data[4:length])
    errno = r.string().decode()
    fname, mtype, seqid = r.message_begin()
    assert mtype == REPLY
    assert errno in PYPEGASUS_ERROR_NAMES
    return errno, fname, seqid, r


RPC_ADDRESS = (T_STRUCT, ApacheReader.i64)
PARTITION_CONFIGURATION = {
    1: (T_STRUCT, ApacheReader.i64),  # gpid
    2: (T_I64, ApacheReader.i64),
    3: (T_I32, ApacheReader.i32),
    4: RPC_ADDRESS,
    5: (T_LIST, lambda r: [r.i64() for _ in range(r.list_begin()[1])]),
    6: (T_LIST, lambda r: [r.i64() for _ in range(r.list_begin()[1])]),
    7: (T_I64, ApacheReader.i64),
    8: (T_I32, ApacheReader.i32),  # not in pypegasus's spec: its reader skips field 8
}
QUERY_CFG_RESPONSE = {
    1: (T_STRUCT, ApacheReader.string),  # error_code
    2: (T_I32, ApacheReader.i32),
    3: (T_I32, ApacheReader.i32),
    4: (T_BOOL, ApacheReader.bool),
    5: (T_LIST, lambda r: [r.struct(PARTITION_CONFIGURATION) for _ in range(r.list_begin()[1])]),
}
UPDATE_RESPONSE = {
    1: (T_I32, ApacheReader.i32),
    2: (T_I32, ApacheReader.i32),
    3: (T_I32, ApacheReader.i32),
    4: (T_I64, ApacheReader.i64),
    5: (T_STRING, ApacheReader.string),
}
READ_RESPONSE = {
    1: (T_I32, ApacheReader.i32),
    2: (T_STRUCT, ApacheReader.string),  # blob
    3: (T_I32, ApacheReader.i32),
    4: (T_I32, ApacheReader.i32),
    6: (T_STRING, ApacheReader.string),
}


def result_success(r: ApacheReader, fields: dict) -> dict:
    return r.struct({0: (T_STRUCT, lambda rr: rr.struct(fields))})[0]


def test_pypegasus_query_cfg_put_and_get():
    store: dict[bytes, bytes] = {}
    seen: list[RpcRequest] = []

    async def query_cfg(req: RpcRequest) -> RpcReply:
        seen.append(req)
        if req.arg.app_name != "temp":
            return RpcReply(ErrorCode.OBJECT_NOT_FOUND)
        cfg = meta.partition_configuration(
            pid=ids.pack_gpid(2, 0),
            ballot=3,
            max_replica_count=1,
            primary=ids.pack_address(req.local),
            secondaries=[],
            last_drops=[],
            last_committed_decree=0,
            partition_flags=0,
        )
        return RpcReply(
            ErrorCode.OK,
            meta.query_cfg_response(
                err=ErrorCode.OK, app_id=2, partition_count=1, is_stateful=True, partitions=[cfg]
            ),
        )

    async def put(req: RpcRequest) -> RpcReply:
        seen.append(req)
        store[req.arg.key] = req.arg.value
        return RpcReply(
            ErrorCode.OK,
            rrdb.update_response(
                error=0,
                app_id=req.header.app_id,
                partition_index=req.header.partition_index,
                decree=1,
                server=req.local,
            ),
        )

    async def get(req: RpcRequest) -> RpcReply:
        seen.append(req)
        value = store.get(req.arg)
        return RpcReply(
            ErrorCode.OK,
            rrdb.read_response(
                error=0 if value is not None else 1,
                value=value or b"",
                app_id=2,
                partition_index=0,
                server=req.local,
            ),
        )

    def query_args(app_name: bytes):
        def write(w: ApacheWriter) -> None:
            w.field(T_STRUCT, 1)  # query_cfg_args.query
            w.field(T_STRING, 1)
            w.string(app_name)
            w.field(T_LIST, 2)
            w.list_begin(T_I32, 0)
            w.stop()
            w.stop()

        return write

    key = b"\x00\x02hksort"

    def put_args(w: ApacheWriter) -> None:
        w.field(T_STRUCT, 1)  # put_args.update
        w.field(T_STRUCT, 1)  # update_request.key: blob
        w.string(key)
        w.field(T_STRUCT, 2)  # value: blob
        w.string(b"the value")
        w.field(T_I32, 3)
        w.i32(0)
        w.stop()
        w.stop()

    def get_args(w: ApacheWriter) -> None:
        w.field(T_STRUCT, 1)  # get_args.key: blob
        w.string(key)
        w.stop()

    async def exchange(reader, writer, frame: bytes) -> bytes:
        writer.write(frame)
        head = await reader.readexactly(4)
        return head + await reader.readexactly(struct.unpack(">I", head)[0] - 4)

    async def main():
        dispatcher = {
            "RPC_CM_QUERY_PARTITION_CONFIG_BY_INDEX": query_cfg,
            "RPC_RRDB_RRDB_PUT": put,
            "RPC_RRDB_RRDB_GET": get,
        }
        server = RpcServer("127.0.0.1", 0, dispatcher)
        await server.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            # MetaSessionManager.query_one: query_cfg_request(name, []) with gpid(0, 0)
            data = await exchange(
                reader,
                writer,
                pypegasus_request(
                    "RPC_CM_QUERY_PARTITION_CONFIG_BY_INDEX", 1, 0, 0, query_args(b"temp")
                ),
            )
            errno, fname, seqid, r = pypegasus_receive(data)
            assert (errno, fname, seqid) == (
                "ERR_OK",
                "RPC_CM_QUERY_PARTITION_CONFIG_BY_INDEX_ACK",
                1,
            )
            resp = result_success(r, QUERY_CFG_RESPONSE)
            assert resp[1] == b"ERR_OK" and resp[4] is True
            (part,) = resp[5]
            assert ids.unpack_gpid(part[1]) == (2, 0)
            assert ids.unpack_address(part[4]) == server.address  # rpc_address.to_host_port

            data = await exchange(
                reader,
                writer,
                pypegasus_request(
                    "RPC_CM_QUERY_PARTITION_CONFIG_BY_INDEX", 2, 0, 0, query_args(b"nope")
                ),
            )
            errno, fname, seqid, r = pypegasus_receive(data)
            assert (errno, seqid) == ("ERR_OBJECT_NOT_FOUND", 2)
            assert r.pos == len(r.data)  # nothing follows the message begin

            data = await exchange(
                reader, writer, pypegasus_request("RPC_RRDB_RRDB_PUT", 3, 2, 0, put_args)
            )
            errno, fname, seqid, r = pypegasus_receive(data)
            assert (errno, fname, seqid) == ("ERR_OK", "RPC_RRDB_RRDB_PUT_ACK", 3)
            assert result_success(r, UPDATE_RESPONSE)[2] == 2
            assert store == {key: b"the value"}

            data = await exchange(
                reader, writer, pypegasus_request("RPC_RRDB_RRDB_GET", 4, 2, 0, get_args)
            )
            errno, fname, seqid, r = pypegasus_receive(data)
            assert (errno, fname) == ("ERR_OK", "RPC_RRDB_RRDB_GET_ACK")
            resp = result_success(r, READ_RESPONSE)
            assert (resp[1], resp[2]) == (0, b"the value")  # resp.value.data

            put_req = seen[2]
            assert put_req.header.thread_hash == 2 * 7919 and put_req.header.header_crc32 == 0
            expected = rrdb.update_request(key=key, value=b"the value", expire_ts_seconds=0)
            assert put_req.arg == expected
            assert put_req.args_raw == serialize(expected)  # normalized to standard Thrift
        finally:
            writer.close()
            await writer.wait_closed()
            await server.stop()

    asyncio.run(main())
