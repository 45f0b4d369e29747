"""The private mutation log (plog) of one partition: on-disk format, recovery, GC and cursor.

The plog is the partition's write-ahead log (RocksDB's own WAL is off) and the source that
duplication reads, so this module owns two promises: every write acknowledged after `sync()`
survives a crash, and a damaged record is reported, never skipped in silence.

Format. A directory of segment files `log.<first decree, 20 digits>`, each a 16-byte header
(b"DKVPLOG1", u64 BE first decree) followed by records

    [payload length: u32 BE][zlib.crc32 of (decree bytes + payload): u32 BE][decree: u64 BE]
    [payload]

whose decrees are contiguous within and across segments. The payload is opaque here (it is
a `mutation` encoding).

Preallocation. With fsync on, the last segment is kept zero-filled ahead of its tail in
`PREALLOCATE_BYTES` steps, up to the size at which it rolls (written zeros, not fallocate's
unwritten extents), and records are written over them with pwrite. An fdatasync then
flushes data alone, with no inode size to journal: ~30% less time per sync on this
machine's ext4 (BENCHMARKS.md), paid for by writing the log's bytes twice, once as zeros.
A segment is cut back to its records before the next one starts and at close; after a
crash, open cuts the zeros like any torn tail.

Layout of the module: the pure core first (encode, check and scan records in a buffer, and
the torn-tail-or-corruption verdict), then the shell: `Plog`, the writer, and `PlogReader`,
duplication's cursor.

Threads. The writer side (`append`, `sync`, `gc`, `close`) is driven by one owner at a time:
`sync()` may run in a worker thread, but never while `append()` or `close()` runs (the
partition appends a group, then syncs it; an append during a sync is a bug and raises
InvariantError). `gc()` may overlap `append()`/`sync()`. Readers run in any thread at any time:
they only read the writer's immutable segment tuple and its decree counters, and use their
own read-only file descriptors.
"""

import bisect
import mmap
import os
import re
import struct
import threading
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from dupkv.base.errors import BadInput, CorruptLog, InvariantError

MAGIC = b"DKVPLOG1"
SEGMENT_HEADER = struct.Struct(">8sQ")
RECORD_HEADER = struct.Struct(">IIQ")
_DECREE = struct.Struct(">Q")
MAX_PAYLOAD_BYTES = 64 << 20
MAX_SEGMENT_BYTES = 1 << 30
DEFAULT_SEGMENT_BYTES = 32 << 20
# A reader fetches at least this much per pread: many small records per system call, while
# memory stays bounded by max(this, one record).
READ_AHEAD_BYTES = 256 << 10
# replay() hands out records in batches of about this many payload bytes.
REPLAY_BATCH_BYTES = 1 << 20
# With fsync on, the last segment is zero-filled this far ahead in steps of this size.
PREALLOCATE_BYTES = 1 << 20
_ZEROS = bytes(PREALLOCATE_BYTES)

_SEGMENT_NAME = re.compile(r"log\.(\d{20})")
_NONZERO = re.compile(rb"[^\x00]")


# -- pure core: the format -------------------------------------------------------------------


def segment_name(first_decree: int) -> str:
    return f"log.{first_decree:020d}"


def record_crc(decree: int, payload: bytes) -> int:
    return zlib.crc32(payload, zlib.crc32(_DECREE.pack(decree)))


def encode_record_header(decree: int, payload: bytes) -> bytes:
    """The 16 bytes before `payload` in its record (the payload is written as it is)."""
    return RECORD_HEADER.pack(len(payload), record_crc(decree, payload), decree)


def segment_header_problem(head: bytes, first_decree: int) -> str | None:
    """Why `head` is not the header of the segment named for `first_decree`; None if it is."""
    if len(head) < SEGMENT_HEADER.size:
        return f"{len(head)} bytes where a {SEGMENT_HEADER.size}-byte segment header belongs"
    magic, decree = SEGMENT_HEADER.unpack_from(head)
    if magic != MAGIC:
        return f"bad magic {magic!r}"
    if decree != first_decree:
        return f"the header says first decree {decree}, the file name says {first_decree}"
    return None


def record_problem(buf: bytes | mmap.mmap, pos: int, end: int, expected: int) -> str | None:
    """Why the record at buf[pos:] (data ending at `end`) is not decree `expected`; None if
    it is whole, checksums and has that decree."""
    if end - pos < RECORD_HEADER.size:
        return f"{end - pos} bytes where a {RECORD_HEADER.size}-byte record header belongs"
    length, crc, decree = RECORD_HEADER.unpack_from(buf, pos)
    if length > MAX_PAYLOAD_BYTES:
        return f"length {length} is over the {MAX_PAYLOAD_BYTES}-byte payload limit"
    start = pos + RECORD_HEADER.size
    if start + length > end:
        return f"a {length}-byte payload runs {start + length - end} bytes past the end of data"
    if record_crc(decree, buf[start : start + length]) != crc:
        if length == 0 and crc == 0:
            return "zeroed record header"
        return f"bad checksum (decree field {decree})"
    if decree != expected:
        return f"whole record with decree {decree} where decree {expected} belongs"
    return None


def _record_is_whole(buf: bytes | mmap.mmap, pos: int, end: int) -> bool:
    """True if the record at `pos` checksums (whatever its decree)."""
    if end - pos < RECORD_HEADER.size:
        return False
    _length, _crc, decree = RECORD_HEADER.unpack_from(buf, pos)
    problem = record_problem(buf, pos, end, decree)
    return problem is None


def find_valid_record(
    buf: bytes | mmap.mmap, start: int, end: int, after_decree: int
) -> tuple[int, int] | None:
    """(offset, decree) of the first record in buf[start:end], at any byte offset, that
    checksums and has a decree above `after_decree`; None if there is none.

    Python cannot afford a checksum, or even a loop turn, at every offset of a long tail, so
    the search jumps at C speed: to the next place where the leading bytes of a decree field
    match those that every possible decree shares (only so many records fit in the tail),
    and over runs of zeros (a tail the file system extended but never wrote), since a wanted
    decree field holds a nonzero byte.
    """
    highest = after_decree + (end - start) // RECORD_HEADER.size + 1
    lowest_bytes, highest_bytes = _DECREE.pack(after_decree + 1), _DECREE.pack(highest)
    shared = 0
    while shared < _DECREE.size and lowest_bytes[shared] == highest_bytes[shared]:
        shared += 1
    prefix = lowest_bytes[:shared]
    last = end - RECORD_HEADER.size
    pos = start
    while pos <= last:
        if prefix:
            found_at = buf.find(prefix, pos + 8, end)
            if found_at < 0 or found_at - 8 > last:
                return None
            pos = found_at - 8
        length, crc, decree = RECORD_HEADER.unpack_from(buf, pos)
        body = pos + RECORD_HEADER.size
        if (
            after_decree < decree <= highest
            and length <= min(MAX_PAYLOAD_BYTES, last - pos)
            and record_crc(decree, buf[body : body + length]) == crc
        ):
            return pos, decree
        if decree == 0:
            nonzero = _NONZERO.search(buf, pos + 8, end)
            if nonzero is None:
                return None
            # The first offset whose decree field (bytes 8..15) reaches that nonzero byte.
            pos = max(pos + 1, nonzero.start() - 15)
        else:
            pos += 1
    return None


@dataclass(frozen=True)
class TailVerdict:
    """What open-time recovery keeps of the last segment: buf[:good_end], whose last record
    is `last_decree` (first decree - 1 when it holds none); `problem` says why the rest goes."""

    good_end: int
    last_decree: int
    problem: str | None


def judge_last_segment(buf: bytes | mmap.mmap, end: int, first_decree: int) -> TailVerdict:
    """Scan the last segment (buf[:end]) fully and decide: clean, torn tail, or corrupt.

    A crash while writing leaves a torn tail: a prefix of the last write, possibly followed
    by bytes the file system allocated but never wrote (zeros). Nothing valid can follow a
    torn record, so a record that checksums with a higher decree after the first bad one
    means damage in data that may have been acknowledged: raise CorruptLog, never truncate.
    A bad record that itself checksums (only its decree is wrong) is never a torn write.
    """
    name = segment_name(first_decree)
    if end < SEGMENT_HEADER.size:
        return TailVerdict(0, first_decree - 1, f"{end}-byte file, shorter than its header")
    problem = segment_header_problem(buf[: SEGMENT_HEADER.size], first_decree)
    if problem is not None:
        if buf[: SEGMENT_HEADER.size] != bytes(SEGMENT_HEADER.size):
            raise CorruptLog(f"{name}@0: {problem}")
        good_end, last_decree, problem = 0, first_decree - 1, "zeroed segment header"
    else:
        good_end, last_decree = SEGMENT_HEADER.size, first_decree - 1
        while good_end < end:
            problem = record_problem(buf, good_end, end, last_decree + 1)
            if problem is not None:
                break
            good_end += RECORD_HEADER.size + RECORD_HEADER.unpack_from(buf, good_end)[0]
            last_decree += 1
        if problem is None:
            return TailVerdict(good_end, last_decree, None)
        if _record_is_whole(buf, good_end, end):
            raise CorruptLog(f"{name}@{good_end}: {problem}")
    found = find_valid_record(buf, good_end, end, last_decree)
    if found is not None:
        offset, decree = found
        raise CorruptLog(
            f"{name}@{good_end}: {problem}, but a whole record (decree {decree}) follows at "
            f"offset {offset}: damage in the middle of the log, not a torn tail"
        )
    return TailVerdict(good_end, last_decree, problem)


# -- shell: the writer ---------------------------------------------------------------------


@dataclass(frozen=True)
class OpenReport:
    """What open() found, for the server log."""

    segments: int
    first_decree: int  # 0 when empty
    last_decree: int  # 0 when empty
    truncated_bytes: int
    # "log.<20 digits>@<offset>": the first byte dropped (@0: the segment was removed)
    truncated_at: str | None


class LogTruncated(Exception):
    """A reader asked for decrees that GC already removed (an operating error, not damage)."""

    def __init__(self, wanted: int, first_available: int) -> None:
        super().__init__(
            f"decree {wanted} is no longer in the plog (GC removed it); "
            f"the first available decree is {first_available}"
        )
        self.wanted = wanted
        self.first_available = first_available


@dataclass(frozen=True)
class _Segment:
    first_decree: int
    path: Path


def _corrupt(path: Path, offset: int, why: str) -> CorruptLog:
    return CorruptLog(f"plog {path.parent}: {path.name}@{offset}: {why}")


def _write_fully(fd: int, data: bytes, offset: int) -> None:
    """One pwrite(2) in practice; loops only if the kernel writes less (at most 2 GiB)."""
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        if n <= 0:
            raise OSError(f"write returned {n} with {len(view)} bytes left")
        view = view[n:]
        offset += n


class _Closing:
    """`with` support for the classes below, which all end with close()."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Plog(_Closing):
    """The write-ahead log of one partition. Make one with `Plog.open()`."""

    def __init__(
        self,
        directory: Path,
        dir_fd: int,
        *,
        segment_bytes: int,
        fsync: bool,
        segments: tuple[_Segment, ...],
        last_decree: int,
        tail_bytes: int,
        report: OpenReport,
    ) -> None:
        self.directory = directory
        self.report = report
        self._dir_fd = dir_fd
        self._segment_bytes = segment_bytes
        self._fsync = fsync
        # Replaced, never mutated, so a reader's snapshot stays valid; the lock orders the
        # replacements by append (roll) and gc.
        self._segs = segments
        self._segs_lock = threading.Lock()
        self._last_decree = last_decree
        self._durable_decree = last_decree
        self._tail_bytes = tail_bytes  # where the next record goes in the last segment
        self._alloc_bytes = tail_bytes  # the last segment's size: records, then zeros
        self._fd: int | None = None
        if segments:
            self._fd = os.open(segments[-1].path, os.O_WRONLY)
        # fds written since the last sync (the current one, and a rolled one until synced).
        self._unsynced: list[int] = []
        self._dir_dirty = False
        self._syncing = False
        self._failed: str | None = None
        self._closed = False

    # -- open and recovery -------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        fsync: bool = True,
    ) -> "Plog":
        """Open (creating the directory if missing) and recover the plog at `path`.

        Checks every segment's name and header, scans the last segment fully and cuts a
        torn tail; earlier segments are verified as they are read, so open stays fast.
        Raises CorruptLog for damage that is not a torn tail.
        """
        if not 1 <= segment_bytes <= MAX_SEGMENT_BYTES:
            raise BadInput(f"segment_bytes {segment_bytes}: expected 1 to {MAX_SEGMENT_BYTES}")
        directory = Path(path)
        if not directory.is_dir():
            directory.mkdir(parents=True)
            if fsync:
                fsync_dir(directory.parent)
        segments = _list_segments(directory)
        for seg in segments[:-1]:
            with open(seg.path, "rb") as f:
                problem = segment_header_problem(f.read(SEGMENT_HEADER.size), seg.first_decree)
            if problem is not None:
                raise _corrupt(seg.path, 0, problem)

        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            truncated_bytes = 0
            truncated_at: str | None = None
            removed = False
            last_decree = tail_bytes = 0
            while segments:
                seg = segments[-1]
                size, verdict = _judge_file(seg)
                if verdict.last_decree >= seg.first_decree:
                    if verdict.good_end < size:
                        _truncate(seg.path, verdict.good_end, fsync)
                        truncated_bytes += size - verdict.good_end
                        truncated_at = f"{seg.path.name}@{verdict.good_end}"
                    elif fsync:
                        # What a crashed process left in the page cache becomes durable before
                        # anyone replays or ships it.
                        _fsync_file(seg.path)
                    last_decree, tail_bytes = verdict.last_decree, verdict.good_end
                    break
                # Not one whole record: the process stopped while creating this segment.
                seg.path.unlink()
                removed = True
                truncated_bytes += size
                truncated_at = f"{seg.path.name}@0"
                segments.pop()
            if removed and fsync:
                os.fsync(dir_fd)
            report = OpenReport(
                segments=len(segments),
                first_decree=segments[0].first_decree if segments else 0,
                last_decree=last_decree,
                truncated_bytes=truncated_bytes,
                truncated_at=truncated_at,
            )
            return cls(
                directory,
                dir_fd,
                segment_bytes=segment_bytes,
                fsync=fsync,
                segments=tuple(segments),
                last_decree=last_decree,
                tail_bytes=tail_bytes,
                report=report,
            )
        except BaseException:
            os.close(dir_fd)
            raise

    # -- state -------------------------------------------------------------------------

    @property
    def first_decree(self) -> int:
        """The oldest decree still in the log; 0 when empty."""
        segs = self._segs
        return segs[0].first_decree if segs else 0

    @property
    def last_decree(self) -> int:
        """The newest decree written; 0 when empty."""
        return self._last_decree

    @property
    def durable_decree(self) -> int:
        """The newest decree written and fsynced (with fsync=False: written)."""
        return self._durable_decree

    def segments(self) -> list[Path]:
        return [seg.path for seg in self._segs]

    def size_bytes(self) -> int:
        """Bytes of the log's segments, not counting the zeros preallocated ahead."""
        segs = self._segs
        if not segs:
            return 0
        return sum(seg.path.stat().st_size for seg in segs[:-1]) + self._tail_bytes

    # -- writing -----------------------------------------------------------------------

    def append(self, records: Sequence[tuple[int, bytes]]) -> int:
        """Write a group of records; returns the bytes written. Durable after sync().

        Decrees must continue last_decree + 1, + 2, ... (an empty plog takes any first decree
        from 1). The group goes out as one write (one per segment if it rolls): a segment
        rolls before a record once it has reached segment_bytes.
        """
        self._check_writable()
        if self._syncing:
            raise InvariantError("plog append() during sync(): the owner must wait for sync")
        if not records:
            return 0
        expected = self._last_decree + 1 if self._last_decree else records[0][0]
        if expected < 1:
            raise InvariantError(f"plog append: decree {expected}, decrees start at 1")
        for i, (decree, payload) in enumerate(records):
            if decree != expected + i:
                raise InvariantError(
                    f"plog append: decree {decree} at position {i}, expected {expected + i}"
                )
            if len(payload) > MAX_PAYLOAD_BYTES:
                raise InvariantError(
                    f"plog append: decree {decree} has a {len(payload)}-byte payload, "
                    f"over the {MAX_PAYLOAD_BYTES}-byte limit"
                )

        try:
            written = 0
            size = self._tail_bytes if self._fd is not None else None
            parts: list[bytes] = []
            new_segment: int | None = None  # first decree of a segment to create for `parts`
            for decree, payload in records:
                if size is None or size >= self._segment_bytes:
                    if parts:
                        written += self._write_run(new_segment, parts)
                    new_segment = decree
                    parts = [SEGMENT_HEADER.pack(MAGIC, decree)]
                    size = SEGMENT_HEADER.size
                parts.append(encode_record_header(decree, payload))
                parts.append(payload)
                size += RECORD_HEADER.size + len(payload)
            written += self._write_run(new_segment, parts)
        except OSError as exc:
            # The file may now end in a partial group: refuse writes until a reopen cuts it.
            self._failed = f"append failed: {exc}"
            raise
        self._last_decree = records[-1][0]
        if not self._fsync:
            self._durable_decree = self._last_decree
        return written

    def mark_durable(self) -> None:
        """Count every record appended so far as durable: another log holds them fsynced
        (the replica server's shared log, dupkv.storage.slog). Readers see them from now on;
        a later sync() (or close()) makes them durable here as well."""
        self._check_writable()
        self._durable_decree = self._last_decree

    def _write_run(self, new_segment: int | None, parts: list[bytes]) -> int:
        data = b"".join(parts)
        if new_segment is not None:
            self._roll(new_segment)
        assert self._fd is not None
        _write_fully(self._fd, data, self._tail_bytes)
        self._tail_bytes += len(data)
        self._alloc_bytes = max(self._alloc_bytes, self._tail_bytes)
        if self._fsync and self._fd not in self._unsynced:
            self._unsynced.append(self._fd)
        return len(data)

    def _roll(self, first_decree: int) -> None:
        old = self._fd
        if old is not None and self._fsync:
            # Seal the old segment before the new one gets any data: otherwise writeback could
            # persist the new segment's records while the old segment's tail is torn (or still
            # zeros), and open (which checks only the last segment) would not see the hole.
            trim = self._alloc_bytes > self._tail_bytes
            if trim:
                os.ftruncate(old, self._tail_bytes)
            if trim or old in self._unsynced:
                os.fdatasync(old)
            if old in self._unsynced:
                self._unsynced.remove(old)
        path = self.directory / segment_name(first_decree)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        self._fd = fd
        # A rolled segment with unsynced data keeps its fd until sync() has flushed it.
        if old is not None and old not in self._unsynced:
            os.close(old)
        self._tail_bytes = self._alloc_bytes = 0
        self._dir_dirty = True
        with self._segs_lock:
            self._segs = (*self._segs, _Segment(first_decree, path))

    def sync(self) -> None:
        """Make every appended record durable: fdatasync each segment written since the last
        sync (a group may have rolled) and the directory after a segment was created.

        Blocking: call it from a worker thread, and do not append or close until it returns.
        A failed fsync may have dropped dirty pages the kernel then forgets, so a retry could
        succeed without the data: after one failure the plog refuses writes until reopened.
        """
        self._check_writable()
        if not self._fsync:
            return
        self._syncing = True
        try:
            target = self._last_decree
            dir_dirty, self._dir_dirty = self._dir_dirty, False
            try:
                self._preallocate()
                fds = list(self._unsynced)
                for fd in fds:
                    os.fdatasync(fd)
                if dir_dirty:
                    os.fsync(self._dir_fd)
            except OSError as exc:
                self._failed = f"fsync failed: {exc}"
                raise
            for fd in fds:
                self._unsynced.remove(fd)
                if fd != self._fd:
                    os.close(fd)
            self._durable_decree = target
        finally:
            self._syncing = False

    def _preallocate(self) -> None:
        """Keep at least half a step of zeros after the tail, never past the size at which
        the segment rolls; the sync that follows makes them and the new size durable along
        with the group."""
        fd = self._fd
        alloc = self._alloc_bytes
        if (
            fd is None
            or alloc >= self._segment_bytes
            or alloc - self._tail_bytes >= PREALLOCATE_BYTES // 2
        ):
            return
        step = min(PREALLOCATE_BYTES, self._segment_bytes - alloc)
        try:
            _write_fully(fd, _ZEROS[:step], alloc)
        except OSError:
            return  # no room for zeros (perhaps for records either): appends extend the file
        self._alloc_bytes = alloc + step
        if fd not in self._unsynced:
            self._unsynced.append(fd)

    def _check_writable(self) -> None:
        if self._closed:
            raise InvariantError(f"plog {self.directory} is closed")
        if self._failed is not None:
            raise OSError(f"plog {self.directory}: {self._failed}; reopen it to recover")

    # -- GC ----------------------------------------------------------------------------

    def gc(self, floor_decree: int) -> list[Path]:
        """Delete, oldest first, the segments whose every decree is <= floor_decree; never
        the current (last) segment. A segment's last decree is the next one's first - 1.
        Returns the deleted paths. Readers already inside a deleted segment get LogTruncated.
        """
        if self._closed:
            raise InvariantError(f"plog {self.directory} is closed")
        with self._segs_lock:
            segs = self._segs
            n = 0
            while n < len(segs) - 1 and segs[n + 1].first_decree - 1 <= floor_decree:
                n += 1
            if n == 0:
                return []
            doomed = segs[:n]
            # Readers see the new first decree before any file disappears.
            self._segs = segs[n:]
        for seg in doomed:
            seg.path.unlink(missing_ok=True)
        self._dir_dirty = True  # the next sync() makes the deletions durable
        return [seg.path for seg in doomed]

    # -- reading -----------------------------------------------------------------------

    def replay(self, from_decree: int) -> Iterator[tuple[int, bytes]]:
        """The records with decree >= from_decree, in order, every one verified.

        Raises CorruptLog now if the log is non-empty and from_decree is below its first
        decree (the records the caller needs are gone), and while iterating at any damage.
        """
        if from_decree < 1:
            raise InvariantError(f"plog replay from decree {from_decree}: decrees start at 1")
        first = self.first_decree
        if first and from_decree < first:
            raise CorruptLog(
                f"plog {self.directory}: replay needs decree {from_decree} but the log starts "
                f"at {first}"
            )
        return self._replay(from_decree)

    def _replay(self, from_decree: int) -> Iterator[tuple[int, bytes]]:
        reader = PlogReader(self, from_decree, lambda: self._last_decree)
        try:
            while True:
                try:
                    batch = reader.read(REPLAY_BATCH_BYTES, self._last_decree)
                except LogTruncated as exc:
                    raise CorruptLog(f"plog {self.directory}: replay: {exc}") from exc
                if not batch:
                    return
                yield from batch
        finally:
            reader.close()

    def reader(self, start_decree: int) -> "PlogReader":
        """A cursor from start_decree that sees only durable records (durable_decree), so
        duplication never ships a write that a crash could still take back."""
        return PlogReader(self, start_decree, lambda: self._durable_decree)

    # -- lifecycle ---------------------------------------------------------------------

    def close(self) -> None:
        """Sync what is unsynced (with fsync=True) and release the files."""
        if self._closed:
            return
        try:
            if self._fsync and self._failed is None:
                if self._unsynced:
                    self.sync()
                if self._fd is not None and self._alloc_bytes > self._tail_bytes:
                    # Leave the segment as long as its records, as a roll would.
                    os.ftruncate(self._fd, self._tail_bytes)
                    os.fdatasync(self._fd)
        finally:
            self._closed = True
            for fd in {*self._unsynced, *([self._fd] if self._fd is not None else [])}:
                os.close(fd)
            self._unsynced.clear()
            self._fd = None
            os.close(self._dir_fd)


def _list_segments(directory: Path) -> list[_Segment]:
    """The segment files, oldest first; other file names are not ours and are left alone."""
    segments = []
    for entry in directory.iterdir():
        m = _SEGMENT_NAME.fullmatch(entry.name)
        if m is None:
            continue
        first = int(m.group(1))
        if first < 1:
            raise _corrupt(entry, 0, "a segment cannot start at decree 0")
        segments.append(_Segment(first, entry))
    segments.sort(key=lambda seg: seg.first_decree)
    return segments


def cut_after(path: str | os.PathLike[str], keep_decree: int) -> tuple[int, int]:
    """Cut the closed plog at `path` right after decree `keep_decree`; returns (segments
    removed, bytes cut). For recovery from the shared log, which holds every record after
    `keep_decree` and none before it may be missing here.

    Whatever follows `keep_decree` goes, valid or not: after a machine crash the unsynced
    part of a plog may hold holes followed by whole records, which open() would call damage.
    Segments that start after `keep_decree` are removed; the one holding it is verified up
    to it (CorruptLog if it is damaged or ends before it) and truncated after it.
    Idempotent, so a crash while cutting is recovered by cutting again.
    """
    directory = Path(path)
    if not directory.is_dir():
        return 0, 0
    removed = cut = 0
    holder: _Segment | None = None
    for seg in reversed(_list_segments(directory)):
        if seg.first_decree <= keep_decree:
            holder = seg
            break
        cut += seg.path.stat().st_size
        seg.path.unlink()
        removed += 1
    if removed:
        fsync_dir(directory)
    if holder is not None:
        end, size = _end_of_decree(holder, keep_decree)
        if end < size:
            _truncate(holder.path, end, fsync=True)
            cut += size - end
    return removed, cut


def _end_of_decree(seg: _Segment, decree: int) -> tuple[int, int]:
    """(offset just past `decree`'s record, file size) in `seg`, every record before it
    verified; CorruptLog if the segment is damaged or ends before `decree`."""
    with open(seg.path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        problem = (
            segment_header_problem(f.read(SEGMENT_HEADER.size), seg.first_decree)
            if size >= SEGMENT_HEADER.size
            else f"{size}-byte file, shorter than its header"
        )
        if problem is not None:
            raise _corrupt(seg.path, 0, f"{problem}; decrees up to {decree} were expected")
        with mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ) as buf:
            pos = SEGMENT_HEADER.size
            for expected in range(seg.first_decree, decree + 1):
                problem = record_problem(buf, pos, size, expected)
                if problem is not None:
                    raise _corrupt(
                        seg.path, pos, f"{problem}; decrees up to {decree} were expected"
                    )
                pos += RECORD_HEADER.size + RECORD_HEADER.unpack_from(buf, pos)[0]
    return pos, size


def _judge_file(seg: _Segment) -> tuple[int, TailVerdict]:
    with open(seg.path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return 0, judge_last_segment(b"", 0, seg.first_decree)
        # mmap: the page cache holds the segment, not the heap, however large it is.
        with mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ) as buf:
            try:
                return size, judge_last_segment(buf, size, seg.first_decree)
            except CorruptLog as exc:
                raise CorruptLog(f"plog {seg.path.parent}: {exc}") from None


def _truncate(path: Path, size: int, fsync: bool) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.ftruncate(fd, size)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- shell: the reader ---------------------------------------------------------------------


class _SegmentFile:
    """A read-only cursor over one segment: its own fd and a bounded read-ahead buffer."""

    def __init__(self, seg: _Segment, fd: int) -> None:
        self.seg = seg
        self.fd = fd
        self.offset = SEGMENT_HEADER.size
        self.next_decree = seg.first_decree
        self._buf = b""
        self._buf_at = 0

    @classmethod
    def open(cls, seg: _Segment) -> "_SegmentFile":
        cursor = cls(seg, os.open(seg.path, os.O_RDONLY))
        buf, rel = cursor._window(0, SEGMENT_HEADER.size)
        problem = segment_header_problem(buf[rel : rel + SEGMENT_HEADER.size], seg.first_decree)
        if problem is not None:
            cursor.close()
            raise _corrupt(seg.path, 0, problem)
        return cursor

    def _window(self, offset: int, n: int, fresh: bool = False) -> tuple[bytes, int]:
        """A buffer and the position in it of file offset `offset`, holding the next `n`
        bytes or all there are. Records are only ever added to a segment, but the last one
        may hold preallocated zeros where records go later: buffered bytes past the tail may
        be stale, so a record that does not check out there is read again (`fresh`)."""
        rel = offset - self._buf_at
        if not fresh and rel >= 0 and rel + n <= len(self._buf):
            return self._buf, rel
        self._buf = os.pread(self.fd, max(n, READ_AHEAD_BYTES), offset)
        self._buf_at = offset
        return self._buf, 0

    def _fail(self, why: str) -> CorruptLog:
        return _corrupt(self.seg.path, self.offset, why)

    def read(self, expected: int) -> bytes:
        """The payload of record `expected`, which must be next in this segment."""
        assert expected == self.next_decree, (expected, self.next_decree)
        buf, rel, problem = self._fetch(expected, fresh=False)
        if problem is not None:
            buf, rel, problem = self._fetch(expected, fresh=True)
            if problem is not None:
                raise self._fail(problem)
        start = rel + RECORD_HEADER.size
        length = RECORD_HEADER.unpack_from(buf, rel)[0]
        self.offset += RECORD_HEADER.size + length
        self.next_decree += 1
        return buf[start : start + length]

    def _fetch(self, expected: int, fresh: bool) -> tuple[bytes, int, str | None]:
        buf, rel = self._window(self.offset, RECORD_HEADER.size, fresh)
        if len(buf) == rel:
            return buf, rel, f"the segment ends before decree {expected}"
        if len(buf) - rel >= RECORD_HEADER.size:
            length = RECORD_HEADER.unpack_from(buf, rel)[0]
            if length <= MAX_PAYLOAD_BYTES:
                buf, rel = self._window(self.offset, RECORD_HEADER.size + length)
        return buf, rel, record_problem(buf, rel, len(buf), expected)

    def skip_to(self, decree: int) -> None:
        """Move to record `decree` by headers alone (payloads of skipped records unchecked)."""
        while self.next_decree < decree:
            buf, rel = self._window(self.offset, RECORD_HEADER.size)
            if len(buf) - rel < RECORD_HEADER.size or RECORD_HEADER.unpack_from(buf, rel)[2] != (
                self.next_decree
            ):
                buf, rel = self._window(self.offset, RECORD_HEADER.size, fresh=True)
            if len(buf) - rel < RECORD_HEADER.size:
                raise self._fail(f"the segment ends before decree {self.next_decree}")
            length, _crc, found = RECORD_HEADER.unpack_from(buf, rel)
            if length > MAX_PAYLOAD_BYTES or found != self.next_decree:
                raise self._fail(
                    f"bad record header (length {length}, decree {found}) where decree "
                    f"{self.next_decree} belongs"
                )
            self.offset += RECORD_HEADER.size + length
            self.next_decree += 1

    def check_ended(self) -> None:
        """A sealed segment ends right after the decree before the next segment's first."""
        size = os.fstat(self.fd).st_size
        if size != self.offset:
            raise self._fail(
                f"{size - self.offset} bytes follow decree {self.next_decree - 1}, the last "
                f"decree before the next segment"
            )

    def close(self) -> None:
        os.close(self.fd)


class PlogReader(_Closing):
    """Duplication's cursor over a plog: reads forward from `next_decree`, switching segments
    by itself, with its own read-only fds. Safe to use from another thread than the writer.

    It sees records up to a visible bound (a `Plog.reader()` sees durable records only), so
    a record being written is never looked at: "not yet", never an error.
    """

    def __init__(self, plog: Plog, start_decree: int, visible: Callable[[], int]) -> None:
        if start_decree < 1:
            raise InvariantError(f"plog reader from decree {start_decree}: decrees start at 1")
        first = plog.first_decree
        if first and start_decree < first:
            raise LogTruncated(start_decree, first)
        self._plog = plog
        self._visible = visible
        self.next_decree = start_decree
        self._cur: _SegmentFile | None = None
        self._snap: tuple[_Segment, ...] = ()
        self._firsts: list[int] = []

    def read(self, max_bytes: int, max_decree: int) -> list[tuple[int, bytes]]:
        """The next records with decree <= max_decree, stopping once their payload bytes
        reach max_bytes (at least one record when one is visible). Raises LogTruncated if
        next_decree was collected, CorruptLog (naming segment and offset) at damage."""
        if max_bytes < 1:
            raise InvariantError(f"plog reader: max_bytes {max_bytes} must be at least 1")
        # The bound first, then the segments: a segment is listed before its records count.
        bound = min(max_decree, self._visible())
        out: list[tuple[int, bytes]] = []
        total = 0
        while self.next_decree <= bound and total < max_bytes:
            try:
                payload = self._read_next()
            except (CorruptLog, LogTruncated, OSError):
                if not out:
                    raise
                # Hand over the good records; the next call meets the same error at once,
                # since next_decree stays at the record that failed.
                return out
            out.append((self.next_decree, payload))
            total += len(payload)
            self.next_decree += 1
        return out

    def _locate(self, decree: int) -> tuple[int, tuple[_Segment, ...]]:
        """Index of the segment holding `decree` in the current snapshot of the segments."""
        segs = self._plog._segs
        if segs is not self._snap:
            self._snap, self._firsts = segs, [seg.first_decree for seg in segs]
        i = bisect.bisect_right(self._firsts, decree) - 1
        if i < 0:
            raise LogTruncated(decree, self._firsts[0] if segs else 0)
        return i, segs

    def _read_next(self) -> bytes:
        decree = self.next_decree
        i, segs = self._locate(decree)
        seg = segs[i]
        cur = self._cur
        if cur is None or cur.seg.first_decree != seg.first_decree:
            if cur is not None:
                if cur.seg.first_decree < seg.first_decree == decree == cur.next_decree:
                    cur.check_ended()
                self._cur = None
                cur.close()
            try:
                cur = _SegmentFile.open(seg)
            except FileNotFoundError:
                first = self._plog.first_decree
                if decree < first:
                    raise LogTruncated(decree, first) from None
                raise _corrupt(seg.path, 0, "segment file is missing") from None
            self._cur = cur
            cur.skip_to(decree)
        return cur.read(decree)

    def skip_corrupt(self) -> tuple[int, int]:
        """FAIL_SKIP: give up on the rest of the current segment and move to the first record
        of the next one. Returns (first skipped decree, last skipped decree). Raises
        CorruptLog if there is no next segment to move to yet."""
        decree = self.next_decree
        if not self._plog._segs:
            raise InvariantError("plog reader: skip_corrupt() on an empty plog")
        i, segs = self._locate(decree)
        if i + 1 >= len(segs):
            raise _corrupt(segs[i].path, 0, f"cannot skip past decree {decree}: last segment")
        next_first = segs[i + 1].first_decree
        self._close_segment()
        self.next_decree = next_first
        return decree, next_first - 1

    def _close_segment(self) -> None:
        cur, self._cur = self._cur, None
        if cur is not None:
            cur.close()

    def close(self) -> None:
        self._close_segment()
