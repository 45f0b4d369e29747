"""The shipping pipeline of one partition for one duplication (pure core).

No IO, no clock, no randomness of its own: the shell feeds it loaded mutations, acks,
failures and the time, and carries out the actions `poll()` returns:

    Load(from_decree, max_bytes)   read the plog from this decree on
    Send(batch)                    ship one DUPLICATE RPC to one remote partition
    Heartbeat(remote_pidx)         ship an empty DUPLICATE to measure the round trip
    WakeAt(ms)                     call poll() again by then

Loaded writes are split by the remote partition their own hash key selects, so each
remote partition has its own queue. A remote partition has at most `window` batches in
flight; a batch carries up to `batch_bytes` of writes in decree order. Acks may come in
any order; the *shipped decree* only moves past a decree once every write at or below it
has been acknowledged, so after a restart shipping resumes exactly there (a few writes may
be shipped twice, which last-writer-wins makes harmless).

A failed batch is retried with capped exponential backoff and jitter (the shell supplies
the jitter as a number in [0, 1)). FAIL_SLOW retries forever; FAIL_SKIP drops the batch
after `skip_after_attempts` attempts and records the skipped decree range. Memory is
bounded: loading stops while `max_pending_bytes` of writes are queued or in flight.
"""

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import NamedTuple

from dupkv.duplication.routing import remote_partition
from dupkv.duplication.status import FailMode


class Entry(NamedTuple):
    decree: int
    timestamp_us: int
    code: str
    raw: bytes


@dataclass
class Batch:
    batch_id: int
    remote_pidx: int
    entries: list[Entry]
    size: int
    attempts: int = 0

    @property
    def decrees(self) -> tuple[int, int]:
        return self.entries[0].decree, self.entries[-1].decree


class Load(NamedTuple):
    from_decree: int
    max_bytes: int


class Send(NamedTuple):
    batch: Batch


class Heartbeat(NamedTuple):
    remote_pidx: int


class WakeAt(NamedTuple):
    at_ms: int


Action = Load | Send | Heartbeat | WakeAt


@dataclass
class Limits:
    batch_bytes: int = 4096
    window: int = 8  # batches in flight per remote partition
    max_pending_bytes: int = 8 << 20
    load_bytes: int = 1 << 20  # one Load asks for at most this much log
    backoff_base_ms: int = 50
    backoff_max_ms: int = 5000
    skip_after_attempts: int = 5
    heartbeat_ms: int = 1000


@dataclass
class Skipped:
    first_decree: int
    last_decree: int
    writes: int


@dataclass
class _Partition:
    queue: deque[Entry] = field(default_factory=deque)
    queued_bytes: int = 0
    inflight: int = 0


class Pipeline:
    def __init__(
        self,
        start_decree: int,
        remote_count: int,
        limits: Limits,
        fail_mode: int = FailMode.FAIL_SLOW,
    ) -> None:
        assert start_decree >= 1 and remote_count >= 1
        self.limits = limits
        self.fail_mode = fail_mode
        self.remote_count = remote_count
        self.next_load = start_decree  # next decree to read from the plog
        self.loading = False
        self._parts = [_Partition() for _ in range(remote_count)]
        self._inflight: dict[int, Batch] = {}
        self._retry: dict[int, tuple[int, Batch]] = {}  # batch id -> (due ms, batch)
        self._next_batch_id = 1
        self.pending_bytes = 0
        self.last_activity_ms = 0
        self._heartbeat_pidx = 0
        self._heartbeat_inflight = False
        # Writes not yet acknowledged, counted per decree in decree (= load) order; a decree
        # whose count reached 0 stays until it is at the front, so the shipped decree is
        # always "front decree - 1" and advancing it is O(1) per write.
        self._unacked: OrderedDict[int, list[int]] = OrderedDict()  # decree -> [count, ts]
        self._unacked_writes = 0
        self.shipped_decree = start_decree - 1
        # Counters the shell turns into metrics.
        self.shipped_writes = 0
        self.shipped_batches = 0
        self.failed_batches = 0
        self.skipped: list[Skipped] = []

    # -- inputs ------------------------------------------------------------------------

    def loaded(self, entries: list[Entry], upto_decree: int) -> None:
        """Shippable writes read from the plog up to `upto_decree` (inclusive), in decree
        order; decrees without shippable writes count as loaded too."""
        assert upto_decree >= self.next_load - 1, (upto_decree, self.next_load)
        self.loading = False
        count = self.remote_count
        for entry in entries:
            assert entry.decree >= self.next_load, (entry.decree, self.next_load)
            pidx = remote_partition(entry.code, entry.raw, count)
            part = self._parts[pidx]
            part.queue.append(entry)
            part.queued_bytes += len(entry.raw)
            self.pending_bytes += len(entry.raw)
            slot = self._unacked.get(entry.decree)
            if slot is None:
                self._unacked[entry.decree] = [1, entry.timestamp_us]
            else:
                slot[0] += 1
            self._unacked_writes += 1
        self.next_load = upto_decree + 1
        self._advance()

    def load_failed(self) -> None:
        self.loading = False

    def acked(self, batch_id: int, now_ms: int) -> list[int]:
        """A batch was applied by the remote; returns its writes' lags in ms."""
        batch = self._inflight.pop(batch_id)
        part = self._parts[batch.remote_pidx]
        part.inflight -= 1
        self.last_activity_ms = now_ms
        self.shipped_writes += len(batch.entries)
        self.shipped_batches += 1
        self._release(batch)
        return [max(0, now_ms - e.timestamp_us // 1000) for e in batch.entries]

    def failed(self, batch_id: int, now_ms: int, jitter: float) -> Skipped | None:
        """A batch could not be shipped; schedule a retry or, under FAIL_SKIP, skip it."""
        batch = self._inflight.pop(batch_id)
        self._parts[batch.remote_pidx].inflight -= 1
        self.failed_batches += 1
        limits = self.limits
        if self.fail_mode == FailMode.FAIL_SKIP and batch.attempts >= limits.skip_after_attempts:
            first, last = batch.decrees
            skipped = Skipped(first, last, len(batch.entries))
            self.skipped.append(skipped)
            del self.skipped[:-100]  # keep the recent ones only
            self._release(batch)
            return skipped
        delay = min(limits.backoff_max_ms, limits.backoff_base_ms << min(batch.attempts - 1, 20))
        due = now_ms + int(delay * (0.5 + jitter / 2))
        self._retry[batch.batch_id] = (due, batch)
        return None

    def heartbeat_done(self, now_ms: int) -> None:
        self._heartbeat_inflight = False
        self.last_activity_ms = now_ms

    def set_fail_mode(self, fail_mode: int) -> None:
        self.fail_mode = fail_mode

    # -- decisions ---------------------------------------------------------------------

    def poll(self, now_ms: int, committed_decree: int) -> list[Action]:
        """What to do now, given the partition's last committed decree."""
        actions: list[Action] = []
        limits = self.limits
        for batch_id, (due, batch) in list(self._retry.items()):
            if due <= now_ms:
                del self._retry[batch_id]
                actions.append(self._send(batch))
        for pidx, part in enumerate(self._parts):
            while part.queue and part.inflight < limits.window:
                if part.inflight and part.queued_bytes < limits.batch_bytes:
                    # Nagle: while a batch is on its way, let the next one fill up; it
                    # leaves when full or when the remote answers. Sparse writes still go
                    # at once (nothing in flight), busy ones in large batches.
                    break
                actions.append(self._send(self._take_batch(pidx, part)))
        if (
            not self.loading
            and self.next_load <= committed_decree
            and self.pending_bytes < limits.max_pending_bytes
        ):
            self.loading = True
            actions.append(Load(self.next_load, limits.load_bytes))
        quiet = now_ms - self.last_activity_ms >= limits.heartbeat_ms
        if self.idle and not self._heartbeat_inflight and quiet:
            self._heartbeat_inflight = True
            pidx = self._heartbeat_pidx
            self._heartbeat_pidx = (pidx + 1) % self.remote_count
            actions.append(Heartbeat(pidx))
        wake = [due for due, _ in self._retry.values()]
        if self.idle and not self._heartbeat_inflight:
            wake.append(self.last_activity_ms + limits.heartbeat_ms)
        if wake:
            actions.append(WakeAt(min(wake)))
        return actions

    @property
    def idle(self) -> bool:
        """Nothing queued, in flight, waiting for a retry or being loaded."""
        return not self._unacked_writes and not self.loading

    @property
    def inflight_batches(self) -> int:
        return len(self._inflight)

    def shipped_before_us(self, now_us: int, committed_decree: int) -> int:
        """Every write with a timestamp below this has been acknowledged by the remote
        (0 when unknown: writes are committed but not loaded yet)."""
        if self._unacked:
            return self._unacked[next(iter(self._unacked))][1]
        return now_us if self.next_load > committed_decree else 0

    def pending_writes(self) -> int:
        """Loaded writes not yet acknowledged by the remote."""
        return self._unacked_writes

    # -- internals ---------------------------------------------------------------------

    def _take_batch(self, pidx: int, part: _Partition) -> Batch:
        entries: list[Entry] = []
        size = 0
        limit = self.limits.batch_bytes
        while part.queue and (not entries or size + len(part.queue[0].raw) <= limit):
            entry = part.queue.popleft()
            entries.append(entry)
            size += len(entry.raw)
        part.queued_bytes -= size
        batch = Batch(self._next_batch_id, pidx, entries, size)
        self._next_batch_id += 1
        return batch

    def _send(self, batch: Batch) -> Send:
        batch.attempts += 1
        self._parts[batch.remote_pidx].inflight += 1
        self._inflight[batch.batch_id] = batch
        return Send(batch)

    def _release(self, batch: Batch) -> None:
        unacked = self._unacked
        for entry in batch.entries:
            self.pending_bytes -= len(entry.raw)
            unacked[entry.decree][0] -= 1
        self._unacked_writes -= len(batch.entries)
        self._advance()

    def _advance(self) -> None:
        unacked = self._unacked
        while unacked:
            decree = next(iter(unacked))
            if unacked[decree][0]:
                shipped = decree - 1
                break
            unacked.popitem(last=False)
        else:
            shipped = self.next_load - 1
        if shipped > self.shipped_decree:
            self.shipped_decree = shipped
