"""Group commit for one partition (the asyncio shell around `Partition.stage/persist/commit`).

Writes that arrive while a group is being persisted wait in a bounded queue and form the
next group: one plog write and one fsync for all of them. One group is in flight at a time,
so staging always sees the state left by the previous group and the plog is never appended
to while a worker thread fsyncs it.
"""

import asyncio
import logging
from typing import Any

from dupkv.base.errors import DupkvError, ErrorCode
from dupkv.replica.partition import Partition, PartitionBroken, WriteOp

log = logging.getLogger(__name__)


class GroupCommitWriter:
    def __init__(
        self, partition: Partition, *, max_group_ops: int = 1000, max_pending_ops: int = 20000
    ) -> None:
        self.partition = partition
        self.max_group_ops = max_group_ops
        self.max_pending_ops = max_pending_ops
        self._pending: list[tuple[WriteOp, asyncio.Future[Any]]] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._exclusive = asyncio.Lock()  # held while a group is in flight
        self.groups = 0
        self.ops = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"group-commit-{self.partition.gpid}"
        )

    async def write(self, op: WriteOp) -> Any:
        """Queue a write and wait until it is durable and applied; returns its response."""
        if self._closing:
            raise DupkvError(ErrorCode.INVALID_STATE, f"partition {self.partition.gpid} is closing")
        if len(self._pending) >= self.max_pending_ops:
            raise DupkvError(ErrorCode.BUSY, f"{len(self._pending)} writes already queued")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((op, future))
        self._wakeup.set()
        return await future

    async def _run(self) -> None:
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            async with self._exclusive:
                group = self._pending[: self.max_group_ops]
                del self._pending[: self.max_group_ops]
                await self._commit_group(group)

    def exclusive(self) -> asyncio.Lock:
        """Hold this to touch the plog (e.g. GC) while no group is being persisted."""
        return self._exclusive

    async def _commit_group(self, group: list[tuple[WriteOp, asyncio.Future[Any]]]) -> None:
        try:
            staged = self.partition.stage([op for op, _ in group])
            await asyncio.to_thread(self.partition.persist, staged)
            responses = self.partition.commit(staged)
        except DupkvError as e:
            self._fail(group, e)
            return
        except Exception as e:
            # A bug: stop taking writes on this partition rather than guess at its state.
            log.critical("%s: group commit failed", self.partition.gpid, exc_info=True)
            self.partition.broken = f"internal error in group commit: {e!r}"
            self._fail(group, PartitionBroken(ErrorCode.INVALID_STATE, self.partition.broken))
            return
        self.groups += 1
        self.ops += len(group)
        for (_, future), response in zip(group, responses, strict=True):
            if not future.done():
                future.set_result(response)

    @staticmethod
    def _fail(group: list[tuple[WriteOp, asyncio.Future[Any]]], error: Exception) -> None:
        for _, future in group:
            if not future.done():
                future.set_exception(error)

    async def close(self) -> None:
        """Finish queued writes, then stop."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
