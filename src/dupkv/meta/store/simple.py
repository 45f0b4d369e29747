"""The embedded metadata store, `meta_state_service_simple` (asyncio shell over SQLite).

One table of nodes in `<data_dir>/meta.db`: path (primary key), parent (indexed, for
`children`), data. The tree rules of ZooKeeper are enforced here: a node's parent exists, a
create finds no node, a non-recursive delete finds no children. Every write is one SQLite
transaction in WAL mode with `synchronous=FULL`, so once a call has returned its effect
survives a process kill and a power cut.

All SQLite work runs on one worker thread owned by the store: the event loop never waits on
the disk, and calls are carried out in the order they were made, even when the caller does
not await one before issuing the next. The database is opened on the first call and locked
exclusively (`locking_mode=EXCLUSIVE`), so a second meta server pointed at the same data
directory gets StoreUnavailable instead of silently sharing the state.

A call that times out or is cancelled has an unknown outcome (the worker may still apply
it); calls made afterwards see whatever it did, because they queue behind it.
"""

import asyncio
import os
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from dupkv.base.errors import ErrorCode
from dupkv.meta.store.api import (
    Create,
    Delete,
    NodeExists,
    NoNode,
    NotEmpty,
    Op,
    Set,
    StoreError,
    StoreUnavailable,
    ancestors,
    check_data,
    check_deletable,
    check_in_root,
    check_ops,
    check_root,
    parent_of,
)

DB_FILE = "meta.db"
SCHEMA_VERSION = 1
DEFAULT_OP_TIMEOUT_MS = 10_000
# How long SQLite waits for a lock held by another connection before giving up.
BUSY_TIMEOUT_S = 1.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS nodes (
    path   TEXT PRIMARY KEY,
    parent TEXT NOT NULL,
    data   BLOB NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS nodes_by_parent ON nodes (parent, path);
"""

T = TypeVar("T")


class SimpleStore:
    """A MetaStore kept in SQLite on the local disk, for a single meta server."""

    def __init__(
        self, data_dir: str, root: str, *, op_timeout_ms: int = DEFAULT_OP_TIMEOUT_MS
    ) -> None:
        self._root = check_root(root)
        self._data_dir = data_dir
        self.db_path = os.path.join(data_dir, DB_FILE)
        self._timeout_ms = op_timeout_ms
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="meta-store-sqlite")
        self._conn: sqlite3.Connection | None = None  # used by the worker thread only
        self._closed = False

    @property
    def root(self) -> str:
        return self._root

    # -- the MetaStore interface (event loop side: validate, then hand to the worker) --

    async def create(self, path: str, data: bytes = b"", *, make_parents: bool = True) -> None:
        path = check_in_root(self._root, path)
        data = check_data(path, data)
        await self._call(path, self._write, lambda db: _create(db, path, data, make_parents))

    async def set(self, path: str, data: bytes) -> None:
        path = check_in_root(self._root, path)
        data = check_data(path, data)
        await self._call(path, self._write, lambda db: _set(db, path, data))

    async def get(self, path: str) -> bytes | None:
        path = check_in_root(self._root, path)
        return await self._call(path, self._read, lambda db: _get(db, path))

    async def exists(self, path: str) -> bool:
        path = check_in_root(self._root, path)
        return await self._call(path, self._read, lambda db: _has(db, path))

    async def children(self, path: str) -> list[str]:
        path = check_in_root(self._root, path)
        return await self._call(path, self._read, lambda db: _children(db, path))

    async def delete(self, path: str, *, recursive: bool = True) -> None:
        path = check_deletable(self._root, path)
        await self._call(path, self._write, lambda db: _delete(db, path, recursive))

    async def commit(self, ops: Sequence[Op]) -> None:
        checked = check_ops(self._root, ops)
        if checked:
            await self._call(self._root, self._write, lambda db: _apply(db, checked))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._timeout_ms / 1000):
                # Queued behind every earlier call, so those finish first.
                await loop.run_in_executor(self._worker, self._close_db)
        except TimeoutError:
            self._worker.shutdown(wait=False)
            raise StoreUnavailable(self.db_path, "did not close in time") from None
        except sqlite3.Error as e:
            self._worker.shutdown(wait=False)
            raise StoreUnavailable(self.db_path, f"close failed: {e}") from e
        except BaseException:
            self._worker.shutdown(wait=False)
            raise
        self._worker.shutdown(wait=True)  # the worker is idle: this only joins its thread

    # -- running work on the worker thread --

    async def _call(
        self,
        path: str,
        mode: Callable[[Callable[[sqlite3.Connection], T]], T],
        work: Callable[[sqlite3.Connection], T],
    ) -> T:
        if self._closed:
            raise StoreUnavailable(path, "the metadata store is closed")
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._worker, mode, work)
        timeout = asyncio.timeout(self._timeout_ms / 1000)
        try:
            async with timeout:
                return await future
        except TimeoutError:
            if not timeout.expired():
                raise
            raise StoreUnavailable(
                path,
                f"{self.db_path} did not answer within {self._timeout_ms} ms; "
                "the outcome is unknown",
            ) from None
        except (sqlite3.OperationalError, OSError) as e:
            raise StoreUnavailable(path, f"{self.db_path}: {e}") from e
        except sqlite3.Error as e:
            raise StoreError(path, f"{self.db_path}: {e}", code=ErrorCode.CORRUPTION) from e

    def _read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        return work(self._db())

    def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work` in one IMMEDIATE transaction: committed if it returns, else rolled back."""
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            result = work(db)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return result

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = self._open()
        return self._conn

    def _open(self) -> sqlite3.Connection:
        os.makedirs(self._data_dir, exist_ok=True)
        db = sqlite3.connect(self.db_path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            # EXCLUSIVE before WAL: no shared-memory index, and the file stays ours.
            db.execute("PRAGMA locking_mode=EXCLUSIVE")
            (mode,) = db.execute("PRAGMA journal_mode=WAL").fetchone()
            if mode != "wal":
                raise sqlite3.OperationalError(f"journal_mode is {mode!r}, WAL was refused")
            db.execute("PRAGMA synchronous=FULL")
            (version,) = db.execute("PRAGMA user_version").fetchone()
            if version not in (0, SCHEMA_VERSION):
                raise sqlite3.DatabaseError(
                    f"meta.db has schema version {version}; this dupkv reads {SCHEMA_VERSION}"
                )
            db.executescript(_SCHEMA)  # idempotent; executescript commits on its own
            db.execute("BEGIN IMMEDIATE")
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            for node in [*ancestors(self._root), self._root]:
                db.execute(
                    "INSERT OR IGNORE INTO nodes (path, parent, data) VALUES (?, ?, ?)",
                    (node, parent_of(node), b""),
                )
            db.execute("COMMIT")
        except BaseException:
            db.close()
            raise
        return db

    def _close_db(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


# -- the tree rules, run inside the worker's transaction --


def _has(db: sqlite3.Connection, path: str) -> bool:
    if path == "/":
        return True
    return db.execute("SELECT 1 FROM nodes WHERE path = ?", (path,)).fetchone() is not None


def _get(db: sqlite3.Connection, path: str) -> bytes | None:
    row = db.execute("SELECT data FROM nodes WHERE path = ?", (path,)).fetchone()
    return None if row is None else bytes(row[0])


def _children(db: sqlite3.Connection, path: str) -> list[str]:
    if not _has(db, path):
        raise NoNode(path)
    cut = len(path) + (0 if path == "/" else 1)
    rows = db.execute("SELECT path FROM nodes WHERE parent = ?", (path,)).fetchall()
    return sorted(row[0][cut:] for row in rows)


def _has_children(db: sqlite3.Connection, path: str) -> bool:
    row = db.execute("SELECT 1 FROM nodes WHERE parent = ? LIMIT 1", (path,)).fetchone()
    return row is not None


def _create(db: sqlite3.Connection, path: str, data: bytes, make_parents: bool) -> None:
    if _has(db, path):
        raise NodeExists(path)
    parent = parent_of(path)
    if not _has(db, parent):
        if not make_parents:
            raise NoNode(path, f"parent {parent} does not exist")
        for node in ancestors(path):
            db.execute(
                "INSERT OR IGNORE INTO nodes (path, parent, data) VALUES (?, ?, ?)",
                (node, parent_of(node), b""),
            )
    db.execute("INSERT INTO nodes (path, parent, data) VALUES (?, ?, ?)", (path, parent, data))


def _set(db: sqlite3.Connection, path: str, data: bytes) -> None:
    if db.execute("UPDATE nodes SET data = ? WHERE path = ?", (data, path)).rowcount == 0:
        raise NoNode(path)


def _delete(db: sqlite3.Connection, path: str, recursive: bool) -> None:
    if not _has(db, path):
        return
    if recursive:
        # Descendants are exactly the paths in [path + "/", path + "0"): "0" follows "/".
        db.execute(
            "DELETE FROM nodes WHERE path = ? OR (path >= ? AND path < ?)",
            (path, path + "/", path + "0"),
        )
    elif _has_children(db, path):
        raise NotEmpty(path)
    else:
        db.execute("DELETE FROM nodes WHERE path = ?", (path,))


def _apply(db: sqlite3.Connection, ops: list[Op]) -> None:
    for op in ops:
        if isinstance(op, Create):
            _create(db, op.path, op.data, make_parents=False)
        elif isinstance(op, Set):
            _set(db, op.path, op.data)
        else:
            assert isinstance(op, Delete)
            if not _has(db, op.path):
                raise NoNode(op.path)
            _delete(db, op.path, recursive=False)
