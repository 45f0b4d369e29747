"""Write coalescing for a transport (asyncio shell helper).

Many requests (client) or replies (server) are produced in one event-loop iteration when
several are in flight on a connection. Writing each frame with its own `send` costs a
syscall and, on a busy loopback, a wakeup of the peer per frame. `CoalescingWriter`
gathers the frames of one iteration and hands them to the transport in a single write at
the end of it (`loop.call_soon`), which adds no waiting: the flush runs before the loop
next polls for IO.
"""

import asyncio


class CoalescingWriter:
    __slots__ = ("_transport", "_parts", "_scheduled", "_loop")

    def __init__(self, transport: asyncio.WriteTransport) -> None:
        self._transport = transport
        self._parts: list[bytes] = []
        self._scheduled = False
        self._loop = asyncio.get_running_loop()

    def write(self, data: bytes) -> None:
        self._parts.append(data)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        parts, self._parts = self._parts, []
        if parts and not self._transport.is_closing():
            self._transport.write(parts[0] if len(parts) == 1 else b"".join(parts))

    def flush_now(self) -> None:
        """Write what is buffered immediately (before closing the transport)."""
        self._flush()
