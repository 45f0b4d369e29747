"""Group commit for one partition (the asyncio shell around `Partition.stage/persist/commit`).

Writes wait in a bounded queue and leave it in groups: one plog write and one fsync for a
whole group. The pipeline is two deep: while group N is being fsynced in a worker thread,
the event loop stages group N+1 (which sees N's writes through the overlay); N+1 is
persisted only after N, so the plog is never appended to while it is being fsynced, and
groups are committed to RocksDB and answered strictly in order.

The fsyncs run on a `SyncThread`: the writer's own, or one shared by every partition of
a replica server (their plogs share a disk, whose cache flushes are device-wide anyway).
Handing a group to a thread and back is the costliest part of a small group's commit: on
our 2-core machine a round trip through run_in_executor costs ~110 us of CPU (a concurrent
Future, its lock, two extra loop hops), one through a SimpleQueue and call_soon_threadsafe
~50 us. A shared thread hands back every group it finished while others were queued in one
loop callback (at most `MAX_BATCH_GROUPS`), and with 4 busy partitions its groups come out
about twice as large: replica and client CPU per set drop by ~20%, throughput holds. The
price: a partition's fsync may wait behind another's.

On a replica server the thread does better than fsync each partition in turn: the groups
queued together form a round (`SyncThread.run_batched`, at most `MAX_ROUND_GROUPS`), which
`SharedLogPersist` writes to the shared log with one fsync, then to each plog without one
(dupkv.storage.slog). A partition still has one group persisting at a time, so the order of
its plog is its staging order.
"""

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dupkv.base.errors import DupkvError, ErrorCode, InvariantError
from dupkv.replica.partition import Partition, PartitionBroken, Staged, WriteOp
from dupkv.storage.slog import SharedLog

log = logging.getLogger(__name__)

_Pending = tuple[WriteOp, "asyncio.Future[Any]"]


@dataclass
class _Inflight:
    group: list[_Pending]
    staged: Staged
    persist: "asyncio.Future[None] | None" = None


# (function, argument, future, loop, batched): a batched job's function takes a list of
# arguments and returns one error (or None) per argument.
_Job = tuple[Callable[[Any], Any], Any, "asyncio.Future[None]", asyncio.AbstractEventLoop, bool]
_Done = tuple["asyncio.Future[None]", Exception | None]
MAX_BATCH_GROUPS = 16  # groups answered in one loop callback by a SyncThread
MAX_ROUND_GROUPS = 64  # batched jobs handed to one call (one shared-log round)


class SyncThread:
    """One thread that runs blocking jobs (a group's persist) one after another, each
    answered on its Future; the answers of jobs that ran back to back go to the loop
    together. Started by the first job, ended by `stop()`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def run(self, fn: Callable[[Any], None], arg: Any) -> "asyncio.Future[None]":
        """Run `fn(arg)` on the thread, after the jobs queued before it."""
        return self._put(fn, arg, batched=False)

    def run_batched(
        self, fn: Callable[[list[Any]], list[Exception | None]], arg: Any
    ) -> "asyncio.Future[None]":
        """Run `fn([arg, ...])` on the thread together with the jobs for the same `fn`
        queued right after this one (up to MAX_ROUND_GROUPS); `fn` returns one error (or
        None) per argument, in order."""
        return self._put(fn, arg, batched=True)

    def _put(self, fn: Callable[[Any], Any], arg: Any, *, batched: bool) -> "asyncio.Future[None]":
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name=self.name, daemon=True)
            self._thread.start()
        self._jobs.put((fn, arg, future, loop, batched))
        return future

    def _work(self) -> None:
        done: dict[asyncio.AbstractEventLoop, list[_Done]] = {}
        count = 0
        carried: list[_Job | None] = []  # taken from the queue while gathering a round
        while True:
            job = carried.pop() if carried else self._jobs.get()
            if job is None:
                _hand_back(done)
                return
            jobs = [job]
            if job[4]:
                while len(jobs) < MAX_ROUND_GROUPS:
                    try:
                        more = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if more is None or not more[4] or more[0] is not job[0]:
                        carried.append(more)
                        break
                    jobs.append(more)
            for (_, _, future, loop, _), error in zip(jobs, _run_jobs(jobs), strict=True):
                done.setdefault(loop, []).append((future, error))
                count += 1
            # A round's answers go at once; single jobs' once the queue is drained or many.
            if job[4] or count >= MAX_BATCH_GROUPS or (not carried and self._jobs.empty()):
                _hand_back(done)
                done, count = {}, 0

    async def stop(self) -> None:
        """End the thread once the jobs already queued are done."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._jobs.put(None)
            await asyncio.get_running_loop().run_in_executor(None, thread.join)


def _run_jobs(jobs: list[_Job]) -> list[Exception | None]:
    fn, arg, _, _, batched = jobs[0]
    try:
        if batched:
            errors: list[Exception | None] = fn([job[1] for job in jobs])
            return errors
        fn(arg)
        return [None]
    except Exception as e:
        return [e] * len(jobs)


def _hand_back(done: dict[asyncio.AbstractEventLoop, list[_Done]]) -> None:
    for loop, answers in done.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits
            loop.call_soon_threadsafe(_resolve, answers)


class SharedLogPersist:
    """Persists a round of groups from several partitions through the replica server's
    shared log: one write and one fsync for the round, then one plog write per group
    (no fsync); a round of one group the slog holds nothing of fsyncs its own plog instead
    (dupkv.storage.slog). Runs on the server's SyncThread via `run_batched`."""

    def __init__(self, slog: SharedLog) -> None:
        self.slog = slog

    def __call__(self, items: list[tuple[Partition, Staged]]) -> list[Exception | None]:
        errors: list[Exception | None] = [None] * len(items)
        live = []
        for i, (partition, staged) in enumerate(items):
            if partition.broken is not None:
                errors[i] = PartitionBroken(ErrorCode.INVALID_STATE, partition.broken)
            elif staged.records:
                live.append(i)
        if not live:
            return errors
        if len(live) == 1:
            partition, staged = items[live[0]]
            o = partition.options
            if not self.slog.holds((o.app_id, o.partition_index)):
                try:  # alone and not in the slog: its own plog's fsync suffices
                    partition.persist(staged)
                except PartitionBroken as e:
                    errors[live[0]] = e
                return errors
        groups = []
        for i in live:
            partition, staged = items[i]
            o = partition.options
            groups.append((o.app_id, o.partition_index, staged.records))
        try:
            self.slog.write(groups)
        except OSError as e:
            for i in live:
                errors[i] = items[i][0].fail_log(f"shared log write failed: {e}")
            return errors
        for i in live:
            partition, staged = items[i]
            try:
                partition.persist(staged, sync=False)
            except PartitionBroken as e:
                errors[i] = e  # durable in the slog: the restart's recovery puts it back
                continue
            self.slog.track(partition.plog)
        try:
            self.slog.maybe_checkpoint()
        except (OSError, InvariantError) as e:
            # This round is durable in the slog; the slog refuses the next (see SharedLog).
            log.error("shared log checkpoint failed: %s", e)
        return errors


def _resolve(answers: list[_Done]) -> None:
    for future, error in answers:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


class GroupCommitWriter:
    def __init__(
        self,
        partition: Partition,
        *,
        max_group_ops: int = 1000,
        max_pending_ops: int = 20000,
        sync: SyncThread | None = None,
        shared: SharedLogPersist | None = None,
    ) -> None:
        """`sync`: the thread to fsync on, shared and stopped by its owner; by default the
        writer starts one of its own and stops it in `close()`. `shared`: persist through
        the replica server's shared log (on `sync`, which it requires) instead of an fsync
        of this partition's plog."""
        if shared is not None and sync is None:
            raise ValueError("a writer on the shared log needs the SyncThread that owns it")
        self.partition = partition
        self.max_group_ops = max_group_ops
        self.max_pending_ops = max_pending_ops
        self._pending: list[_Pending] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._subscribers: set[asyncio.Event] = set()
        self._own_sync = sync is None
        self._sync = sync if sync is not None else SyncThread(f"fsync-{partition.gpid}")
        self._shared = shared
        self.groups = 0
        self.ops = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"group-commit-{self.partition.gpid}"
        )

    def subscribe(self, event: asyncio.Event) -> Callable[[], None]:
        """Set `event` after every committed group (duplication wakes on it); returns the
        function that unsubscribes."""
        self._subscribers.add(event)
        return lambda: self._subscribers.discard(event)

    async def write(self, op: WriteOp) -> Any:
        """Queue a write and wait until it is durable and applied; returns its response."""
        return await self.submit(op)

    def submit(self, op: WriteOp) -> "asyncio.Future[Any]":
        """Queue a write; the Future gets its response once it is durable and applied.

        Raises DupkvError at once when the writer is closing or its queue is full. (The RPC
        server answers the Future when it is done, without a task per write.)
        """
        if self._closing:
            raise DupkvError(ErrorCode.INVALID_STATE, f"partition {self.partition.gpid} is closing")
        if len(self._pending) >= self.max_pending_ops:
            raise DupkvError(ErrorCode.BUSY, f"{len(self._pending)} writes already queued")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((op, future))
        self._wakeup.set()
        return future

    async def _run(self) -> None:
        inflight: _Inflight | None = None
        while True:
            if not self._pending and inflight is None:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            group = self._pending[: self.max_group_ops]
            del self._pending[: self.max_group_ops]
            staged = self._stage(group, inflight) if group else None
            if inflight is not None:
                await self._finish(inflight)
            inflight = self._start_persist(staged) if staged is not None else None

    def _stage(self, group: list[_Pending], after: "_Inflight | None") -> "_Inflight | None":
        """Stage a group (overlapping the previous group's fsync); fail it on error."""
        try:
            staged = self.partition.stage(
                [op for op, _ in group], after.staged if after is not None else None
            )
        except DupkvError as e:
            self._fail(group, e)
            return None
        except Exception as e:
            self._bug(e)
            self._fail(group, self._broken_error())
            return None
        return _Inflight(group, staged)

    def _start_persist(self, staged: "_Inflight") -> "_Inflight | None":
        if self.partition.broken:
            # Staged on top of a group that failed: its decrees can never be written.
            self._fail(staged.group, self._broken_error())
            return None
        if self._shared is not None:
            staged.persist = self._sync.run_batched(self._shared, (self.partition, staged.staged))
        else:
            staged.persist = self._sync.run(self.partition.persist, staged.staged)
        return staged

    async def _finish(self, inflight: "_Inflight") -> None:
        """Wait for a group's fsync, then apply it and answer its writers."""
        assert inflight.persist is not None
        try:
            await inflight.persist
            responses = self.partition.commit(inflight.staged)
        except DupkvError as e:
            self._fail(inflight.group, e)
            return
        except Exception as e:
            self._bug(e)
            self._fail(inflight.group, self._broken_error())
            return
        self.groups += 1
        self.ops += len(inflight.group)
        for event in self._subscribers:
            event.set()
        for (_, future), response in zip(inflight.group, responses, strict=True):
            if not future.done():
                future.set_result(response)

    def _bug(self, error: Exception) -> None:
        # A bug: stop taking writes on this partition rather than guess at its state.
        log.critical("%s: group commit failed", self.partition.gpid, exc_info=error)
        self.partition.broken = f"internal error in group commit: {error!r}"

    def _broken_error(self) -> PartitionBroken:
        return PartitionBroken(ErrorCode.INVALID_STATE, self.partition.broken or "broken")

    @staticmethod
    def _fail(group: list[_Pending], error: Exception) -> None:
        for _, future in group:
            if not future.done():
                future.set_exception(error)

    async def close(self) -> None:
        """Finish queued writes, then stop."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
        if self._own_sync:
            await self._sync.stop()
