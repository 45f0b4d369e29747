"""The plog against real files in tmp_path: format, crash recovery, GC and the reader."""

import os
import struct
import threading
import time
from pathlib import Path

import pytest

from dupkv.base.errors import CorruptLog, InvariantError
from dupkv.storage import plog as plog_mod
from dupkv.storage.plog import (
    MAGIC,
    MAX_PAYLOAD_BYTES,
    LogTruncated,
    Plog,
    encode_record_header,
    segment_name,
)

PAYLOAD = 40
RECORD = 16 + PAYLOAD
# With 40-byte payloads a segment holds three records: 16 + 2*56 = 128 < 180 <= 16 + 3*56.
THREE_PER_SEGMENT = 180


def rec(decree: int, size: int = PAYLOAD) -> tuple[int, bytes]:
    return decree, (f"<{decree:06d}>".encode() * (size // 8 + 1))[:size]


def recs(first: int, last: int, size: int = PAYLOAD) -> list[tuple[int, bytes]]:
    return [rec(d, size) for d in range(first, last + 1)]


def decrees(records: list[tuple[int, bytes]]) -> list[int]:
    return [d for d, _ in records]


def plog_with(path: Path, records: list[tuple[int, bytes]], segment_bytes: int = 32 << 20) -> Plog:
    p = Plog.open(path, segment_bytes=segment_bytes, fsync=False)
    p.append(records)
    return p


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def seg(path: Path, first_decree: int) -> Path:
    return path / segment_name(first_decree)


# -- writing and replay ----------------------------------------------------------------------


def test_append_replay_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "a" / "plog"  # open creates missing directories
    records = [rec(d, size=d * 7) for d in range(1, 51)] + [(51, b"")]
    with Plog.open(path, fsync=False) as p:
        assert (p.first_decree, p.last_decree, p.report.segments) == (0, 0, 0)
        written = p.append(records[:20]) + p.append(records[20:])
        assert written == 16 + sum(16 + len(payload) for _, payload in records)
        assert (p.first_decree, p.last_decree) == (1, 51)
        assert list(p.replay(1)) == records
        assert list(p.replay(30)) == records[29:]
        assert list(p.replay(52)) == []
        assert p.size_bytes() == written


def test_append_rejects_broken_contiguity_and_oversized_payloads(tmp_path: Path) -> None:
    with Plog.open(tmp_path, fsync=False) as p:
        with pytest.raises(InvariantError, match="start at 1"):
            p.append([(0, b"x")])
        p.append([rec(5)])  # an empty plog takes any first decree
        for group in ([rec(5)], [rec(7)], [rec(4)], [rec(6), rec(8)]):
            with pytest.raises(InvariantError, match="expected"):
                p.append(group)
        with pytest.raises(InvariantError, match="limit"):
            p.append([rec(6), (7, bytes(MAX_PAYLOAD_BYTES + 1))])
        # Nothing of a rejected group reached the file.
        assert p.last_decree == 5
        assert list(p.replay(5)) == [rec(5)]
        p.append([rec(6)])
        assert decrees(list(p.replay(5))) == [5, 6]


@pytest.mark.parametrize(("segment_bytes", "per_segment"), [(128, 2), (129, 3)])
def test_segment_rolls_before_the_record_that_finds_it_full(
    tmp_path: Path, segment_bytes: int, per_segment: int
) -> None:
    records = recs(1, 7)
    with plog_with(tmp_path, records, segment_bytes=segment_bytes) as p:  # one group, rolling
        firsts = list(range(1, 8, per_segment))
        assert p.segments() == [seg(tmp_path, d) for d in firsts]
        for first in firsts:
            head = seg(tmp_path, first).read_bytes()[:16]
            assert head == MAGIC + struct.pack(">Q", first)
        assert list(p.replay(1)) == records


def test_reopen_continues_after_the_last_decree(tmp_path: Path) -> None:
    plog_with(tmp_path, recs(1, 5), segment_bytes=128).close()
    with Plog.open(tmp_path, segment_bytes=128, fsync=False) as p:
        assert p.report == plog_mod.OpenReport(3, 1, 5, 0, None)
        assert (p.last_decree, p.durable_decree) == (5, 5)
        with pytest.raises(InvariantError):
            p.append([rec(7)])
        p.append(recs(6, 7))
    with Plog.open(tmp_path, fsync=False) as p:
        assert list(p.replay(1)) == recs(1, 7)


# -- open-time recovery ----------------------------------------------------------------------


def test_torn_tail_at_every_offset_inside_the_last_record_is_cut(tmp_path: Path) -> None:
    plog_with(tmp_path / "src", recs(1, 5)).close()
    name = segment_name(1)
    data = (tmp_path / "src" / name).read_bytes()
    last_start = len(data) - RECORD
    for cut in range(last_start + 1, len(data)):
        d = tmp_path / f"cut{cut}"
        d.mkdir()
        (d / name).write_bytes(data[:cut])
        with Plog.open(d, fsync=False) as p:
            assert p.report.truncated_bytes == cut - last_start
            assert p.report.truncated_at == f"{name}@{last_start}"
            assert (p.report.last_decree, p.last_decree) == (4, 4)
            assert list(p.replay(1)) == recs(1, 4)
            p.append([rec(5)])
        assert (d / name).read_bytes() == data


def test_torn_first_record_of_a_new_segment_removes_the_segment(tmp_path: Path) -> None:
    plog_with(tmp_path / "src", recs(1, 3), segment_bytes=128).close()
    first, second = (tmp_path / "src" / segment_name(d) for d in (1, 3))
    data = second.read_bytes()
    for cut in range(len(data)):  # inside the header, then inside the record
        d = tmp_path / f"cut{cut}"
        d.mkdir()
        (d / first.name).write_bytes(first.read_bytes())
        (d / second.name).write_bytes(data[:cut])
        with Plog.open(d, segment_bytes=128, fsync=False) as p:
            assert p.report == plog_mod.OpenReport(1, 1, 2, cut, f"{second.name}@0")
            assert p.segments() == [d / first.name]
            p.append([rec(3)])
        assert (d / second.name).read_bytes() == data


@pytest.mark.parametrize("damage", ["zeros appended", "last record zeroed"])
def test_zeroed_tail_is_cut(tmp_path: Path, damage: str) -> None:
    plog_with(tmp_path, recs(1, 5)).close()
    path = seg(tmp_path, 1)
    data = path.read_bytes()
    if damage == "zeros appended":
        # A tail the file system extended but never wrote; long, to show the scan skips it.
        path.write_bytes(data + bytes(1 << 20))
        good, cut = len(data), 1 << 20
    else:
        path.write_bytes(data[:-RECORD] + bytes(RECORD))
        good, cut = len(data) - RECORD, RECORD
    with Plog.open(tmp_path, fsync=False) as p:
        assert p.report.truncated_bytes == cut
        assert p.report.truncated_at == f"{path.name}@{good}"
        assert list(p.replay(1)) == (recs(1, 5) if damage == "zeros appended" else recs(1, 4))
    assert path.stat().st_size == good


@pytest.mark.parametrize("field", [0, 3, 4, 8, 15, 16, 55], ids=lambda f: f"byte{f}")
def test_flipped_byte_in_a_middle_record_is_corruption(tmp_path: Path, field: int) -> None:
    plog_with(tmp_path, recs(1, 6)).close()
    path = seg(tmp_path, 1)
    third = 16 + 2 * RECORD
    flip(path, third + field)
    before = path.read_bytes()
    with pytest.raises(CorruptLog, match=f"{path.name}@{third}: .*not a torn tail"):
        Plog.open(tmp_path, fsync=False)
    assert path.read_bytes() == before  # never cut


def test_zeroed_records_followed_by_whole_ones_are_corruption(tmp_path: Path) -> None:
    """A page of the log lost in the middle, as when writeback persisted a later page."""
    plog_with(tmp_path, recs(1, 6)).close()
    path = seg(tmp_path, 1)
    data = path.read_bytes()
    second = 16 + RECORD
    path.write_bytes(data[:second] + bytes(2 * RECORD) + data[second + 2 * RECORD :])
    why = rf"{path.name}@{second}: zeroed record header, .*\(decree 4\) follows at offset 184"
    with pytest.raises(CorruptLog, match=why):
        Plog.open(tmp_path, fsync=False)


def test_a_sealed_segment_with_bytes_past_its_last_decree_is_corruption(tmp_path: Path) -> None:
    plog_with(tmp_path, recs(1, 4), segment_bytes=128).close()
    with open(seg(tmp_path, 1), "ab") as f:
        f.write(b"stray")
    with Plog.open(tmp_path, fsync=False) as p:
        assert decrees(list(p.replay(3))) == [3, 4]
        with pytest.raises(CorruptLog, match=f"{segment_name(1)}@128: 5 bytes follow decree 2"):
            list(p.replay(1))


@pytest.mark.parametrize("field", [3, 4, 12, 16, 55], ids=lambda f: f"byte{f}")
def test_flipped_byte_in_the_final_record_is_cut_as_torn(tmp_path: Path, field: int) -> None:
    plog_with(tmp_path, recs(1, 6)).close()
    path = seg(tmp_path, 1)
    last_start = path.stat().st_size - RECORD
    flip(path, last_start + field)
    with Plog.open(tmp_path, fsync=False) as p:
        assert (p.last_decree, p.report.truncated_bytes) == (5, RECORD)
        assert p.report.truncated_at == f"{path.name}@{last_start}"


@pytest.mark.parametrize("decree", [2, 4])
def test_a_whole_record_out_of_sequence_is_corruption(tmp_path: Path, decree: int) -> None:
    """Checksummed bytes were written whole, so a wrong decree is never a torn write."""
    plog_with(tmp_path, recs(1, 2)).close()
    path = seg(tmp_path, 1)
    _, payload = rec(decree)
    with open(path, "ab") as f:
        f.write(encode_record_header(decree, payload) + payload)
    with pytest.raises(CorruptLog, match=f"decree {decree} where decree 3 belongs"):
        Plog.open(tmp_path, fsync=False)


def test_a_segment_header_that_contradicts_its_name_is_corruption(tmp_path: Path) -> None:
    plog_with(tmp_path, recs(1, 5), segment_bytes=128).close()
    seg(tmp_path, 3).rename(seg(tmp_path, 4))
    with pytest.raises(CorruptLog, match=f"{segment_name(4)}@0: the header says first decree 3"):
        Plog.open(tmp_path, fsync=False)


# -- damage met while reading ----------------------------------------------------------------


def test_replay_meets_corruption_in_an_earlier_segment(tmp_path: Path) -> None:
    plog_with(tmp_path, recs(1, 8), segment_bytes=128).close()
    flip(seg(tmp_path, 3), 16 + 20)  # decree 3's payload; only the last segment is checked
    with Plog.open(tmp_path, segment_bytes=128, fsync=False) as p:
        got = []
        with pytest.raises(CorruptLog, match=f"{segment_name(3)}@16: bad checksum"):
            for record in p.replay(1):
                got.append(record)
        assert got == recs(1, 2)
        assert list(p.replay(5)) == recs(5, 8)


def test_a_sealed_segment_that_ends_early_is_a_hole(tmp_path: Path) -> None:
    plog_with(tmp_path, recs(1, 8), segment_bytes=128).close()
    os.truncate(seg(tmp_path, 3), 16 + RECORD)  # decree 4 is gone, log.5 follows
    with (
        Plog.open(tmp_path, segment_bytes=128, fsync=False) as p,
        pytest.raises(CorruptLog, match=f"{segment_name(3)}@72: .*ends before decree 4"),
    ):
        list(p.replay(1))


def test_replay_from_a_collected_decree_is_corruption(tmp_path: Path) -> None:
    with plog_with(tmp_path, recs(1, 10), segment_bytes=THREE_PER_SEGMENT) as p:
        p.gc(6)
        with pytest.raises(CorruptLog, match="needs decree 6 but the log starts at 7"):
            p.replay(6)
        assert decrees(list(p.replay(7))) == [7, 8, 9, 10]


# -- GC --------------------------------------------------------------------------------------


def test_gc_deletes_whole_segments_at_or_below_the_floor_never_the_current(
    tmp_path: Path,
) -> None:
    with Plog.open(tmp_path, fsync=False) as p:
        assert p.gc(100) == []  # empty
    with plog_with(tmp_path, recs(1, 10), segment_bytes=THREE_PER_SEGMENT) as p:
        assert p.segments() == [seg(tmp_path, d) for d in (1, 4, 7, 10)]
        assert p.gc(0) == []
        assert p.gc(2) == []  # log.1 holds 1..3
        assert p.gc(3) == [seg(tmp_path, 1)]
        assert (p.first_decree, seg(tmp_path, 1).exists()) == (4, False)
        assert p.gc(5) == []
        assert p.gc(9) == [seg(tmp_path, 4), seg(tmp_path, 7)]  # oldest first
        assert p.gc(10**9) == []  # log.10 is the current segment
        assert p.segments() == [seg(tmp_path, 10)] == sorted(tmp_path.iterdir())
        assert p.first_decree == 10
        p.append(recs(11, 13))  # 10..12 fill log.10; 13 starts log.13
        assert p.gc(12) == [seg(tmp_path, 10)]
    with Plog.open(tmp_path, fsync=False) as p:
        assert (p.first_decree, p.last_decree) == (13, 13)


# -- the reader ------------------------------------------------------------------------------


def test_reader_crosses_segments_within_byte_and_decree_limits(tmp_path: Path) -> None:
    p = plog_with(tmp_path, recs(1, 10), segment_bytes=THREE_PER_SEGMENT)
    with p, p.reader(2) as r:
        assert r.read(100, 10) == recs(2, 4)  # 80 bytes < 100, the third reaches it
        assert r.read(1, 10) == [rec(5)]  # at least one record
        assert r.read(10_000, 7) == recs(6, 7)
        assert r.read(10_000, 7) == []
        assert r.read(10_000, 100) == recs(8, 10)
        assert (r.read(10_000, 100), r.next_decree) == ([], 11)
        p.append(recs(11, 12))
        assert r.read(10_000, 100) == recs(11, 12)


@pytest.mark.parametrize("segment_bytes", [1 << 20, 1], ids=["same segment", "new segment"])
def test_a_record_being_written_is_invisible_until_its_write_completes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, segment_bytes: int
) -> None:
    p = plog_with(tmp_path, [rec(1)], segment_bytes=segment_bytes)
    with p, p.reader(1) as r:
        assert r.read(1 << 20, 100) == [rec(1)]
        seen = []
        write = plog_mod._write_fully

        def write_in_two_halves(fd: int, data: bytes, offset: int) -> None:
            half = len(data) // 2
            write(fd, data[:half], offset)
            seen.append(r.read(1 << 20, 100))  # the reader runs mid-write
            write(fd, data[half:], offset + half)

        monkeypatch.setattr(plog_mod, "_write_fully", write_in_two_halves)
        p.append(recs(2, 3))
        assert seen and all(batch == [] for batch in seen)  # one write per segment
        assert r.read(1 << 20, 100) == recs(2, 3)


def test_durable_decree_and_what_a_reader_sees_follow_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Plog.open(tmp_path / "nosync", fsync=False) as p:
        p.append(recs(1, 2))
        assert p.durable_decree == 2
        assert p.reader(1).read(1 << 20, 100) == recs(1, 2)

    synced: list[int] = []
    fdatasync = os.fdatasync

    def counting_fdatasync(fd: int) -> None:
        synced.append(fd)
        fdatasync(fd)

    monkeypatch.setattr(os, "fdatasync", counting_fdatasync)
    with Plog.open(tmp_path / "sync", segment_bytes=128) as p, p.reader(1) as r:
        p.append(recs(1, 3))  # rolls: log.1 holds 1..2, log.3 holds 3
        assert (p.last_decree, p.durable_decree) == (3, 0)
        assert r.read(1 << 20, 100) == []  # a crash could still take these back
        p.sync()
        assert len(synced) == 2  # both segments the group touched
        assert p.durable_decree == 3
        assert r.read(1 << 20, 100) == recs(1, 3)
        p.sync()
        assert len(synced) == 2  # nothing new to sync


def test_a_reader_thread_follows_a_writer_that_rolls_and_syncs(tmp_path: Path) -> None:
    records = recs(1, 600)
    got: list[tuple[int, bytes]] = []
    failure: list[BaseException] = []
    with Plog.open(tmp_path, segment_bytes=2048) as p:
        reader = p.reader(1)

        def follow() -> None:
            deadline = time.monotonic() + 20
            try:
                while len(got) < len(records) and time.monotonic() < deadline:
                    got.extend(reader.read(1000, len(records)))
            except BaseException as exc:
                failure.append(exc)
            finally:
                reader.close()

        thread = threading.Thread(target=follow)
        thread.start()
        for i in range(0, len(records), 6):
            p.append(records[i : i + 6])
            p.sync()
        thread.join()
    assert failure == []
    assert got == records
    assert len(p.segments()) > 10


def test_a_reader_behind_gc_gets_log_truncated(tmp_path: Path) -> None:
    with plog_with(tmp_path, recs(1, 10), segment_bytes=THREE_PER_SEGMENT) as p:
        r = p.reader(2)
        assert r.read(1, 10) == [rec(2)]
        p.gc(6)
        with pytest.raises(LogTruncated) as caught:
            r.read(1 << 20, 10)
        assert (caught.value.wanted, caught.value.first_available) == (3, 7)
        with pytest.raises(LogTruncated):
            p.reader(6)
        assert p.reader(7).read(1 << 20, 10) == recs(7, 10)
    with Plog.open(tmp_path / "empty", fsync=False) as p:
        r = p.reader(1)
        p.append([rec(100)])  # an empty plog may start anywhere
        with pytest.raises(LogTruncated):
            r.read(1 << 20, 100)


def test_skip_corrupt_moves_to_the_next_segment_and_names_what_it_skipped(
    tmp_path: Path,
) -> None:
    plog_with(tmp_path, recs(1, 10), segment_bytes=THREE_PER_SEGMENT).close()
    flip(seg(tmp_path, 4), 16 + RECORD + 20)  # decree 5's payload
    with Plog.open(tmp_path, segment_bytes=THREE_PER_SEGMENT, fsync=False) as p:
        r = p.reader(1)
        assert r.read(1 << 20, 100) == recs(1, 4)  # the good records before the damage
        with pytest.raises(CorruptLog, match=f"{segment_name(4)}@72: bad checksum"):
            r.read(1 << 20, 100)
        assert r.next_decree == 5
        assert r.skip_corrupt() == (5, 6)
        assert r.read(1 << 20, 100) == recs(7, 10)
        with pytest.raises(CorruptLog, match="last segment"):
            r.skip_corrupt()


# -- failures of the disk and of the caller --------------------------------------------------


def test_a_failed_fsync_refuses_writes_until_reopened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = Plog.open(tmp_path)
    p.append([rec(1)])

    def failing_fdatasync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", failing_fdatasync)
    with pytest.raises(OSError, match="Input/output"):
        p.sync()
    monkeypatch.undo()
    assert p.durable_decree == 0
    # A retried fsync could succeed after the kernel dropped the dirty pages.
    with pytest.raises(OSError, match="reopen"):
        p.sync()
    with pytest.raises(OSError, match="reopen"):
        p.append([rec(2)])
    p.close()
    with Plog.open(tmp_path) as p:
        assert p.last_decree == 1


def test_append_during_sync_breaks_the_contract(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Plog.open(tmp_path) as p:
        p.append([rec(1)])
        fdatasync = os.fdatasync

        def fdatasync_and_append(fd: int) -> None:
            fdatasync(fd)
            p.append([rec(2)])

        monkeypatch.setattr(os, "fdatasync", fdatasync_and_append)
        with pytest.raises(InvariantError, match="during sync"):
            p.sync()
        monkeypatch.undo()
        p.sync()
        assert p.durable_decree == 1


# -- preallocation (fsync on) ----------------------------------------------------------------


def test_the_last_segment_is_zero_filled_ahead_and_cut_back_at_close(tmp_path: Path) -> None:
    step = plog_mod.PREALLOCATE_BYTES
    with Plog.open(tmp_path) as p:
        p.append(recs(1, 3))
        p.sync()
        data = seg(tmp_path, 1).read_bytes()
        end = 16 + 3 * RECORD
        assert len(data) == end + step and data[end:] == bytes(step)
        p.append(recs(4, 5))
        p.sync()  # more than half a step is still ahead: no new zeros
        assert seg(tmp_path, 1).stat().st_size == end + step
    assert seg(tmp_path, 1).stat().st_size == 16 + 5 * RECORD
    with Plog.open(tmp_path) as p:
        assert p.report.truncated_bytes == 0 and p.last_decree == 5


def test_after_a_crash_the_zeros_are_cut_and_every_synced_record_is_kept(tmp_path: Path) -> None:
    crashed = tmp_path / "crashed"
    with Plog.open(tmp_path / "live") as p:
        p.append(recs(1, 4))
        p.sync()
        # What a crash leaves on disk: the files as they are now, never closed.
        crashed.mkdir()
        for path in (tmp_path / "live").iterdir():
            (crashed / path.name).write_bytes(path.read_bytes())
    with Plog.open(crashed) as p:
        assert p.last_decree == 4
        assert p.report.truncated_bytes == plog_mod.PREALLOCATE_BYTES
        p.append(recs(5, 6))
        p.sync()
        assert list(p.replay(1)) == recs(1, 6)


def test_a_rolled_segment_is_cut_to_its_records_before_the_next_one_starts(
    tmp_path: Path,
) -> None:
    with Plog.open(tmp_path, segment_bytes=THREE_PER_SEGMENT) as p, p.reader(1) as r:
        for d in range(1, 8):
            p.append([rec(d)])
            p.sync()
            assert r.read(1 << 20, 100) == [rec(d)]  # read-ahead saw zeros where d now is
        assert [path.stat().st_size for path in p.segments()[:2]] == [16 + 3 * RECORD] * 2
        assert p.segments()[-1].stat().st_size > 16 + RECORD  # the live one, zeros ahead


def test_zeros_never_reach_past_the_size_at_which_a_segment_rolls(tmp_path: Path) -> None:
    with Plog.open(tmp_path, segment_bytes=THREE_PER_SEGMENT) as p:
        p.append(recs(1, 1))
        p.sync()
        assert seg(tmp_path, 1).stat().st_size == THREE_PER_SEGMENT
        p.append(recs(2, 2))
        p.sync()
        assert seg(tmp_path, 1).stat().st_size == THREE_PER_SEGMENT
        p.append(recs(3, 3))  # the record that fills the segment runs past 180: no zeros after
        p.sync()
        assert seg(tmp_path, 1).stat().st_size == 16 + 3 * RECORD
