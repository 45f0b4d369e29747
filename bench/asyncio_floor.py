"""The floor under bench/client.py: what bare asyncio request/response costs on this machine.

A server process answers length-prefixed frames with a fixed reply, a client in this
process keeps 64 requests in flight from 64 coroutines (one Future each, requests gathered
per loop turn into one send), with frames the size of a get and its reply. No parsing,
routing or dispatch: whatever dupkv's client and server spend per request above these
figures is their own Python.

    .venv/bin/python bench/asyncio_floor.py [--seconds 5]
"""

import argparse
import asyncio
import struct
import subprocess
import sys
import time

from harness import cpu_seconds
from loops import closed_loop

HEAD = struct.Struct(">II")  # frame length (header included), seqid
REQUEST_PAD = b"r" * 90  # ~ a THFT get request
REPLY_PAD = b"s" * 150  # ~ a read_response with a 100-byte value
IN_FLIGHT = 64
BATCH_FRAMES = 16  # as dupkv's CoalescingWriter


class Server(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buf = bytearray()

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        pos, out = 0, []
        while len(buf) - pos >= HEAD.size:
            n, seqid = HEAD.unpack_from(buf, pos)
            if len(buf) - pos < n:
                break
            pos += n
            out.append(HEAD.pack(HEAD.size + len(REPLY_PAD), seqid) + REPLY_PAD)
        del buf[:pos]
        if out:
            self.transport.write(b"".join(out))  # type: ignore[attr-defined]


class Client(asyncio.Protocol):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.buf = bytearray()
        self.pending: dict[int, asyncio.Future[bytes]] = {}
        self.parts: list[bytes] = []
        self.flush_scheduled = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        pos = 0
        while len(buf) - pos >= HEAD.size:
            n, seqid = HEAD.unpack_from(buf, pos)
            if len(buf) - pos < n:
                break
            self.pending.pop(seqid).set_result(bytes(buf[pos + HEAD.size : pos + n]))
            pos += n
        del buf[:pos]

    def flush(self) -> None:
        self.flush_scheduled = False
        parts, self.parts = self.parts, []
        self.transport.write(b"".join(parts))  # type: ignore[attr-defined]

    def call(self, seqid: int) -> "asyncio.Future[bytes]":
        future = self.loop.create_future()
        self.pending[seqid] = future
        self.parts.append(HEAD.pack(HEAD.size + len(REQUEST_PAD), seqid) + REQUEST_PAD)
        if len(self.parts) >= BATCH_FRAMES:
            self.flush()
        elif not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_soon(self.flush)
        return future


async def serve(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(Server, "127.0.0.1", port)
    print("ready", server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()  # until killed by the parent


async def drive(port: int, seconds: float, server_pid: int) -> None:
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(lambda: Client(loop), "127.0.0.1", port)
    seqids = iter(range(1 << 62))
    cpu0, server0 = time.process_time(), cpu_seconds(server_pid)
    done, elapsed = await closed_loop(IN_FLIGHT, seconds, lambda _: client.call(next(seqids)))
    client_us = (time.process_time() - cpu0) / done * 1e6
    server_us = (cpu_seconds(server_pid) - server0) / done * 1e6
    print(
        f"{done / elapsed:,.0f} requests/s with {IN_FLIGHT} in flight; CPU per request: "
        f"client {client_us:.1f} us, server {server_us:.1f} us"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        asyncio.run(serve(0))
        return 0
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline().split()
        if not line or line[0] != "ready":
            raise SystemExit(f"the server did not start: {line!r}")
        asyncio.run(drive(int(line[1]), args.seconds, server.pid))
    finally:
        server.kill()
        server.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
