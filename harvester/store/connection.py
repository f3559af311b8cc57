"""Opening the store's two SQLite connections (the writer and a read-only reader), and the
transaction helpers around them."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import aiosqlite

from harvester.errors import StoreError

DEFAULT_BUSY_TIMEOUT = 5.0
# A WAL reader is not blocked by a writer, another process's included; it can still meet a lock in
# rare moments (a checkpoint truncating the WAL, recovery after a crash). It waits briefly then, not
# the writer's busy timeout: what it serves (/health, the dashboard) must answer promptly.
READ_BUSY_TIMEOUT = 1.0


async def connect(path: Path, busy_timeout: float = DEFAULT_BUSY_TIMEOUT) -> aiosqlite.Connection:
    """Open `path` in WAL mode with explicit transactions.

    - `isolation_level=None`: the sqlite3 module's implicit BEGINs are off, the store issues
      `BEGIN IMMEDIATE` itself, so a transaction's extent is visible in the code and its write lock
      is taken up front (no deadlock-prone upgrade from a read lock).
    - WAL: readers (the web API, a CLI) do not block the writer and vice versa.
    - `synchronous=NORMAL`: in WAL mode a commit survives a killed process; only a power cut can lose
      the last few commits, never corrupt the file. A lost tail is safe for us because a cursor and
      its posts are committed together, so the daemon re-fetches from the older cursor.
    - `busy_timeout`: wait for another process's write lock instead of failing at once.
    """
    db = await aiosqlite.connect(path, isolation_level=None, timeout=busy_timeout)
    try:
        db.row_factory = sqlite3.Row
        rows = await db.execute_fetchall("PRAGMA journal_mode=WAL")
        mode = str(next(iter(rows))[0]).lower()
        if mode != "wal":
            raise StoreError(f"{path}: SQLite refused WAL mode (journal_mode is {mode!r})")
        await db.execute("PRAGMA synchronous=NORMAL")
        await db.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
    except BaseException:
        await db.close()
        raise
    return db


async def connect_reader(path: Path, busy_timeout: float = READ_BUSY_TIMEOUT) -> aiosqlite.Connection:
    """Open a second connection to `path` (already in WAL mode: the writer sets it) for reads only.

    `query_only` makes any write through it an error, so it can never take the write lock and wait
    behind another process the way the writer does. In autocommit mode each query is its own read
    transaction, so it never holds a snapshot that would keep a checkpoint from finishing.
    """
    db = await aiosqlite.connect(path, isolation_level=None, timeout=busy_timeout)
    try:
        db.row_factory = sqlite3.Row
        await db.execute("PRAGMA query_only=ON")
        await db.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
    except BaseException:
        await db.close()
        raise
    return db


async def rollback_quietly(db: aiosqlite.Connection) -> None:
    """Roll back the open transaction, if any, without masking the error that led here.

    SQLite rolls some failures back by itself (a full disk, an I/O error), after which ROLLBACK
    complains that no transaction is active: that complaint is not news.
    """
    with suppress(sqlite3.Error):
        await db.execute("ROLLBACK")


@contextmanager
def store_errors(operation: str) -> Iterator[None]:
    """Map sqlite3 errors (locked, busy, full, I/O, corrupt) into `StoreError` at the boundary."""
    try:
        yield
    except sqlite3.Error as exc:
        raise StoreError(f"store: {operation} failed: {exc}") from exc
