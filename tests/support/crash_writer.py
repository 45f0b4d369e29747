"""A process that writes to one partition under load and prints every acknowledged op.

Run as `python crash_writer.py DIR SEED [shared]`; the crash test SIGKILLs it at a random
moment. Op i is a multi_put of three sort keys under hash key h<i> with value v<i>, except
every tenth op, which removes op i-5's keys. A line "ack <i>" is printed (and flushed) only
after the partition acknowledged op i, i.e. after its group was fsynced and applied.

With `shared`, ops go to `SHARED_PARTITIONS` partitions under DIR (op i's key h<j> to
partition j % SHARED_PARTITIONS, as `shared_partition_of` says) whose group commits go
through a shared log at DIR/slog, as on a replica server, with small slog segments so that
checkpoints happen while it runs, and 3 writers that pause now and then or 32 that do
not; a start first repairs the plogs from the slog.
"""

import asyncio
import random
import sys
from pathlib import Path

from dupkv.replica.partition import Partition, PartitionOptions, WriteOp
from dupkv.replica.writer import GroupCommitWriter, SharedLogPersist, SyncThread
from dupkv.rpc.thrift import rrdb
from dupkv.storage.mutation import TaskCode
from dupkv.storage.slog import SharedLog, recover_plogs

SORT_KEYS = (b"a", b"b", b"c")
SHARED_PARTITIONS = 3
PLOG_SEGMENT_BYTES = 64 << 10


def shared_partition_of(i: int) -> int:
    """The partition of op i's hash key in `shared` mode (a remove's key is op i-5's)."""
    return (i - 5 if i % 10 == 9 else i) % SHARED_PARTITIONS


def shared_options(k: int) -> PartitionOptions:
    return PartitionOptions(app_id=1, partition_index=k, plog_segment_bytes=PLOG_SEGMENT_BYTES)


def shared_paths(root: Path) -> tuple[Path, list[Path]]:
    """(the slog's folder, each partition's folder)."""
    return root / "slog", [root / f"p{k}" for k in range(SHARED_PARTITIONS)]


def recover_shared(root: Path) -> None:
    slog_dir, parts = shared_paths(root)
    recover_plogs(
        slog_dir, lambda gpid: parts[gpid[1]] / "plog", plog_segment_bytes=PLOG_SEGMENT_BYTES
    )


def op_for(i: int) -> WriteOp:
    if i % 10 == 9:
        return WriteOp(
            TaskCode.MULTI_REMOVE,
            rrdb.multi_remove_request(hash_key=b"h%d" % (i - 5), sort_keys=list(SORT_KEYS)),
        )
    kvs = [rrdb.key_value(key=sk, value=b"v%d" % i) for sk in SORT_KEYS]
    return WriteOp(TaskCode.MULTI_PUT, rrdb.multi_put_request(hash_key=b"h%d" % i, kvs=kvs))


async def main(path: str, seed: int, shared: bool) -> None:
    rng = random.Random(seed)
    max_group_ops = rng.choice([1, 16, 256])
    if shared:
        root = Path(path)
        recover_shared(root)
        slog_dir, parts = shared_paths(root)
        slog = SharedLog.open(
            slog_dir,
            segment_bytes=rng.choice([4 << 10, 16 << 10, 256 << 10]),
            file_count_limit=rng.choice([1, 3]),
        )
        sync = SyncThread("fsync")
        persist = SharedLogPersist(slog)
        writers = [
            GroupCommitWriter(
                Partition(p, shared_options(k)),
                max_group_ops=max_group_ops,
                sync=sync,
                shared=persist,
            )
            for k, p in enumerate(parts)
        ]
    else:
        partition = Partition(path, PartitionOptions(plog_segment_bytes=PLOG_SEGMENT_BYTES))
        writers = [GroupCommitWriter(partition, max_group_ops=max_group_ops)]
    for writer in writers:
        writer.start()
    counter = iter(range(10**9))
    out = sys.stdout

    # With a shared log, a few writers that pause now and then make rounds of one group
    # (which skip the slog when it holds nothing of their partition) between rounds of
    # several; many writers make rounds of several. Odd seeds take the first, even ones
    # the second (the crash test runs one of each per seed).
    workers = 3 if shared and seed % 2 else 32
    pause_s = 0.002 if workers == 3 else 0.0

    async def worker() -> None:
        while True:
            i = next(counter)
            writer = writers[shared_partition_of(i)] if shared else writers[0]
            await writer.write(op_for(i))
            out.write(f"ack {i}\n")
            out.flush()
            if pause_s and rng.random() < 0.5:
                await asyncio.sleep(rng.random() * pause_s)

    out.write("ready\n")
    out.flush()
    async with asyncio.TaskGroup() as tg:
        for _ in range(workers):
            tg.create_task(worker())


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3:] == ["shared"]))
