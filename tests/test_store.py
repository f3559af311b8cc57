"""Tests of the SQLite store: schema and migrations, file permissions, the crash-safety contract of
`write_batch` (including a real kill -9), retention, the alert outbox lifecycle and engine state."""

from __future__ import annotations

import _sqlite3
import asyncio
import contextlib
import ctypes
import os
import signal as signals
import sqlite3
import stat
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from harvester.errors import StoreError
from harvester.models import Alert, Post, Severity, Signal
from harvester.store import LATEST_VERSION, MIGRATIONS, OutboxEntry, PostRecord, Store
from harvester.store.bulk import MultiRowInsert
from harvester.store.connection import connect
from harvester.store.migrations import apply_migrations, split_statements
from tests.store_crash_child import REWIND

EPOCH = 1_770_000_000.0  # a fixed "now" in epoch seconds, so no test depends on the wall clock
CHILD = Path(__file__).with_name("store_crash_child.py")

TABLES = {"schema_version", "posts", "post_rules", "cursors", "seen", "signals", "outbox", "engine_state"}


def at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def record(
    n: int,
    *,
    source: str = "src",
    received: float = EPOCH,
    rules: tuple[str, ...] = (),
    sentiment: float | None = None,
    **fields: Any,
) -> PostRecord:
    values: dict[str, Any] = {
        "uid": f"{source}:{n}",
        "source": source,
        "native_id": str(n),
        "author": f"author{n}",
        "text": f"text {n}",
        "created_at": at(received - 5),
        "received_at": at(received),
    }
    values.update(fields)
    return PostRecord(post=Post(**values), rules=rules, sentiment=sentiment)


def make_signal(rule: str = "brand", *, when: float = EPOCH, kind: str = "volume_spike") -> Signal:
    window_start = at(when - 60)
    return Signal(
        id=Signal.make_id(rule, kind, window_start),
        rule=rule,
        kind=kind,
        severity=Severity.HIGH,
        at=at(when),
        window_start=window_start,
        window_end=at(when),
        observed=42.0,
        baseline=3.5,
        score=7.25,
        summary=f"{rule}: 42 posts in 60s",
        evidence={"examples": ["src:1"]},
    )


def alerts_for(signal: Signal, *sinks: str) -> list[Alert]:
    return [Alert(Alert.make_key(signal.id, sink), sink, signal, signal.at) for sink in sinks]


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def set_modes(modes: dict[Path, int]) -> None:
    for path, mode in modes.items():
        path.chmod(mode)


@contextlib.contextmanager
def raw_db(path: Path) -> Iterator[sqlite3.Connection]:
    """A plain sqlite3 connection, to look at the file the way another process would."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "harvester.db"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(db_path)
    try:
        yield opened
    finally:
        await opened.close()


# ---------------------------------------------------------------------------------- schema


async def test_open_creates_every_table_and_records_the_version(db_path: Path) -> None:
    store = await Store.open(db_path)
    await store.close()
    with raw_db(db_path) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        versions = [row[0] for row in conn.execute("SELECT version FROM schema_version ORDER BY version")]
    assert tables >= TABLES
    assert versions == [version for version, _ in MIGRATIONS]
    assert versions[-1] == LATEST_VERSION


async def test_reopening_an_up_to_date_database_applies_nothing_and_keeps_data(db_path: Path) -> None:
    store = await Store.open(db_path)
    await store.write_batch([record(1)], {"src": "c1"}, [])
    await store.close()

    store = await Store.open(db_path)
    try:
        assert await store.post_uids() == ["src:1"]
        assert await store.load_cursors() == {"src": "c1"}
    finally:
        await store.close()
    db = await connect(db_path)
    try:
        assert await apply_migrations(db) == []
    finally:
        await db.close()
    with raw_db(db_path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == len(MIGRATIONS)


async def test_a_failing_migration_leaves_the_previous_version_intact(db_path: Path) -> None:
    migrations = [
        (1, "CREATE TABLE first (x INTEGER);"),
        (2, "CREATE TABLE second (x INTEGER); INSERT INTO no_such_table VALUES (1);"),
    ]
    db = await connect(db_path)
    try:
        with pytest.raises(StoreError, match="migration 2"):
            await apply_migrations(db, migrations)
        assert not db.in_transaction
    finally:
        await db.close()
    with raw_db(db_path) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        versions = [row[0] for row in conn.execute("SELECT version FROM schema_version")]
    assert versions == [1]
    assert "first" in tables
    assert "second" not in tables  # rolled back with the rest of migration 2


async def test_a_database_from_a_newer_harvester_is_refused(db_path: Path) -> None:
    await (await Store.open(db_path)).close()
    with raw_db(db_path) as conn:
        conn.execute("INSERT INTO schema_version (version, applied_at) VALUES (?, 0)", (LATEST_VERSION + 1,))
    with pytest.raises(StoreError, match=r"schema version \d+ is newer"):
        await Store.open(db_path)


def write_file(path: Path, data: bytes) -> None:
    path.write_bytes(data)


async def test_a_file_that_is_not_a_database_raises_store_error(db_path: Path) -> None:
    write_file(db_path, b"this is not an SQLite database, just some text" * 100)
    with pytest.raises(StoreError):
        await Store.open(db_path)


def test_split_statements_keeps_trigger_bodies_and_string_literals_whole() -> None:
    sql = """
    CREATE TABLE t (x TEXT);
    INSERT INTO t VALUES ('a;b');
    CREATE TRIGGER tr AFTER INSERT ON t BEGIN INSERT INTO t VALUES ('c'); DELETE FROM t WHERE 0; END;
    """
    statements = list(split_statements(sql))
    assert len(statements) == 3
    assert statements[1] == "INSERT INTO t VALUES ('a;b');"
    assert statements[2].startswith("CREATE TRIGGER") and statements[2].endswith("END;")


# ------------------------------------------------------------------------ files and pragmas


async def test_created_directories_and_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "state" / "nested" / "harvester.db"
    previous = os.umask(0)  # the most permissive umask: the modes must not depend on it
    try:
        store = await Store.open(path)
        try:
            await store.write_batch([record(1)], {"src": "c"}, [("src:1", EPOCH)])
            sidecars = [path.with_name(path.name + suffix) for suffix in ("-wal", "-shm")]
            assert all(p.exists() for p in sidecars)  # WAL mode keeps both while the store is open
            assert {p.name: mode_of(p) for p in (path, *sidecars)} == {
                "harvester.db": 0o600,
                "harvester.db-wal": 0o600,
                "harvester.db-shm": 0o600,
            }
        finally:
            await store.close()
    finally:
        os.umask(previous)
    assert mode_of(tmp_path / "state") == 0o700
    assert mode_of(tmp_path / "state" / "nested") == 0o700


async def test_an_existing_directory_keeps_its_mode_and_a_loose_db_file_is_tightened(db_path: Path) -> None:
    with raw_db(db_path) as conn:
        conn.execute("CREATE TABLE unrelated (x)")
    set_modes({db_path.parent: 0o755, db_path: 0o644})
    store = await Store.open(db_path)
    await store.close()
    assert mode_of(db_path.parent) == 0o755
    assert mode_of(db_path) == 0o600


async def test_wal_mode_is_on(store: Store, db_path: Path) -> None:
    with raw_db(db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# ------------------------------------------------------------------ posts, cursors, dedup set


async def test_lone_surrogates_are_stored_as_replacement_characters_not_a_failed_batch(store: Store) -> None:
    # Half an emoji, as JSON can carry it ("\ud83d"), cannot be encoded as UTF-8 by SQLite.
    broken = record(1, uid="src:1\ud83d", text="acme \ud83d air \U0001f600", author="jo\udc00")
    assert await store.write_batch([broken, record(2)], {"src": "c\ud800"}, [("src:1\ud83d", EPOCH)]) == 2
    (stored,) = [p for p in await store.fetch_posts() if p["native_id"] == "1"]
    assert stored["text"] == "acme \ufffd air \U0001f600"  # the whole emoji is kept
    assert stored["author"] == "jo\ufffd" and stored["uid"] == "src:1\ufffd"
    assert await store.load_cursors() == {"src": "c\ufffd"}


async def test_write_batch_stores_posts_and_counts_only_new_uids(store: Store) -> None:
    first = [record(1, likes=3, url="https://x/1", sentiment=0.5), record(2), record(2)]
    assert await store.write_batch(first, {}, []) == 2  # the repeat inside the batch is ignored
    assert await store.write_batch([record(2), record(3)], {}, []) == 1  # a rewind overlapping one
    assert await store.count_posts() == 3
    assert await store.post_uids() == ["src:1", "src:2", "src:3"]

    (stored,) = [p for p in await store.fetch_posts() if p["uid"] == "src:1"]
    assert stored["likes"] == 3
    assert stored["url"] == "https://x/1"
    assert stored["sentiment"] == 0.5
    assert stored["received_at"] == EPOCH
    assert stored["created_at"] == EPOCH - 5
    assert stored["rules"] == []


@pytest.mark.parametrize("count", [1, 255, 256, 257, 700])
async def test_a_batch_of_any_size_is_stored_whole_in_order(store: Store, count: int) -> None:
    # Multi-row statements cover a batch in chunks and powers of two: every size must come out whole.
    records = [record(n, rules=("brand",) if n % 2 else (), sentiment=n / 1000) for n in range(count)]
    records.insert(max(1, count // 2), record(0))  # a repeat, in another statement than the first for most
    seen = [(f"src:{n}", EPOCH + n) for n in range(count)]
    assert await store.write_batch(records, {"src": str(count)}, seen) == count
    assert await store.post_uids() == [f"src:{n}" for n in range(count)]
    assert await store.load_seen(0, 10_000) == seen
    by_rule = await store.fetch_posts(limit=10_000, rule="brand")
    assert sorted(p["uid"] for p in by_rule) == sorted(f"src:{n}" for n in range(1, count, 2))
    assert {p["uid"]: p["sentiment"] for p in await store.fetch_posts(limit=10_000)} == {
        f"src:{n}": n / 1000 for n in range(count)
    }


async def test_the_rule_index_holds_only_posts_really_inserted(store: Store, db_path: Path) -> None:
    await store.write_batch([record(1, rules=("brand",)), record(2)], {}, [])
    # A repeat of post 1 arriving later with more rules is skipped, and so are its index rows.
    later = [record(1, received=EPOCH + 10, rules=("brand", "ticker")), record(3, rules=("ticker", "ticker"))]
    assert await store.write_batch(later, {}, []) == 1
    with raw_db(db_path) as conn:
        rows = conn.execute("SELECT rule, received_at, uid FROM post_rules ORDER BY rule").fetchall()
    assert rows == [("brand", EPOCH, "src:1"), ("ticker", EPOCH, "src:3")]
    assert await store.prune(EPOCH + 100, 50, 10**9) == {"posts": 3, "seen": 0, "outbox": 0, "signals": 0}
    with raw_db(db_path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM post_rules").fetchone()[0] == 0  # the delete trigger


async def test_a_version_2_database_is_upgraded_and_keeps_indexing_rules(db_path: Path) -> None:
    db = await connect(db_path)
    try:
        await apply_migrations(db, MIGRATIONS[:2])  # as written by the previous harvester
    finally:
        await db.close()
    store = await Store.open(db_path)
    try:
        await store.write_batch([record(1, rules=("brand",))], {}, [])
        assert [p["uid"] for p in await store.fetch_posts(rule="brand")] == ["src:1"]
    finally:
        await store.close()
    with raw_db(db_path) as conn:
        triggers = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
        assert conn.execute("SELECT COUNT(*) FROM post_rules").fetchone()[0] == 1  # not twice
    assert triggers == {"posts_unindex_rules"}


def test_multi_row_statements_cover_every_count_exactly() -> None:
    insert = MultiRowInsert("INSERT INTO t (a, b) VALUES ", 2)
    for count in range(0, 3 * insert.chunk + 5):
        shapes = insert.shapes(count)
        assert sum(shapes) == count
        assert all(0 < size <= insert.chunk for size in shapes)
    # Few distinct statements to prepare, whatever the batch sizes:
    assert len({size for count in range(600) for size in insert.shapes(count)}) <= 9
    assert insert.sql(2) == "INSERT INTO t (a, b) VALUES (?, ?), (?, ?)"


async def test_a_uid_written_again_keeps_its_first_version(store: Store) -> None:
    await store.write_batch([record(1, text="original")], {}, [])
    assert await store.write_batch([record(1, text="edited")], {}, []) == 0
    (stored,) = await store.fetch_posts()
    assert stored["text"] == "original"


async def test_cursors_round_trip_and_the_last_write_wins(store: Store) -> None:
    assert await store.load_cursors() == {}
    await store.write_batch([], {"reddit": "t3_a", "twitter": "100"}, [])
    await store.write_batch([], {"twitter": "200"}, [])
    assert await store.load_cursors() == {"reddit": "t3_a", "twitter": "200"}


@pytest.mark.parametrize(
    "failing_batch",
    [
        pytest.param(
            lambda: ([record(10), record(11, author=None), record(12)], [("src:10", EPOCH)]),
            id="a post violating NOT NULL in the middle",
        ),
        pytest.param(
            lambda: ([record(10), record(11)], [("src:10", EPOCH), (None, EPOCH)]),
            id="the last statement (seen) failing",
        ),
    ],
)
async def test_a_failing_batch_commits_nothing(store: Store, failing_batch: Any) -> None:
    await store.write_batch([record(1)], {"src": "1"}, [("src:1", EPOCH)])
    records, seen = failing_batch()
    with pytest.raises(StoreError, match="write_batch"):
        await store.write_batch(records, {"src": "12", "other": "x"}, seen)
    assert await store.post_uids() == ["src:1"]
    assert await store.load_cursors() == {"src": "1"}
    assert await store.load_seen(0, 100) == [("src:1", EPOCH)]
    # The connection is not left inside the failed transaction: the next batch commits normally.
    assert await store.write_batch([record(2)], {"src": "2"}, []) == 1
    assert await store.load_cursors() == {"src": "2"}


async def test_load_seen_returns_the_newest_entries_oldest_first(store: Store) -> None:
    seen = [(f"src:{i}", EPOCH + i) for i in range(10)]
    await store.write_batch([], {}, list(reversed(seen)))
    assert await store.load_seen(newer_than=EPOCH + 2, limit=100) == seen[3:]
    assert await store.load_seen(newer_than=0, limit=4) == seen[6:]
    assert await store.load_seen(newer_than=EPOCH + 9, limit=4) == []


async def test_fetch_posts_newest_first_and_by_rule(store: Store) -> None:
    await store.write_batch(
        [
            record(1, received=EPOCH + 1, rules=("brand",)),
            record(2, received=EPOCH + 2, rules=("brand", "ticker")),
            record(3, received=EPOCH + 3),
            record(4, received=EPOCH + 4, rules=("ticker",)),
        ],
        {},
        [],
    )
    # A re-delivered post that matched other rules this time stays as first stored.
    await store.write_batch([record(3, received=EPOCH + 3, rules=("brand",))], {}, [])

    assert [p["uid"] for p in await store.fetch_posts()] == ["src:4", "src:3", "src:2", "src:1"]
    assert [p["uid"] for p in await store.fetch_posts(limit=2)] == ["src:4", "src:3"]
    brand = await store.fetch_posts(rule="brand")
    assert [p["uid"] for p in brand] == ["src:2", "src:1"]
    assert brand[0]["rules"] == ["brand", "ticker"]
    assert [p["uid"] for p in await store.fetch_posts(limit=1, rule="ticker")] == ["src:4"]
    assert await store.fetch_posts(rule="nothing") == []


async def test_concurrent_writers_do_not_interleave_their_transactions(store: Store) -> None:
    batches = [[record(b * 100 + i) for i in range(50)] for b in range(20)]
    results = await asyncio.gather(
        *(store.write_batch(batch, {f"s{b}": str(b)}, []) for b, batch in enumerate(batches)),
        store.save_state("engine", "{}", EPOCH),
        store.prune(EPOCH, 10**9, 10**9),
    )
    assert results[:20] == [50] * 20
    assert await store.count_posts() == 1000
    assert len(await store.load_cursors()) == 20


async def test_a_cancelled_write_still_completes_its_whole_transaction(store: Store) -> None:
    """Cancelling the caller (as shutdown does) must not stop a transaction between two statements."""
    real_executemany = store._db.executemany
    writer: asyncio.Task[int] | None = None

    async def executemany_then_cancel_the_caller(sql: str, rows: Any) -> Any:
        cursor = await real_executemany(sql, rows)
        if writer is not None and "posts" in sql:
            writer.cancel()  # lands while the transaction still has the cursor upsert to do
        return cursor

    store._db.executemany = executemany_then_cancel_the_caller  # type: ignore[method-assign]
    writer = asyncio.create_task(store.write_batch([record(1), record(2)], {"src": "2"}, [("src:2", EPOCH)]))
    with pytest.raises(asyncio.CancelledError):
        await writer
    # The next operation queues behind the shielded transaction, which ran to its end.
    assert await store.post_uids() == ["src:1", "src:2"]
    assert await store.load_cursors() == {"src": "2"}
    assert await store.load_seen(0, 10) == [("src:2", EPOCH)]


async def test_a_locked_database_surfaces_as_store_error(db_path: Path) -> None:
    store = await Store.open(db_path, busy_timeout=0.05)
    try:
        with raw_db(db_path) as other:
            other.execute("BEGIN EXCLUSIVE")  # another process holding the write lock
            with pytest.raises(StoreError, match="locked"):
                await store.write_batch([record(1)], {"src": "1"}, [])
            other.execute("ROLLBACK")
        assert await store.write_batch([record(1)], {"src": "1"}, []) == 1
    finally:
        await store.close()


async def test_a_closed_store_refuses_work(db_path: Path) -> None:
    store = await Store.open(db_path)
    await store.close()
    await store.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        await store.write_batch([record(1)], {}, [])
    with pytest.raises(StoreError, match="closed"):
        await store.count_posts()


# -------------------------------------------------------------------------------- retention


async def test_prune_deletes_what_aged_out_in_each_table(store: Store) -> None:
    now, retention, ttl = EPOCH + 10_000, 5_000.0, 1_000.0
    old, recent = now - retention - 1, now - retention + 1
    await store.write_batch(
        [record(1, received=old, rules=("brand",)), record(2, received=recent, rules=("brand",))],
        {"src": "2"},
        [("src:1", now - ttl - 1), ("src:2", now - ttl + 1)],
    )
    old_signal, new_signal = make_signal("old", when=old), make_signal("new", when=recent)
    await store.save_signal_and_alerts(old_signal, alerts_for(old_signal, "slack", "email", "log"), old)
    await store.save_signal_and_alerts(new_signal, alerts_for(new_signal, "slack"), recent)
    await store.mark_delivered(Alert.make_key(old_signal.id, "slack"), old)  # old, delivered: goes
    await store.mark_dead(Alert.make_key(old_signal.id, "email"), 5, "smtp down", old)  # dead: stays
    await store.mark_delivered(Alert.make_key(new_signal.id, "slack"), recent)  # recent: stays

    counts = await store.prune(now, post_retention=retention, seen_ttl=ttl)

    assert counts == {"posts": 1, "seen": 1, "outbox": 1, "signals": 1}
    assert await store.post_uids() == ["src:2"]
    assert [p["uid"] for p in await store.fetch_posts(rule="brand")] == ["src:2"]
    assert await store.load_seen(0, 10) == [("src:2", now - ttl + 1)]
    assert [s.id for s in await store.recent_signals()] == [new_signal.id]
    assert await store.outbox_counts() == {"pending": 1, "delivered": 1, "dead": 1}
    assert await store.load_cursors() == {"src": "2"}  # cursors are never pruned
    assert await store.prune(now, retention, ttl) == {"posts": 0, "seen": 0, "outbox": 0, "signals": 0}


async def test_prune_works_through_more_rows_than_one_chunk(store: Store) -> None:
    store.prune_chunk = 3
    await store.write_batch([record(i, received=EPOCH - 100) for i in range(10)], {}, [])
    await store.write_batch([record(99, received=EPOCH)], {}, [])
    counts = await store.prune(EPOCH, post_retention=50, seen_ttl=50)
    assert counts["posts"] == 10
    assert await store.post_uids() == ["src:99"]


# ------------------------------------------------------------------------ signals and outbox


async def test_saving_a_signal_and_its_alerts_twice_stores_them_once(store: Store) -> None:
    signal = make_signal()
    alerts = alerts_for(signal, "slack", "webhook")
    assert await store.save_signal_and_alerts(signal, alerts, EPOCH) is True
    assert await store.save_signal_and_alerts(signal, alerts, EPOCH + 30) is False

    assert await store.recent_signals() == [signal]
    assert await store.outbox_counts() == {"pending": 2, "delivered": 0, "dead": 0}
    due = await store.due_alerts(EPOCH + 60)
    assert [(e.key, e.created_at, e.next_attempt_at) for e in due] == sorted(
        (a.key, EPOCH, EPOCH) for a in alerts
    )
    assert due[0].payload == alerts[0].payload_json()
    assert due[0].signal_id == signal.id


async def test_recent_signals_are_newest_first_and_limited(store: Store) -> None:
    signals_ = [make_signal(f"rule{i}", when=EPOCH + i) for i in range(5)]
    for s in signals_:
        await store.save_signal_and_alerts(s, [], EPOCH)
    assert await store.recent_signals(limit=3) == signals_[::-1][:3]


async def test_outbox_lifecycle_due_retry_delivered_dead_and_requeue(store: Store) -> None:
    assert await store.outbox_counts() == {"pending": 0, "delivered": 0, "dead": 0}
    assert await store.next_due_at() is None

    first, second = make_signal("a", when=EPOCH), make_signal("b", when=EPOCH + 1)
    await store.save_signal_and_alerts(first, alerts_for(first, "slack", "email"), EPOCH)
    await store.save_signal_and_alerts(second, alerts_for(second, "slack"), EPOCH + 1)
    slack_a, email_a = Alert.make_key(first.id, "slack"), Alert.make_key(first.id, "email")
    slack_b = Alert.make_key(second.id, "slack")

    assert [e.key for e in await store.due_alerts(EPOCH)] == sorted([slack_a, email_a])
    assert [e.key for e in await store.due_alerts(EPOCH + 1)] == [*sorted([slack_a, email_a]), slack_b]
    assert len(await store.due_alerts(EPOCH + 1, limit=1)) == 1
    assert await store.next_due_at() == EPOCH

    await store.mark_retry(slack_a, attempts=1, next_attempt_at=EPOCH + 100, error="HTTP 503")
    await store.mark_retry(email_a, attempts=1, next_attempt_at=EPOCH + 50, error="timeout")
    assert [e.key for e in await store.due_alerts(EPOCH + 10)] == [slack_b]
    await store.mark_delivered(slack_b, EPOCH + 10)
    assert await store.next_due_at() == EPOCH + 50
    entry = await store.outbox_entry(slack_a)
    assert entry == OutboxEntry(
        key=slack_a,
        sink="slack",
        signal_id=first.id,
        payload=alerts_for(first, "slack")[0].payload_json(),
        status="pending",
        attempts=1,
        next_attempt_at=EPOCH + 100,
        created_at=EPOCH,
        last_error="HTTP 503",
        delivered_at=None,
    )

    await store.mark_dead(slack_a, attempts=5, error="HTTP 400", now=EPOCH + 200)
    await store.mark_dead(email_a, attempts=5, error="auth", now=EPOCH + 200)
    assert await store.outbox_counts() == {"pending": 0, "delivered": 1, "dead": 2}
    assert await store.due_alerts(EPOCH + 10_000) == []
    assert await store.next_due_at() is None
    delivered = await store.outbox_entry(slack_b)
    assert delivered is not None and delivered.delivered_at == EPOCH + 10

    assert await store.requeue_dead(EPOCH + 300, sink="email") == 1
    assert await store.outbox_counts() == {"pending": 1, "delivered": 1, "dead": 1}
    (requeued,) = await store.due_alerts(EPOCH + 300)
    assert (requeued.key, requeued.attempts, requeued.next_attempt_at) == (email_a, 0, EPOCH + 300)
    assert await store.requeue_dead(EPOCH + 400) == 1
    assert await store.requeue_dead(EPOCH + 400) == 0
    assert await store.outbox_counts() == {"pending": 2, "delivered": 1, "dead": 0}


async def test_a_delivered_alert_is_not_dead_lettered_or_rescheduled_afterwards(store: Store) -> None:
    signal = make_signal()
    (alert,) = alerts_for(signal, "slack")
    await store.save_signal_and_alerts(signal, [alert], EPOCH)
    await store.mark_delivered(alert.key, EPOCH + 1)
    await store.mark_retry(alert.key, 2, EPOCH + 50, "late failure report")
    await store.mark_dead(alert.key, 9, "late failure report", EPOCH + 2)
    entry = await store.outbox_entry(alert.key)
    assert entry is not None
    assert (entry.status, entry.attempts, entry.last_error) == ("delivered", 0, None)


# ---------------------------------------------------------------------------------- state


async def test_engine_state_round_trips_and_is_replaced(store: Store) -> None:
    assert await store.load_state("volume") is None
    await store.save_state("volume", '{"baseline": 1}', EPOCH)
    await store.save_state("volume", '{"baseline": 2}', EPOCH + 1)
    await store.save_state("viral", "[]", EPOCH)
    assert await store.load_state("volume") == '{"baseline": 2}'
    assert await store.load_state("viral") == "[]"


def _sqlite_heap() -> int:
    """Bytes SQLite has allocated in this process (`sqlite3_memory_used`, through the library the
    sqlite3 module is linked with)."""
    lib = ctypes.CDLL(_sqlite3.__file__)
    lib.sqlite3_memory_used.restype = ctypes.c_int64
    return int(lib.sqlite3_memory_used())


async def test_a_saved_snapshot_does_not_stay_in_sqlites_heap(store: Store) -> None:
    await store.save_state("engine", "{}", EPOCH)  # the statement prepared and cached
    before = _sqlite_heap()
    big = '{"rules":"' + "x" * 4_000_000 + '"}'
    await store.save_state("engine", big, EPOCH + 1)
    # A statement keeps its last bindings: the 4 MB text stayed copied until the next save (+6 MB).
    # The page cache, at most 2 MB by default, may keep some of the pages written.
    assert _sqlite_heap() - before < 3_000_000
    assert await store.load_state("engine") == big
    names = [row["name"] for row in await store._fetch("test", "SELECT name FROM engine_state")]
    assert names == ["engine"]  # no scratch row left behind


# ------------------------------------------------------------------------------- kill -9


async def run_child_until_killed(db_path: Path, batch_size: int, kill_at: str) -> list[int]:
    """Run the crash child for two committed batches, then SIGKILL it as soon as it reports a line
    starting with `kill_at` (a step of its write cycle). Returns the batches it reported committed."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, str(CHILD), str(db_path), str(batch_size), stdout=asyncio.subprocess.PIPE
    )
    assert child.stdout is not None
    committed: list[int] = []
    try:
        while True:
            line = (await child.stdout.readline()).decode()
            assert line, "the crash child exited early"
            if line.startswith("committed "):
                committed.append(int(line.split()[1]))
            if len(committed) >= 2 and line.startswith(kill_at):
                break
    finally:
        child.send_signal(signals.SIGKILL)
        await child.communicate()
    assert child.returncode == -signals.SIGKILL
    return committed


# Where in the write cycle each round kills the child: just after a commit, and just after each
# statement of the transaction has started.
KILL_POINTS = [
    "committed",
    "sql BEGIN IMMEDIATE",
    "sql INSERT INTO posts",
    "sql INSERT INTO cursors",
    "sql INSERT INTO seen",
    "sql COMMIT",
]


async def test_kill_9_mid_stream_leaves_cursor_and_posts_consistent(db_path: Path) -> None:
    """A killed writer leaves a cursor that covers exactly the posts stored: none missing, none twice.

    One round per kill point, each resuming from the cursor the previous round left (with a small
    rewind, absorbed by uid uniqueness), as the daemon does after a crash.
    """
    batch_size = 20
    last_cursor = -1
    for kill_at in KILL_POINTS:
        committed = await run_child_until_killed(db_path, batch_size, kill_at)
        resumed_from = max(0, last_cursor + 1 - REWIND)
        assert committed[0] == resumed_from + batch_size - 1  # the child resumed from the cursor

        store = await Store.open(db_path)
        try:
            cursor = int((await store.load_cursors())["crash"])
            numbers = sorted(int(uid.removeprefix("crash:")) for uid in await store.post_uids())
            seen = await store.load_seen(0, 10**9)
            by_rule = await store.fetch_posts(limit=10**9, rule="crash-rule")
        finally:
            await store.close()
        assert cursor >= committed[-1], kill_at  # every batch reported as committed survived
        assert numbers == list(range(cursor + 1)), kill_at  # each n up to the cursor once, none beyond
        assert len(seen) == len(by_rule) == len(numbers), kill_at
        last_cursor = cursor
