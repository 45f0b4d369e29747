"""The shared log against real files: plog repair after a machine crash, checkpoints, and
a round of groups from several partitions through the SyncThread (one slog fsync)."""

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from dupkv.base.errors import CorruptLog
from dupkv.replica.partition import Partition, PartitionOptions, WriteOp
from dupkv.replica.writer import GroupCommitWriter, SharedLogPersist, SyncThread
from dupkv.rpc.thrift import rrdb
from dupkv.storage import schema
from dupkv.storage.mutation import TaskCode
from dupkv.storage.plog import Plog, cut_after, segment_name
from dupkv.storage.slog import SharedLog, decode_entry, encode_entry, recover_plogs

PAYLOAD = 300


def rec(decree: int) -> tuple[int, bytes]:
    return decree, (f"<{decree:06d}>".encode() * (PAYLOAD // 8 + 1))[:PAYLOAD]


def recs(first: int, last: int) -> list[tuple[int, bytes]]:
    return [rec(d) for d in range(first, last + 1)]


def replayed(path: Path) -> list[tuple[int, bytes]]:
    with Plog.open(path) as plog:
        return list(plog.replay(plog.first_decree)) if plog.last_decree else []


def crashed_pair(tmp_path: Path, synced: int, unsynced: int) -> tuple[Path, Path, int]:
    """A plog with `synced` records fsynced and `unsynced` more written after them, and a
    slog holding those (as a round would have left them); returns (slog dir, plog dir,
    offset of the first unsynced record)."""
    plog_dir, slog_dir = tmp_path / "p" / "plog", tmp_path / "slog"
    with Plog.open(plog_dir) as plog:
        plog.append(recs(1, synced))
        plog.sync()
        offset = plog.size_bytes()
        plog.append(recs(synced + 1, synced + unsynced))
    slog = SharedLog.open(slog_dir, segment_bytes=1 << 20, file_count_limit=4)
    slog.write([(1, 0, recs(synced + 1, synced + unsynced))])
    slog._log.close()  # a crash: no clean close, the slog stays
    return slog_dir, plog_dir, offset


def recover(slog_dir: Path, tmp_path: Path) -> None:
    recover_plogs(slog_dir, lambda gpid: tmp_path / "p" / "plog", plog_segment_bytes=32 << 20)


def test_entry_round_trip() -> None:
    assert decode_entry(encode_entry(7, 3, 12345, b"abc")) == ((7, 3), 12345, b"abc")
    with pytest.raises(CorruptLog):
        decode_entry(b"short")


def test_a_hole_in_the_unsynced_tail_is_repaired_from_the_slog(tmp_path: Path) -> None:
    slog_dir, plog_dir, offset = crashed_pair(tmp_path, synced=20, unsynced=40)
    # A power cut wrote back the tail's later pages but not the first one: zeros, then
    # whole records, which a plain open rightly calls damage.
    seg = plog_dir / segment_name(1)
    with open(seg, "r+b") as f:
        f.seek(offset)
        f.write(bytes(4096))
    with pytest.raises(CorruptLog, match="whole record"):
        Plog.open(plog_dir).close()
    recover(slog_dir, tmp_path)
    assert replayed(plog_dir) == recs(1, 60)
    assert not list(slog_dir.glob("log.*")), "the slog is emptied once the plogs hold it"


@pytest.mark.parametrize("damage", ["lost", "garbage", "intact"])
def test_any_unsynced_tail_is_replaced_by_the_slog(tmp_path: Path, damage: str) -> None:
    slog_dir, plog_dir, offset = crashed_pair(tmp_path, synced=5, unsynced=30)
    seg = plog_dir / segment_name(1)
    if damage == "lost":
        os.truncate(seg, offset + 100)
    elif damage == "garbage":
        with open(seg, "r+b") as f:
            f.seek(offset + 500)
            f.write(os.urandom(3000))
    recover(slog_dir, tmp_path)
    assert replayed(plog_dir) == recs(1, 35)
    recover(slog_dir, tmp_path)  # nothing left to do: idempotent
    assert replayed(plog_dir) == recs(1, 35)


def test_cut_after_spans_segments_and_checks_what_it_keeps(tmp_path: Path) -> None:
    plog_dir = tmp_path / "plog"
    with Plog.open(plog_dir, segment_bytes=900) as plog:  # three records per segment
        plog.append(recs(1, 10))
    assert cut_after(plog_dir, 5)[0] == 2  # log.7 and log.10 removed, log.4 cut after 5
    assert replayed(plog_dir) == recs(1, 5)
    with open(plog_dir / segment_name(4), "r+b") as f:
        f.seek(16 + 16)  # the payload of decree 4
        f.write(b"X")
    with pytest.raises(CorruptLog, match="decrees up to 5 were expected"):
        cut_after(plog_dir, 5)


def test_a_slog_that_needs_records_the_plog_lost_is_corruption(tmp_path: Path) -> None:
    slog_dir, plog_dir, offset = crashed_pair(tmp_path, synced=20, unsynced=10)
    os.truncate(plog_dir / segment_name(1), offset - 50)  # a synced record is gone
    with pytest.raises(CorruptLog):
        recover(slog_dir, tmp_path)
    assert list(slog_dir.glob("log.*")), "the slog is kept when the repair fails"


def test_partitions_that_are_gone_are_skipped_and_gaps_are_corruption(tmp_path: Path) -> None:
    slog = SharedLog.open(tmp_path / "slog", segment_bytes=1 << 20, file_count_limit=4)
    slog.write([(9, 0, recs(1, 3))])
    slog._log.close()
    report = recover_plogs(
        tmp_path / "slog", lambda gpid: tmp_path / "gone", plog_segment_bytes=1 << 20
    )
    assert (report.entries, report.partitions, report.skipped) == (3, 0, 1)

    slog = SharedLog.open(tmp_path / "slog", segment_bytes=1 << 20, file_count_limit=4)
    slog.write([(9, 0, recs(1, 3))])
    slog.write([(9, 0, recs(5, 6))])
    slog._log.close()
    with pytest.raises(CorruptLog, match="jumps from decree 3 to 5"):
        recover_plogs(tmp_path / "slog", lambda gpid: tmp_path / "p", plog_segment_bytes=1 << 20)


def test_checkpoint_fsyncs_the_plogs_and_bounds_the_slog(tmp_path: Path) -> None:
    slog = SharedLog.open(tmp_path / "slog", segment_bytes=4096, file_count_limit=2)
    plogs = [Plog.open(tmp_path / f"p{k}") for k in range(2)]
    decree = 0
    for _ in range(40):
        for k, plog in enumerate(plogs):
            group = recs(decree + 1, decree + 3)
            slog.write([(1, k, group)])
            plog.append(group)
            plog.mark_durable()
            slog.track(plog)
            assert plog.durable_decree == decree + 3
            slog.maybe_checkpoint()
        decree += 3
        assert slog.segment_count <= 3
    assert slog.checkpoints > 0
    for plog in plogs:
        slog.forget(plog)
        assert not plog._unsynced, "forget fsyncs the plog"
        plog.close()
    slog.close()
    assert not list((tmp_path / "slog").glob("log.*")), "a clean close empties the slog"


def test_a_round_takes_every_queued_group_in_one_slog_write(tmp_path: Path) -> None:
    async def main() -> tuple[int, int]:
        slog = SharedLog.open(tmp_path / "slog", segment_bytes=1 << 20, file_count_limit=4)
        sync = SyncThread("fsync")
        persist = SharedLogPersist(slog)
        parts = [
            Partition(tmp_path / f"p{k}", PartitionOptions(app_id=1, partition_index=k))
            for k in range(4)
        ]
        writers = [GroupCommitWriter(p, sync=sync, shared=persist) for p in parts]
        for w in writers:
            w.start()

        def put(i: int) -> WriteOp:
            req = rrdb.update_request(key=schema.encode_key(b"h%d" % i, b""), value=b"v")
            return WriteOp(TaskCode.PUT, req)

        await asyncio.gather(*(writers[i % 4].write(put(i)) for i in range(400)))
        for w in writers:
            await w.close()
        for p in parts:
            await sync.run(slog.forget, p.plog)
            p.close()
        await sync.run(lambda _: slog.close(), None)
        await sync.stop()
        for k, p in enumerate(parts):
            reopened = Partition(p.path, PartitionOptions(app_id=1, partition_index=k))
            try:
                for i in range(k, 400, 4):
                    got = reopened.get(schema.encode_key(b"h%d" % i, b""))
                    assert got.value == b"v", i
            finally:
                reopened.close()
        return slog.groups, slog.rounds

    groups, rounds = asyncio.run(main())
    assert groups > rounds, f"{rounds} slog writes for {groups} groups: no round had two"


def test_a_lone_group_the_slog_holds_nothing_of_fsyncs_its_own_plog(tmp_path: Path) -> None:
    slog = SharedLog.open(tmp_path / "slog", segment_bytes=1 << 20, file_count_limit=4)
    persist = SharedLogPersist(slog)
    parts = [
        Partition(tmp_path / f"p{k}", PartitionOptions(app_id=1, partition_index=k))
        for k in range(2)
    ]

    def put(k: int, i: int) -> Any:
        req = rrdb.update_request(key=schema.encode_key(b"h%d" % i, b""), value=b"v")
        return parts[k].stage([WriteOp(TaskCode.PUT, req)])

    def commit(*ks: int, i: int) -> None:
        staged = [(parts[k], put(k, i)) for k in ks]
        assert persist(staged) == [None] * len(ks)
        for partition, st in staged:
            partition.commit(st)

    commit(0, i=1)  # alone, not in the slog: straight to its plog, fsynced
    assert slog.rounds == 0 and not parts[0].plog._unsynced
    commit(0, 1, i=2)  # a round of two: through the slog, the plogs left unsynced
    assert slog.rounds == 1 and slog.holds((1, 0)) and parts[0].plog._unsynced
    commit(0, i=3)  # alone, but the slog holds records of it: through the slog again
    assert slog.rounds == 2
    slog.checkpoint()  # fsyncs the plogs and empties the slog
    assert not slog.holds((1, 0)) and not list((tmp_path / "slog").glob("log.*"))
    commit(0, i=4)
    assert slog.rounds == 2 and not parts[0].plog._unsynced
    for p in parts:
        slog.forget(p.plog)
        p.close()
    slog.close()
