"""A TCP proxy that delays each direction by a fixed time and keeps the byte order: a stand-in
for a WAN link on a kernel without netem (shared/reference/environment.md §5).

Every chunk read from one side is queued with its arrival time; one sender task per
direction sleeps until `arrival + delay` and writes it on. The delay is therefore added once
per direction (a round trip costs 2 x delay more) whatever the load, and a busy link does
not add the delay again per chunk. Queues are bounded (`MAX_QUEUED_BYTES` per direction):
when one is full the proxy stops reading that side, as a full TCP window would.

    .venv/bin/python bench/delay_proxy.py --delay-ms 30 LISTEN_PORT=HOST:PORT [...]

prints `ready` once every listener is up and runs until SIGTERM/SIGINT. The benchmark runs
it as its own process so that its timers do not share an event loop with the load.
"""

import argparse
import asyncio
import contextlib
import signal
import sys
from collections import deque

MAX_QUEUED_BYTES = 16 << 20  # per direction of one connection
READ_BYTES = 1 << 16
CONNECT_TIMEOUT_S = 5.0


class _Direction:
    """One direction of one connection: chunks in arrival order, released after `delay`."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.chunks: deque[tuple[float, bytes]] = deque()
        self.queued_bytes = 0
        self.more = asyncio.Event()  # a chunk arrived (or the reader ended)
        self.room = asyncio.Event()  # queued_bytes fell below the bound
        self.room.set()
        self.eof = False

    async def pump_in(self, reader: asyncio.StreamReader) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                await self.room.wait()
                data = await reader.read(READ_BYTES)
                if not data:
                    break
                self.chunks.append((loop.time() + self.delay_s, data))
                self.queued_bytes += len(data)
                if self.queued_bytes >= MAX_QUEUED_BYTES:
                    self.room.clear()
                self.more.set()
        except (ConnectionError, OSError):
            pass
        finally:
            self.eof = True
            self.more.set()

    async def pump_out(self, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                while not self.chunks:
                    if self.eof:
                        return
                    self.more.clear()
                    await self.more.wait()
                due, data = self.chunks[0]
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                # Everything already due goes out in one write: same bytes, fewer syscalls.
                now = loop.time()
                out = []
                while self.chunks and self.chunks[0][0] <= now:
                    out.append(self.chunks.popleft()[1])
                sent = sum(map(len, out))
                writer.write(b"".join(out))
                await writer.drain()
                self.queued_bytes -= sent
                if self.queued_bytes < MAX_QUEUED_BYTES:
                    self.room.set()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(OSError, RuntimeError):
                writer.close()


async def _serve_one(
    c_reader: asyncio.StreamReader,
    c_writer: asyncio.StreamWriter,
    host: str,
    port: int,
    delay_s: float,
    open_writers: set[asyncio.StreamWriter],
) -> None:
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            s_reader, s_writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError):
        c_writer.close()
        return
    open_writers.update((c_writer, s_writer))
    up, down = _Direction(delay_s), _Direction(delay_s)
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(up.pump_in(c_reader))
            tg.create_task(up.pump_out(s_writer))
            tg.create_task(down.pump_in(s_reader))
            tg.create_task(down.pump_out(c_writer))
    finally:
        open_writers.difference_update((c_writer, s_writer))
        s_writer.close()
        c_writer.close()


async def serve(routes: dict[int, tuple[str, int]], delay_ms: float, host: str) -> None:
    """Listen on every `routes` port of `host` and forward to its target until SIGTERM or
    SIGINT; then close every connection (so each one's tasks end on their own) and return."""
    delay_s = delay_ms / 1000
    open_writers: set[asyncio.StreamWriter] = set()
    handlers: set[asyncio.Task[None]] = set()
    servers = []
    for listen_port, (t_host, t_port) in routes.items():

        async def handle(
            r: asyncio.StreamReader, w: asyncio.StreamWriter, th: str = t_host, tp: int = t_port
        ) -> None:
            task = asyncio.current_task()
            assert task is not None
            handlers.add(task)
            try:
                await _serve_one(r, w, th, tp, delay_s, open_writers)
            finally:
                handlers.discard(task)

        servers.append(await asyncio.start_server(handle, host, listen_port))
    print("ready", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for server in servers:
        server.close()
    for writer in list(open_writers):
        writer.close()
    if handlers:
        await asyncio.wait(list(handlers), timeout=2.0)


def parse_route(text: str) -> tuple[int, tuple[str, int]]:
    listen, _, target = text.partition("=")
    host, _, port = target.rpartition(":")
    if not listen.isdigit() or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: expected LISTEN_PORT=HOST:PORT")
    return int(listen), (host, int(port))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--delay-ms", type=float, required=True, help="one-way delay per direction")
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on")
    ap.add_argument("routes", nargs="+", type=parse_route, metavar="LISTEN_PORT=HOST:PORT")
    args = ap.parse_args()
    asyncio.run(serve(dict(args.routes), args.delay_ms, args.host))
    return 0


if __name__ == "__main__":
    sys.exit(main())
