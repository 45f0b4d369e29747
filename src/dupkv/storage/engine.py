"""The RocksDB engine of one partition (a thin shell over rocksdict).

Owns the DB files: a data column family ("default") with Pegasus's key/value layout and a
meta column family ("pegasus_meta_cf") holding `pegasus_data_version` and
`pegasus_last_flushed_decree`. RocksDB's own WAL is off: the plog is the write-ahead log.

Why the replay point lives in the data column family: with the WAL off, what survives a
crash is what RocksDB flushed, and rocksdict can flush one column family at a time only. A
decree recorded in the meta CF could therefore be flushed ahead of (or behind) the data it
describes. Every write batch also puts an *apply marker* under the empty key of the data CF
(the empty key is never a user key: an encoded user key has at least its 2-byte header), so
the marker and the data it describes are always flushed together. The meta CF's
`pegasus_last_flushed_decree` is written after a completed flush and is a lower bound.
"""

import gc
import struct
from pathlib import Path
from typing import Any

from rocksdict import (
    BlockBasedOptions,
    Cache,
    DBCompressionType,
    Options,
    Rdict,
    ReadOptions,
    WriteBatch,
    WriteOptions,
)

from dupkv.storage.schema import DATA_VERSION

META_CF = "pegasus_meta_cf"
DATA_VERSION_KEY = b"pegasus_data_version"
LAST_FLUSHED_DECREE_KEY = b"pegasus_last_flushed_decree"
APPLY_MARKER_KEY = b""

_MARKER = struct.Struct(">QQ")  # applied decree, last mutation timestamp_us


class Engine:
    """One partition's RocksDB. All methods are synchronous and fast except `flush`."""

    def __init__(self, path: str | Path, *, block_cache_bytes: int = 64 << 20) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        opts = Options(raw_mode=True)
        opts.create_if_missing(True)
        opts.create_missing_column_families(True)
        opts.set_atomic_flush(True)
        opts.set_compression_type(DBCompressionType.lz4())
        table = BlockBasedOptions()
        table.set_block_cache(Cache(block_cache_bytes))
        table.set_bloom_filter(10, False)
        opts.set_block_based_table_factory(table)
        self._db = Rdict(str(self.path), opts, column_families={META_CF: Options(raw_mode=True)})
        self._write_opts = WriteOptions()
        # A property at runtime; rocksdict's stub declares it as a method.
        self._write_opts.disable_wal = True  # type: ignore[method-assign,assignment]
        self._db.set_write_options(self._write_opts)
        self._meta = self._db.get_column_family(META_CF)
        self._meta_handle = self._db.get_column_family_handle(META_CF)
        marker = self._db.get(APPLY_MARKER_KEY)
        if marker is None:
            self.applied_decree, self.last_timestamp_us = 0, 0
        else:
            self.applied_decree, self.last_timestamp_us = _MARKER.unpack(marker)
        version = self._meta.get(DATA_VERSION_KEY)
        if version is None:
            self._meta.put(DATA_VERSION_KEY, str(DATA_VERSION).encode())
        elif int(version) != DATA_VERSION:
            raise RuntimeError(f"{self.path}: data version {int(version)} is not supported")
        flushed = self._meta.get(LAST_FLUSHED_DECREE_KEY)
        self.last_flushed_decree = int(flushed) if flushed is not None else 0

    # -- reads -------------------------------------------------------------------------

    def get(self, key: bytes) -> bytes | None:
        return self._db.get(key)

    def multi_get(self, keys: list[bytes]) -> list[bytes | None]:
        if not keys:
            return []
        values: list[bytes | None] = self._db.get(keys)  # type: ignore[arg-type,assignment]
        return values

    def iterator(self, upper_bound: bytes | None = None) -> Any:
        """A raw RocksDB iterator; the caller must drop it (`del`) before `close`."""
        ro = ReadOptions()
        if upper_bound:
            ro.set_iterate_upper_bound(upper_bound)
        return self._db.iter(ro)

    def estimate_num_keys(self) -> int:
        return self._db.property_int_value("rocksdb.estimate-num-keys") or 0

    # -- writes ------------------------------------------------------------------------

    def write(self, ops: dict[bytes, bytes | None], decree: int, last_timestamp_us: int) -> None:
        """Apply the final value of each key (None deletes) and move the apply marker."""
        assert decree >= self.applied_decree, (decree, self.applied_decree)
        wb = WriteBatch(raw_mode=True)
        for key, value in ops.items():
            if value is None:
                wb.delete(key)
            else:
                wb.put(key, value)
        wb.put(APPLY_MARKER_KEY, _MARKER.pack(decree, last_timestamp_us))
        self._db.write(wb)
        self.applied_decree = decree
        self.last_timestamp_us = last_timestamp_us

    def delete_keys(self, keys: list[bytes]) -> None:
        """Physical deletes outside the log (expired-record sweep); the marker is unchanged."""
        wb = WriteBatch(raw_mode=True)
        for key in keys:
            wb.delete(key)
        self._db.write(wb)

    def flush(self) -> int:
        """Flush memtables (blocking; run it in a thread) and record the flushed decree.

        Returns the decree that is now durable in SST files. Safe to call while the event
        loop keeps applying writes: the decree is read before the flush starts, so it never
        claims more than was flushed.
        """
        decree = self.applied_decree
        self._db.flush(True)
        self._meta.put(LAST_FLUSHED_DECREE_KEY, str(decree).encode())
        self._meta.flush(True)
        self.last_flushed_decree = decree
        return decree

    def close(self) -> None:
        self._meta.close()
        del self._meta, self._meta_handle
        self._db.close()
        del self._db
        gc.collect()  # rocksdict releases the LOCK only when every handle is collected
