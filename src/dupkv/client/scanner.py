"""Scanners: one hash key's sorted range, or whole partitions (asyncio shell).

A scanner walks a list of spans (one for `get_scanner`, one per partition for unordered
scanners) in batches: `get_scanner` opens a server-side context and returns the first
batch, `scan(context_id)` the following ones, until the server says the context is complete
(-1). Records are buffered; the resume point is the last key *received*.

- A lost context (`scan` answers NotFound: expired, evicted, or the partition moved) and a
  scan batch whose outcome is unknown (timeout, lost connection: the server may have moved
  its cursor) both restart the span with `get_scanner` from the last received key,
  exclusive. A count-only scan (`only_return_count`) has no last key, so it restarts the
  span from its beginning and forgets the span's partial count. At most
  `MAX_RESTARTS` restarts in a row without progress, then the scan fails.
- Incomplete (the server's per-batch time limit): the records of that batch are delivered,
  then the scan fails with PegasusError(INCOMPLETE), as Pegasus's clients surface it.
- `close()` (or leaving `async with`) before the end sends `clear_scanner` so the server
  frees the context at once instead of after its idle timeout.
"""

import logging
from collections import deque
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Protocol

from dupkv.base.errors import DupkvError, ErrorCode, RocksStatus
from dupkv.client import ops
from dupkv.client.policy import AMBIGUOUS_ERRORS
from dupkv.client.types import PegasusError, ScanOptions
from dupkv.rpc.thrift import rrdb
from dupkv.storage.schema import decode_key

log = logging.getLogger(__name__)

CONTEXT_ID_COMPLETED = -1
CONTEXT_ID_NOT_EXIST = -2
MAX_RESTARTS = 3
CLEAR_SCANNER_TIMEOUT_MS = 1000

GET_SCANNER = "RPC_RRDB_RRDB_GET_SCANNER"
SCAN = "RPC_RRDB_RRDB_SCAN"
CLEAR_SCANNER = "RPC_RRDB_RRDB_CLEAR_SCANNER"

Record = tuple[bytes, bytes, bytes]  # (hash_key, sort_key, value)


class _Caller(Protocol):
    """What a scanner needs from its Table: one routed RPC with the retry policy."""

    def _call(
        self,
        op: str,
        code: str,
        arg: Any,
        *,
        key_hash: int | None = None,
        pidx: int | None = None,
        timeout_ms: int | None = None,
        idempotent: bool = True,
    ) -> Awaitable[Any]: ...


@dataclass(frozen=True)
class Span:
    """A key range of one partition: routed by `key_hash`, or by `pidx` for full scans."""

    start: bytes
    stop: bytes
    start_inclusive: bool
    stop_inclusive: bool
    key_hash: int | None = None
    pidx: int | None = None


class Scanner:
    """An async iterator of (hash_key, sort_key, value); use `async with` or `close()`."""

    def __init__(
        self, table: _Caller, spans: list[Span], options: ScanOptions, *, full_scan: bool
    ) -> None:
        self._table = table
        self._spans = deque(spans)
        self.options = options
        self._full_scan = full_scan
        self._span: Span | None = None
        self._context_id = CONTEXT_ID_NOT_EXIST
        self._start = b""
        self._start_inclusive = True
        self._buffer: deque[Record] = deque()
        self._span_count = 0
        self._count = 0
        self._restarts = 0
        self._deferred: PegasusError | None = None
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    async def next(self) -> Record | None:
        """The next record, or None once the scan is over (or the scanner closed)."""
        while not self._buffer:
            if not await self._fetch():
                return None
        return self._buffer.popleft()

    def __aiter__(self) -> "Scanner":
        return self

    async def __anext__(self) -> Record:
        record = await self.next()
        if record is None:
            raise StopAsyncIteration
        return record

    async def __aenter__(self) -> "Scanner":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def count(self) -> int:
        """Records left in the scan: from the servers' counts with `only_return_count`,
        else by reading them."""
        if not self.options.only_return_count:
            n = 0
            while await self.next() is not None:
                n += 1
            return n
        while await self._fetch():
            self._buffer.clear()
        return self._count

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._buffer.clear()
        self._spans.clear()
        span, context_id = self._span, self._context_id
        self._span, self._context_id = None, CONTEXT_ID_COMPLETED
        if span is None or context_id < 0:
            return
        try:
            await self._table._call(
                "clear_scanner",
                CLEAR_SCANNER,
                context_id,
                key_hash=span.key_hash,
                pidx=span.pidx,
                timeout_ms=min(CLEAR_SCANNER_TIMEOUT_MS, self.options.timeout_ms),
                idempotent=False,
            )
        except DupkvError as e:  # the server drops the context after its idle timeout anyway
            log.info("clear_scanner %d failed: %s", context_id, e)

    # -- internals -----------------------------------------------------------------------

    def _begin(self, span: Span) -> None:
        self._span = span
        self._context_id = CONTEXT_ID_NOT_EXIST
        self._start, self._start_inclusive = span.start, span.start_inclusive
        self._span_count = 0
        self._restarts = 0

    async def _fetch(self) -> bool:
        """Put the next batch (possibly empty) in the buffer; False once the scan is over."""
        if self._deferred is not None:
            error, self._deferred = self._deferred, None
            await self.close()
            raise error
        if self._closed:
            return False
        if self._span is None:
            if not self._spans:
                self._closed = True
                return False
            self._begin(self._spans.popleft())
        span = self._span
        assert span is not None
        if self._context_id == CONTEXT_ID_COMPLETED:
            self._count += self._span_count
            self._span = None
            return True
        if self._context_id >= 0:
            op = "scan"
            try:
                resp = await self._table._call(
                    op,
                    SCAN,
                    rrdb.scan_request(context_id=self._context_id),
                    key_hash=span.key_hash,
                    pidx=span.pidx,
                    timeout_ms=self.options.timeout_ms,
                    idempotent=False,
                )
            except DupkvError as e:
                if e.code not in AMBIGUOUS_ERRORS:
                    raise
                self._restart(e)
                return True
            if resp.error == RocksStatus.NOT_FOUND:
                self._restart(PegasusError(RocksStatus.NOT_FOUND, op, ops.where(resp)))
                return True
        else:
            op = "get_scanner"
            req = ops.get_scanner_request(
                self.options,
                self._start,
                span.stop,
                self._start_inclusive,
                span.stop_inclusive,
                full_scan=self._full_scan,
            )
            resp = await self._table._call(
                op,
                GET_SCANNER,
                req,
                key_hash=span.key_hash,
                pidx=span.pidx,
                timeout_ms=self.options.timeout_ms,
            )
        status = ops.status_of(resp, op, (RocksStatus.OK, RocksStatus.INCOMPLETE))
        self._absorb(resp)
        if status == RocksStatus.INCOMPLETE:
            self._context_id = CONTEXT_ID_COMPLETED  # the server dropped it
            self._deferred = PegasusError(status, op, ops.where(resp))
        return True

    def _absorb(self, resp: Any) -> None:
        kvs = resp.kvs or []
        for kv in kvs:
            try:
                hash_key, sort_key = decode_key(kv.key or b"")
            except ValueError as e:
                where = ops.where(resp)
                raise DupkvError(
                    ErrorCode.INVALID_DATA, f"scanner got a malformed key from {where}: {e}"
                ) from e
            self._buffer.append((hash_key, sort_key, kv.value or b""))
        if kvs:
            self._start, self._start_inclusive = kvs[-1].key, False
            self._restarts = 0
        if self.options.only_return_count:
            self._span_count += resp.kv_count or 0
        context_id = resp.context_id if resp.context_id is not None else CONTEXT_ID_COMPLETED
        self._context_id = context_id if context_id >= 0 else CONTEXT_ID_COMPLETED

    def _restart(self, cause: DupkvError) -> None:
        self._restarts += 1
        if self._restarts > MAX_RESTARTS:
            note = f"restarted {MAX_RESTARTS} times without progress"
            if isinstance(cause, PegasusError):
                raise PegasusError(cause.status, cause.op, f"{cause.where}; {note}") from cause
            raise DupkvError(cause.code, f"scan {note}; last: {cause}") from cause
        log.info("restarting scan after %s", cause)
        self._context_id = CONTEXT_ID_NOT_EXIST
        if self.options.only_return_count:
            assert self._span is not None
            self._start, self._start_inclusive = self._span.start, self._span.start_inclusive
            self._span_count = 0
