"""`Store`: harvester's durable state in one SQLite database (posts, cursors, dedup set, signals,
alert outbox, engine snapshots), reached through aiosqlite.

Two contracts shape this module:

- **Crash safety.** `write_batch` commits a batch's posts, the cursors that cover them and their
  dedup entries in one transaction. After a `kill -9` the stored cursor never points past a post that
  is not stored, so the daemon resumes without losing anything; a rewind that re-delivers posts is
  absorbed by the `uid` primary key, so nothing is stored or counted twice.
- **One write connection, serialised.** aiosqlite runs the connection in a worker thread and executes
  calls in order, but an explicit transaction spans several calls, so two coroutines could interleave
  statements inside each other's transaction. Every operation on it therefore holds `_lock`. The
  daemon's own reads (cursors, due alerts, staged signals) hold it too: on a shared connection a read
  in the middle of someone's transaction would see its uncommitted rows (say an outbox row that a
  failing COMMIT then takes back), and they see every write queued before them.
- **A read-only connection for the outside.** While another process holds the database's write lock,
  each queued write waits out the busy timeout in turn, and anything behind `_lock` waits with them.
  What /health, /metrics, the API and the dashboard read therefore goes through a second,
  `query_only` connection (`_read`): in WAL mode a reader is not blocked by a writer, and it sees
  committed rows only. `write_stalled_for` tells how long queued writes have gone without one
  succeeding, so /health can say the store is stuck before the first busy timeout runs out.

Write operations run shielded from cancellation: once started, a transaction runs to COMMIT or
ROLLBACK even if its caller is cancelled (shutdown does this), instead of stopping between two
statements with the transaction left open on the shared connection.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import suppress
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import aiosqlite

from harvester.errors import StoreError
from harvester.models import Alert, Signal
from harvester.store.bulk import MultiRowInsert
from harvester.store.connection import (
    DEFAULT_BUSY_TIMEOUT,
    READ_BUSY_TIMEOUT,
    connect,
    connect_reader,
    rollback_quietly,
    store_errors,
)
from harvester.store.files import create_private_file, ensure_private_dir, make_files_private
from harvester.store.migrations import apply_migrations
from harvester.store.records import (
    OUTBOX_COLUMNS,
    POST_COLUMNS,
    OutboxEntry,
    PostRecord,
    SilenceRecord,
    StagedSignal,
    outbox_entry_from_row,
    post_dict,
    post_row,
    signal_from_row,
    signal_row,
    silence_from_row,
    storable,
)

T = TypeVar("T")
Work = Callable[[aiosqlite.Connection], Awaitable[T]]

# Rows deleted per statement (and transaction) by `prune`: small enough that the write lock is
# released every few milliseconds, so ingestion never stalls behind retention.
PRUNE_CHUNK = 5_000

OUTBOX_STATUSES = ("pending", "delivered", "dead")

# How long `close` lets `PRAGMA optimize` wait for another connection's lock before skipping it.
OPTIMIZE_BUSY_TIMEOUT_MS = 200

# `ON CONFLICT (key) DO NOTHING` rather than `INSERT OR IGNORE`: both skip a row whose key is already
# stored, but OR IGNORE would also silently skip a row that breaks any other constraint (a NULL in a
# NOT NULL column), losing data without an error. Here only the duplicate key is forgiven.
# Posts and seen uids go in as multi-row statements (see `MultiRowInsert`).
_INSERT_POSTS = MultiRowInsert(
    f"INSERT INTO posts ({', '.join(POST_COLUMNS)}) VALUES ",
    len(POST_COLUMNS),
    " ON CONFLICT (uid) DO NOTHING",
)
_INSERT_SEENS = MultiRowInsert("INSERT INTO seen (uid, seen_at) VALUES ", 2, " ON CONFLICT (uid) DO NOTHING")
# The `post_rules` rows of the posts a batch inserted: they are exactly the rows above the largest
# rowid before it (a new rowid is always the largest plus one), and a uid skipped as already stored
# gets none, as before with the trigger this replaces. OR IGNORE: a rule listed twice.
_INDEX_RULES = (
    "INSERT OR IGNORE INTO post_rules (rule, received_at, uid) "
    "SELECT j.value, p.received_at, p.uid FROM posts AS p, json_each(p.rules) AS j "
    "WHERE p.rowid > ? AND p.rules <> '[]'"
)
_UPSERT_CURSOR = (
    "INSERT INTO cursors (source, cursor, updated_at) VALUES (?, ?, ?) "
    "ON CONFLICT (source) DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at"
)
_INSERT_SIGNAL = (
    "INSERT INTO signals (id, rule, kind, severity, at, payload) VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (id) DO NOTHING"
)
_INSERT_OUTBOX = (
    "INSERT INTO outbox (key, sink, signal_id, payload, status, attempts, next_attempt_at, created_at, "
    "updated_at, last_error, delivered_at) VALUES (?, ?, ?, ?, 'pending', 0, ?, ?, ?, NULL, NULL) "
    "ON CONFLICT (key) DO NOTHING"
)
_INSERT_GROUPED = (
    "INSERT INTO outbox (key, sink, signal_id, payload, status, attempts, next_attempt_at, created_at, "
    "updated_at, last_error, delivered_at, group_key) "
    "VALUES (?, ?, ?, ?, 'pending', 0, ?, ?, ?, NULL, NULL, ?) ON CONFLICT (key) DO NOTHING"
)
_INSERT_STAGED = (
    "INSERT INTO alert_staging (group_key, sink, signal_id, staged_at) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (group_key, signal_id) DO NOTHING"
)
_SELECT_OUTBOX = f"SELECT {', '.join(OUTBOX_COLUMNS)} FROM outbox"
# A pending alert waits while an older alert of its group is still pending, so each group's messages
# arrive in order even when the older one is backing off. Rows without a group never wait.
_HEAD_OF_GROUP = (
    "NOT EXISTS (SELECT 1 FROM outbox AS older WHERE older.group_key = outbox.group_key "
    "AND older.status = 'pending' AND older.rowid < outbox.rowid)"
)
_SELECT_POSTS = f"SELECT {', '.join('p.' + c for c in POST_COLUMNS)} FROM posts AS p"

# What `prune` deletes: (table, condition on the row, which cutoff applies). The table names and
# conditions are constants of this module, never user input, so formatting them into SQL is safe.
_PRUNE_PLAN = (
    ("posts", "received_at < ?", "retention"),
    ("seen", "seen_at < ?", "seen"),
    ("outbox", "status = 'delivered' AND delivered_at < ?", "retention"),
    ("signals", "at < ?", "retention"),
)


_SAVE_STATE = (
    "INSERT INTO engine_state (name, data, updated_at) VALUES (?, ?, ?) "
    "ON CONFLICT (name) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at"
)
_SCRATCH_STATE = "\x00unbind"  # no snapshot's name (see `Store.save_state`)


class Store:
    """The store. Create it with `await Store.open(path)` and `await store.close()` it at shutdown."""

    def __init__(self, db: aiosqlite.Connection, path: Path, reader: aiosqlite.Connection) -> None:
        """Use `Store.open`: it prepares the file, the connections and the schema."""
        self.path = path
        self.prune_chunk = PRUNE_CHUNK
        self.monotonic: Callable[[], float] = time.monotonic  # replaceable by tests
        self._db = db
        self._reader = reader
        self._lock = asyncio.Lock()
        self._closed = False
        # Writes asked for and not finished (queued behind `_lock` or running), and since when the
        # oldest of them has waited without any write succeeding: see `write_stalled_for`.
        self.writes_waiting = 0
        self._stalled_since: float | None = None
        # Strong references to shielded write tasks: a task whose caller was cancelled must not be
        # garbage-collected half-way through its transaction.
        self._inflight: set[asyncio.Task[Any]] = set()

    # ----------------------------------------------------------------------------------- lifecycle

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        read_busy_timeout: float = READ_BUSY_TIMEOUT,
    ) -> Store:
        """Open (creating if needed) the database at `path` and bring its schema up to date.

        A directory created for it gets mode 0700, the file 0600 from the moment it exists, and the
        WAL sidecar files 0600. Raises `StoreError` if the file cannot be created or opened, is not a
        database, or was written by a newer harvester.
        """
        path = Path(path)
        try:
            ensure_private_dir(path.parent)
            create_private_file(path)
        except OSError as exc:
            raise StoreError(f"store: cannot create {path}: {exc}") from exc
        with store_errors(f"opening {path}"):
            db = await connect(path, busy_timeout)
        try:
            with store_errors(f"migrating {path}"):
                await apply_migrations(db)
            make_files_private(path)
            # After the writer: it has put the file in WAL mode and created the sidecar files.
            with store_errors(f"opening {path} for reading"):
                reader = await connect_reader(path, read_busy_timeout)
        except OSError as exc:
            await db.close()
            raise StoreError(f"store: cannot restrict permissions of {path}: {exc}") from exc
        except BaseException:
            await db.close()
            raise
        return cls(db, path, reader)

    @property
    def closed(self) -> bool:
        """Whether `close` was called (readers that outlive the daemon's run stop asking then)."""
        return self._closed

    async def close(self) -> None:
        """Close both connections after the operations already queued have finished. Idempotent."""
        if self._closed:
            return
        async with self._lock:
            if self._closed:
                return
            self._closed = True
            # The reader first, so the writer is the last connection and checkpoints the WAL away.
            with suppress(sqlite3.Error):
                await self._reader.close()
            try:
                # Cheap, and keeps the query planner's statistics current for the next run. It may
                # write, so a database another connection holds locked would fail it: that is no
                # reason to fail the shutdown (or to hide the error that caused it), nor to wait the
                # whole busy timeout for.
                with suppress(sqlite3.Error):
                    await self._db.execute(f"PRAGMA busy_timeout={OPTIMIZE_BUSY_TIMEOUT_MS}")
                    await self._db.execute("PRAGMA optimize")
            finally:
                with store_errors("close"):
                    await self._db.close()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # ----------------------------------------------------------------------------------- plumbing

    def _open_connection(self) -> aiosqlite.Connection:
        if self._closed:
            raise StoreError("store: the store is closed")
        return self._db

    async def _shielded(self, operation: Awaitable[T]) -> T:
        """Await `operation` in its own task that the caller's cancellation does not interrupt."""
        task = asyncio.ensure_future(operation)
        self._inflight.add(task)
        task.add_done_callback(self._forget)
        return await asyncio.shield(task)

    def _forget(self, task: asyncio.Task[Any]) -> None:
        self._inflight.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved here so an abandoned task's error is not logged as lost

    def write_stalled_for(self) -> float:
        """Seconds that writes have been waiting without one succeeding; 0 when none is waiting.

        A write that fails does not reset it: while another process holds the lock, writes fail one
        busy timeout after another and the figure keeps growing until one gets through.
        """
        since = self._stalled_since
        return 0.0 if since is None else max(0.0, self.monotonic() - since)

    async def _counted_write(self, write: Callable[[], Awaitable[T]]) -> T:
        """Run `write()`, keeping `writes_waiting` and the stall clock up to date.

        A callable, not a coroutine: one created here and never started (a task cancelled before its
        first step) would be reported as never awaited."""
        if self.writes_waiting == 0:
            self._stalled_since = self.monotonic()
        self.writes_waiting += 1
        succeeded = False
        try:
            result = await write()
            succeeded = True
            return result
        finally:
            self.writes_waiting -= 1
            if self.writes_waiting == 0:
                self._stalled_since = None
            elif succeeded:
                self._stalled_since = self.monotonic()  # progress: the others wait from now

    async def _transaction(self, operation: str, work: Work[T]) -> T:
        """Run `work` inside BEGIN IMMEDIATE … COMMIT; on any failure roll everything back."""

        async def run() -> T:
            async with self._lock:
                db = self._open_connection()
                with store_errors(operation):
                    await db.execute("BEGIN IMMEDIATE")
                    try:
                        result = await work(db)
                        await db.execute("COMMIT")
                    except BaseException:
                        await rollback_quietly(db)
                        raise
                    return result

        return await self._shielded(self._counted_write(run))

    async def _execute(self, operation: str, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one writing statement (atomic on its own, no explicit transaction); return rowcount."""

        async def run() -> int:
            async with self._lock:
                db = self._open_connection()
                with store_errors(operation):
                    cursor = await db.execute(sql, params)
                    return cursor.rowcount

        return await self._shielded(self._counted_write(run))

    async def _fetch(self, operation: str, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """A read on the write connection, in turn with the writes (the daemon's own reads)."""
        async with self._lock:
            db = self._open_connection()
            with store_errors(operation):
                return list(await db.execute_fetchall(sql, params))

    async def _read(self, operation: str, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """A read on the read-only connection: committed rows, without waiting for queued writes.

        No lock: in autocommit mode each query is one statement, and aiosqlite runs them in order.
        """
        if self._closed:
            raise StoreError("store: the store is closed")
        try:
            with store_errors(operation):
                return list(await self._reader.execute_fetchall(sql, params))
        except ValueError as exc:  # aiosqlite's word for a connection `close` took meanwhile
            raise StoreError(f"store: {operation} failed: the store is closed") from exc

    # --------------------------------------------------------------------------- posts and cursors

    async def write_batch(
        self,
        records: Sequence[PostRecord],
        cursors: Mapping[str, str],
        seen: Sequence[tuple[str, float]],
    ) -> int:
        """Store posts, move source cursors and record dedup entries, all in one transaction.

        Returns how many posts were new: a uid already stored (or repeated in the batch) is ignored.
        If anything fails, nothing of the batch is committed and `StoreError` is raised.
        """
        post_rows = [post_row(record) for record in records]
        with_rules = any(record.rules for record in records)
        now = time.time()
        cursor_rows = [(source, storable(cursor), now) for source, cursor in cursors.items()]
        seen_rows = [(storable(uid), at) for uid, at in seen]

        async def work(db: aiosqlite.Connection) -> int:
            inserted = 0
            if post_rows:
                rows = await db.execute_fetchall("SELECT coalesce(max(rowid), 0) FROM posts")
                last = next(iter(rows))[0]
                inserted = await _INSERT_POSTS.run(db, post_rows)
                if inserted and with_rules:
                    await db.execute(_INDEX_RULES, (last,))
            if cursor_rows:
                await db.executemany(_UPSERT_CURSOR, cursor_rows)
            await _INSERT_SEENS.run(db, seen_rows)
            return inserted

        return await self._transaction("write_batch", work)

    async def load_cursors(self) -> dict[str, str]:
        rows = await self._fetch("load_cursors", "SELECT source, cursor FROM cursors")
        return {row["source"]: row["cursor"] for row in rows}

    async def load_seen(self, newer_than: float, limit: int) -> list[tuple[str, float]]:
        """The newest `limit` dedup entries with seen_at > newer_than, oldest first.

        Oldest first so the dedup stage can rebuild its insertion-ordered set in its natural order.
        """
        rows = await self._fetch(
            "load_seen",
            "SELECT uid, seen_at FROM (SELECT rowid, uid, seen_at FROM seen WHERE seen_at > ? "
            "ORDER BY seen_at DESC, rowid DESC LIMIT ?) ORDER BY seen_at ASC, rowid ASC",
            (newer_than, limit),
        )
        return [(row["uid"], float(row["seen_at"])) for row in rows]

    async def count_posts(self) -> int:
        rows = await self._fetch("count_posts", "SELECT COUNT(*) FROM posts")
        return int(rows[0][0])

    async def post_uids(self) -> list[str]:
        """Every stored uid, in insertion order (for tests and tools: it reads the whole table)."""
        rows = await self._fetch("post_uids", "SELECT uid FROM posts ORDER BY rowid")
        return [row["uid"] for row in rows]

    async def fetch_posts(self, limit: int = 100, rule: str | None = None) -> list[dict[str, Any]]:
        """The newest `limit` posts (by received_at), optionally only those that matched `rule`.

        Each post is a dict of the `posts` columns: times as epoch seconds, `rules` a list of names.
        """
        if rule is None:
            rows = await self._fetch(
                "fetch_posts", f"{_SELECT_POSTS} ORDER BY p.received_at DESC, p.rowid DESC LIMIT ?", (limit,)
            )
        else:
            rows = await self._fetch(
                "fetch_posts",
                f"{_SELECT_POSTS} JOIN post_rules AS r ON r.uid = p.uid WHERE r.rule = ? "
                "ORDER BY r.received_at DESC, r.uid DESC LIMIT ?",
                (rule, limit),
            )
        return [post_dict(row) for row in rows]

    # ----------------------------------------------------------------------------------- retention

    async def prune(self, now: float, post_retention: float, seen_ttl: float) -> dict[str, int]:
        """Delete what has aged out; return the number of rows deleted per table.

        Posts, signals and delivered outbox rows older than `now - post_retention`, dedup entries
        older than `now - seen_ttl`. Pending and dead alerts are kept whatever their age: they still
        need delivering or a human decision. Deletes run in chunks of `prune_chunk` rows, each its own
        short transaction, so writers get the lock in between.
        """
        cutoffs = {"retention": now - post_retention, "seen": now - seen_ttl}
        return {
            table: await self._delete_in_chunks(table, condition, cutoffs[cutoff])
            for table, condition, cutoff in _PRUNE_PLAN
        }

    async def _delete_in_chunks(self, table: str, condition: str, cutoff: float) -> int:
        sql = (
            f"DELETE FROM {table} WHERE rowid IN "
            f"(SELECT rowid FROM {table} WHERE {condition} LIMIT {int(self.prune_chunk)})"
        )
        total = 0
        while True:
            deleted = await self._execute(f"prune {table}", sql, (cutoff,))
            total += deleted
            if deleted < self.prune_chunk:
                return total

    # ----------------------------------------------------------------------- signals and the outbox

    async def save_signal_and_alerts(self, signal: Signal, alerts: Sequence[Alert], now: float) -> bool:
        """Record a signal and queue its alerts (pending, due now) in one transaction.

        Idempotent: the signal id and the alert keys are primary keys, so saving the same signal and
        alerts again (a restart re-firing the same window) changes nothing. Returns True only if the
        signal was new.
        """
        signal_values = signal_row(signal)
        outbox_rows = [
            (alert.key, alert.sink, alert.signal.id, alert.payload_json(), now, now, now) for alert in alerts
        ]

        async def work(db: aiosqlite.Connection) -> bool:
            is_new = (await db.execute(_INSERT_SIGNAL, signal_values)).rowcount == 1
            if outbox_rows:
                await db.executemany(_INSERT_OUTBOX, outbox_rows)
            return is_new

        return await self._transaction("save_signal_and_alerts", work)

    async def recent_signals(self, limit: int = 50) -> list[Signal]:
        """The newest `limit` signals, newest first."""
        rows = await self._read(
            "recent_signals", "SELECT payload FROM signals ORDER BY at DESC, rowid DESC LIMIT ?", (limit,)
        )
        return [signal_from_row(row) for row in rows]

    async def due_alerts(self, now: float, limit: int = 100) -> list[OutboxEntry]:
        """Pending alerts whose next attempt is due, oldest first (by created_at, then key).

        An alert whose group has an older alert still pending is not due: groups deliver in order.
        """
        rows = await self._fetch(
            "due_alerts",
            f"{_SELECT_OUTBOX} WHERE status = 'pending' AND next_attempt_at <= ? AND {_HEAD_OF_GROUP} "
            "ORDER BY created_at, key LIMIT ?",
            (now, limit),
        )
        return [outbox_entry_from_row(row) for row in rows]

    async def next_due_at(self) -> float | None:
        """When the next pending alert falls due, or None if nothing is pending: the sender's wake-up."""
        rows = await self._fetch(
            "next_due_at",
            f"SELECT MIN(next_attempt_at) FROM outbox WHERE status = 'pending' AND {_HEAD_OF_GROUP}",
        )
        value = rows[0][0]
        return None if value is None else float(value)

    async def outbox_entry(self, key: str) -> OutboxEntry | None:
        """One outbox row by key, whatever its status (for tools, tests and the API)."""
        rows = await self._fetch("outbox_entry", f"{_SELECT_OUTBOX} WHERE key = ?", (key,))
        return outbox_entry_from_row(rows[0]) if rows else None

    async def mark_delivered(self, key: str, now: float) -> None:
        await self._execute(
            "mark_delivered",
            "UPDATE outbox SET status = 'delivered', delivered_at = ?, updated_at = ? WHERE key = ?",
            (now, now, key),
        )

    async def mark_retry(self, key: str, attempts: int, next_attempt_at: float, error: str) -> None:
        """Record a failed attempt on a pending alert and when to try again."""
        await self._execute(
            "mark_retry",
            "UPDATE outbox SET attempts = ?, next_attempt_at = ?, last_error = ? "
            "WHERE key = ? AND status = 'pending'",
            (attempts, next_attempt_at, error, key),
        )

    async def mark_dead(self, key: str, attempts: int, error: str, now: float) -> None:
        """Dead-letter a pending alert: it is not retried until `requeue_dead` brings it back."""
        await self._execute(
            "mark_dead",
            "UPDATE outbox SET status = 'dead', attempts = ?, last_error = ?, updated_at = ? "
            "WHERE key = ? AND status = 'pending'",
            (attempts, error, now, key),
        )

    async def requeue_dead(self, now: float, sink: str | None = None, key: str | None = None) -> int:
        """Give dead alerts (one by key, those of one sink, or all) a fresh start, due now; return how many.

        `last_error` is kept so the reason they died stays visible until a new attempt replaces it.
        `created_at` is moved to now as well, so the age limit counts from the resend.
        """
        sql = (
            "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = ?, updated_at = ?, "
            "created_at = ? WHERE status = 'dead'"
        )
        params: list[Any] = [now, now, now]
        if sink is not None:
            sql += " AND sink = ?"
            params.append(sink)
        if key is not None:
            sql += " AND key = ?"
            params.append(key)
        return await self._execute("requeue_dead", sql, params)

    async def outbox_entries(
        self, status: str | None = None, sink: str | None = None, limit: int = 100
    ) -> list[OutboxEntry]:
        """Outbox rows in the order they were written (optionally of one status and sink), for the API."""
        where, params = _where(("status = ?", status), ("sink = ?", sink))
        rows = await self._fetch(
            "outbox_entries", f"{_SELECT_OUTBOX}{where} ORDER BY created_at, rowid LIMIT ?", [*params, limit]
        )
        return [outbox_entry_from_row(row) for row in rows]

    async def dead_letters(self, sink: str | None = None, limit: int = 100) -> list[OutboxEntry]:
        """Dead-lettered alerts, the most recently dead first."""
        where, params = (
            ("status = 'dead' AND sink = ?", (sink, limit)) if sink else ("status = 'dead'", (limit,))
        )
        rows = await self._read(
            "dead_letters", f"{_SELECT_OUTBOX} WHERE {where} ORDER BY updated_at DESC, key LIMIT ?", params
        )
        return [outbox_entry_from_row(row) for row in rows]

    async def outbox_status(self) -> dict[str, Any]:
        """Per-sink counts by status and the creation time of the oldest pending alert, for /health."""
        rows = await self._read(
            "outbox_status",
            "SELECT sink, status, COUNT(*), MIN(created_at) FROM outbox GROUP BY sink, status",
        )
        per_sink: dict[str, dict[str, int]] = {}
        oldest: float | None = None
        for row in rows:
            per_sink.setdefault(row[0], dict.fromkeys(OUTBOX_STATUSES, 0))[row[1]] = int(row[2])
            if row[1] == "pending" and (oldest is None or row[3] < oldest):
                oldest = float(row[3])
        staged = await self._read("outbox_status", "SELECT COUNT(*) FROM alert_staging")
        return {"per_sink": per_sink, "oldest_pending_created_at": oldest, "staged": int(staged[0][0])}

    # ------------------------------------------------------------------- alert groups and silences

    async def save_signal_and_stage(
        self, signal: Signal, groups: Sequence[tuple[str, str]], now: float
    ) -> bool:
        """Record a signal and stage it in routing groups `(group_key, sink)` in one transaction.

        The staged rows make a signal that waits for `group_wait` survive a crash: after a restart the
        router finds it here. Idempotent like `save_signal_and_alerts`; returns True only if new.
        """
        signal_values = signal_row(signal)
        staged = [(group_key, sink, signal.id, now) for group_key, sink in groups]

        async def work(db: aiosqlite.Connection) -> bool:
            is_new = (await db.execute(_INSERT_SIGNAL, signal_values)).rowcount == 1
            if is_new and staged:
                await db.executemany(_INSERT_STAGED, staged)
            return is_new

        return await self._transaction("save_signal_and_stage", work)

    async def flush_group(
        self,
        *,
        key: str,
        sink: str,
        group_key: str,
        lead_signal_id: str,
        payload: str,
        signal_ids: Sequence[str],
        created_at: float,
        now: float,
    ) -> bool:
        """Turn staged signals into one pending outbox row, in one transaction; True if the row is new."""

        async def work(db: aiosqlite.Connection) -> bool:
            inserted = (
                await db.execute(
                    _INSERT_GROUPED, (key, sink, lead_signal_id, payload, now, created_at, now, group_key)
                )
            ).rowcount == 1
            await db.executemany(
                "DELETE FROM alert_staging WHERE group_key = ? AND signal_id = ?",
                [(group_key, sid) for sid in signal_ids],
            )
            return inserted

        return await self._transaction("flush_group", work)

    async def unstage(self, group_key: str, signal_ids: Sequence[str]) -> None:
        """Drop staged signals that will not be sent (muted by an inhibition that arrived later)."""

        async def work(db: aiosqlite.Connection) -> None:
            await db.executemany(
                "DELETE FROM alert_staging WHERE group_key = ? AND signal_id = ?",
                [(group_key, sid) for sid in signal_ids],
            )

        await self._transaction("unstage", work)

    async def staged_signals(self) -> list[StagedSignal]:
        """Every staged signal, oldest first, with its signal: what a restarted router regroups."""
        rows = await self._fetch(
            "staged_signals",
            "SELECT a.group_key, a.sink, a.staged_at, s.payload FROM alert_staging AS a "
            "JOIN signals AS s ON s.id = a.signal_id ORDER BY a.staged_at, a.rowid",
        )
        return [
            StagedSignal(row["group_key"], row["sink"], float(row["staged_at"]), signal_from_row(row))
            for row in rows
        ]

    async def save_silence(self, silence: SilenceRecord) -> None:
        await self._execute(
            "save_silence",
            "INSERT INTO silences (id, matchers, starts_at, ends_at, comment, created_by, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET ends_at = excluded.ends_at",
            (
                silence.id,
                json.dumps(silence.matchers, sort_keys=True),
                silence.starts_at,
                silence.ends_at,
                silence.comment,
                silence.created_by,
                silence.created_at,
            ),
        )

    async def expire_silence(self, silence_id: str, now: float) -> bool:
        """End a silence now; False if there is no such silence or it has already ended."""
        changed = await self._execute(
            "expire_silence",
            "UPDATE silences SET ends_at = ? WHERE id = ? AND (ends_at IS NULL OR ends_at > ?)",
            (now, silence_id, now),
        )
        return changed == 1

    async def load_silences(self, active_after: float) -> list[SilenceRecord]:
        """Silences that have not ended by `active_after`, oldest first."""
        rows = await self._fetch(
            "load_silences",
            "SELECT * FROM silences WHERE ends_at IS NULL OR ends_at > ? ORDER BY created_at, id",
            (active_after,),
        )
        return [silence_from_row(row) for row in rows]

    async def posts_by_uid(self, uids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The stored posts among `uids` (missing ones are left out), for an alert's example posts."""
        if not uids:
            return {}
        marks = ", ".join("?" for _ in uids)
        rows = await self._read("posts_by_uid", f"{_SELECT_POSTS} WHERE p.uid IN ({marks})", list(uids))
        return {row["uid"]: post_dict(row) for row in rows}

    async def outbox_counts(self) -> dict[str, int]:
        """Rows per outbox status; every status is present, with 0 when it has no rows."""
        rows = await self._read("outbox_counts", "SELECT status, COUNT(*) FROM outbox GROUP BY status")
        counts = dict.fromkeys(OUTBOX_STATUSES, 0)
        counts.update({row[0]: int(row[1]) for row in rows})
        return counts

    # -------------------------------------------------------------------------------- engine state

    async def save_state(self, name: str, data: str, now: float) -> None:
        """Store (replacing) the snapshot called `name`, e.g. a detector's learned baselines."""

        async def work(db: aiosqlite.Connection) -> None:
            await db.execute(_SAVE_STATE, (name, data, now))
            # SQLite keeps a statement's last bindings (its own copy of them) until it runs again,
            # and Python caches the statement: the engine's snapshot, megabytes, stayed in SQLite's
            # heap until the next one. Run again on a scratch row, removed in the same transaction,
            # the statement holds a few bytes.
            await db.execute(_SAVE_STATE, (_SCRATCH_STATE, "", now))
            await db.execute("DELETE FROM engine_state WHERE name = ?", (_SCRATCH_STATE,))

        await self._transaction("save_state", work)

    async def load_state(self, name: str) -> str | None:
        rows = await self._fetch("load_state", "SELECT data FROM engine_state WHERE name = ?", (name,))
        return str(rows[0]["data"]) if rows else None

    # -------------------------------------------------------------------- queries for the web API

    async def search_signals(
        self,
        *,
        rule: str | None = None,
        kind: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Signal]:
        """Signals newest first, optionally of one rule and kind and with `since <= at < until`."""
        where, params = _where(("rule = ?", rule), ("kind = ?", kind), ("at >= ?", since), ("at < ?", until))
        rows = await self._read(
            "search_signals",
            f"SELECT payload FROM signals{where} ORDER BY at DESC, rowid DESC LIMIT ? OFFSET ?",
            [*params, limit, offset],
        )
        return [signal_from_row(row) for row in rows]

    async def signals_after(self, rowid: int, limit: int = 500) -> list[tuple[int, Signal]]:
        """Signals stored after row `rowid`, in storage order, with their rowid: a live feed's cursor."""
        rows = await self._read(
            "signals_after",
            "SELECT rowid, payload FROM signals WHERE rowid > ? ORDER BY rowid LIMIT ?",
            (rowid, limit),
        )
        return [(int(row["rowid"]), signal_from_row(row)) for row in rows]

    async def last_rowids(self) -> dict[str, int]:
        """The newest rowid of `signals` and `outbox` (0 when empty): where a live feed starts."""
        rows = await self._read(
            "last_rowids",
            "SELECT (SELECT COALESCE(MAX(rowid), 0) FROM signals), "
            "(SELECT COALESCE(MAX(rowid), 0) FROM outbox)",
        )
        return {"signals": int(rows[0][0]), "outbox": int(rows[0][1])}

    async def search_alerts(
        self, *, status: str | None = None, sink: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[OutboxEntry]:
        """Outbox rows newest first, optionally of one status and sink."""
        where, params = _where(("status = ?", status), ("sink = ?", sink))
        rows = await self._read(
            "search_alerts",
            f"{_SELECT_OUTBOX}{where} ORDER BY rowid DESC LIMIT ? OFFSET ?",
            [*params, limit, offset],
        )
        return [outbox_entry_from_row(row) for row in rows]

    async def alerts_after(self, rowid: int, limit: int = 500) -> list[tuple[int, OutboxEntry]]:
        """Outbox rows written after row `rowid`, in storage order, with their rowid."""
        rows = await self._read(
            "alerts_after",
            f"SELECT rowid, {', '.join(OUTBOX_COLUMNS)} FROM outbox WHERE rowid > ? ORDER BY rowid LIMIT ?",
            (rowid, limit),
        )
        return [(int(row["rowid"]), outbox_entry_from_row(row)) for row in rows]

    async def search_posts(
        self, *, rule: str | None = None, text: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[dict[str, Any]]:
        """Posts newest first (by received_at), optionally matched by `rule` and containing `text`
        (case-insensitive substring: `instr`, so `%` and `_` in a query are plain characters)."""
        clauses: list[str] = []
        params: list[Any] = []
        if text:
            clauses.append("instr(lower(p.text), lower(?)) > 0")
            params.append(text)
        if rule is None:
            where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
            sql = f"{_SELECT_POSTS}{where} ORDER BY p.received_at DESC, p.rowid DESC LIMIT ? OFFSET ?"
        else:
            where = " AND ".join(["r.rule = ?", *clauses])
            params.insert(0, rule)
            sql = (
                f"{_SELECT_POSTS} JOIN post_rules AS r ON r.uid = p.uid WHERE {where} "
                "ORDER BY r.received_at DESC, r.uid DESC LIMIT ? OFFSET ?"
            )
        rows = await self._read("search_posts", sql, [*params, limit, offset])
        return [post_dict(row) for row in rows]

    async def rule_sentiment(self, since: float) -> dict[str, tuple[int, float | None]]:
        """Per rule: stored matched posts received at or after `since` and their mean sentiment."""
        rows = await self._read(
            "rule_sentiment",
            # From `posts` by its received_at index: a few seconds of rows, not every post_rules row.
            "SELECT j.value, COUNT(*), AVG(p.sentiment) FROM posts AS p, json_each(p.rules) AS j "
            "WHERE p.received_at >= ? AND p.rules <> '[]' GROUP BY j.value",
            (since,),
        )
        return {row[0]: (int(row[1]), None if row[2] is None else float(row[2])) for row in rows}


    async def newest_created(self, after_rowid: int | None = None) -> tuple[dict[str, float], int]:
        """Per source, the newest created_at among posts stored after row `after_rowid` (source lag),
        and the last rowid to pass next time. None: look at the last 10,000 posts only."""
        if after_rowid is None:
            rows = await self._read("newest_created", "SELECT COALESCE(MAX(rowid), 0) FROM posts")
            after_rowid = max(0, int(rows[0][0]) - 10_000)
        rows = await self._read(
            "newest_created",
            "SELECT source, MAX(created_at), MAX(rowid) FROM posts WHERE rowid > ? GROUP BY source",
            (after_rowid,),
        )
        last = max([after_rowid, *(int(row[2]) for row in rows)])
        return {row[0]: float(row[1]) for row in rows}, last


def _where(*filters: tuple[str, Any]) -> tuple[str, list[Any]]:
    """A WHERE clause (or "") and its parameters from (condition, value) pairs whose value is set."""
    used = [(clause, value) for clause, value in filters if value is not None]
    if not used:
        return "", []
    return " WHERE " + " AND ".join(clause for clause, _ in used), [value for _, value in used]
