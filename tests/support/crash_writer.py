"""A process that writes to one partition under load and prints every acknowledged op.

Run as `python crash_writer.py DIR SEED`; the crash test SIGKILLs it at a random moment.
Op i is a multi_put of three sort keys under hash key h<i> with value v<i>, except every
tenth op, which removes op i-5's keys. A line "ack <i>" is printed (and flushed) only after
the partition acknowledged op i, i.e. after its group was fsynced and applied.
"""

import asyncio
import random
import sys

from dupkv.replica.partition import Partition, PartitionOptions, WriteOp
from dupkv.replica.writer import GroupCommitWriter
from dupkv.rpc.thrift import rrdb
from dupkv.storage.mutation import TaskCode

SORT_KEYS = (b"a", b"b", b"c")


def op_for(i: int) -> WriteOp:
    if i % 10 == 9:
        return WriteOp(
            TaskCode.MULTI_REMOVE,
            rrdb.multi_remove_request(hash_key=b"h%d" % (i - 5), sort_keys=list(SORT_KEYS)),
        )
    kvs = [rrdb.key_value(key=sk, value=b"v%d" % i) for sk in SORT_KEYS]
    return WriteOp(TaskCode.MULTI_PUT, rrdb.multi_put_request(hash_key=b"h%d" % i, kvs=kvs))


async def main(path: str, seed: int) -> None:
    rng = random.Random(seed)
    partition = Partition(path, PartitionOptions(plog_segment_bytes=64 << 10))
    writer = GroupCommitWriter(partition, max_group_ops=rng.choice([1, 16, 256]))
    writer.start()
    counter = iter(range(10**9))
    out = sys.stdout

    async def worker() -> None:
        while True:
            i = next(counter)
            await writer.write(op_for(i))
            out.write(f"ack {i}\n")
            out.flush()

    out.write("ready\n")
    out.flush()
    async with asyncio.TaskGroup() as tg:
        for _ in range(32):
            tg.create_task(worker())


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
