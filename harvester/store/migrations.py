"""The store's schema, as an ordered list of versioned migrations kept in code.

A migration is `(version, SQL)`. Versions only ever grow; a released migration is never edited, a
change to the schema is a new entry at the end. Each migration runs in its own `BEGIN IMMEDIATE`
transaction together with the row that records it in `schema_version`, so a crash part-way through
leaves the database at the previous version, never half-migrated.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Sequence

import aiosqlite

from harvester.errors import StoreError
from harvester.store.connection import rollback_quietly

Migration = tuple[int, str]

_SCHEMA_V1 = """
CREATE TABLE posts (
    uid         TEXT PRIMARY KEY NOT NULL,
    source      TEXT NOT NULL,
    native_id   TEXT NOT NULL,
    author      TEXT NOT NULL,
    text        TEXT NOT NULL,
    created_at  REAL NOT NULL,
    received_at REAL NOT NULL,
    url         TEXT,
    channel     TEXT,
    lang        TEXT,
    likes       INTEGER,
    reposts     INTEGER,
    replies     INTEGER,
    score       INTEGER,
    followers   INTEGER,
    rules       TEXT NOT NULL DEFAULT '[]',  -- JSON array of rule names
    sentiment   REAL
);
CREATE INDEX posts_by_received_at ON posts (received_at);

-- One row per (post, matched rule), so `fetch_posts(rule=...)` is a range scan of this table's primary
-- key instead of a scan of every post's `rules` text. The key (rule, received_at, uid) is the whole
-- row: one B-tree, no secondary index, which keeps the cost per matched post low. Filled and emptied
-- by triggers: a row appears only when its post is really inserted (a duplicate uid skipped by
-- ON CONFLICT DO NOTHING fires no trigger) and goes when retention deletes the post (found by its
-- full key, from the deleted post's own rules and received_at).
CREATE TABLE post_rules (
    rule        TEXT NOT NULL,
    received_at REAL NOT NULL,
    uid         TEXT NOT NULL,
    PRIMARY KEY (rule, received_at, uid)
) WITHOUT ROWID;

CREATE TRIGGER posts_index_rules AFTER INSERT ON posts
WHEN NEW.rules <> '[]'
BEGIN
    INSERT OR IGNORE INTO post_rules (rule, received_at, uid)  -- OR IGNORE: a rule listed twice
    SELECT value, NEW.received_at, NEW.uid FROM json_each(NEW.rules);
END;

CREATE TRIGGER posts_unindex_rules AFTER DELETE ON posts
WHEN OLD.rules <> '[]'
BEGIN
    DELETE FROM post_rules
    WHERE rule IN (SELECT value FROM json_each(OLD.rules))
      AND received_at = OLD.received_at
      AND uid = OLD.uid;
END;

CREATE TABLE cursors (
    source     TEXT PRIMARY KEY NOT NULL,
    cursor     TEXT NOT NULL,
    updated_at REAL NOT NULL
);

CREATE TABLE seen (
    uid     TEXT PRIMARY KEY NOT NULL,
    seen_at REAL NOT NULL
);
CREATE INDEX seen_by_seen_at ON seen (seen_at);

CREATE TABLE signals (
    id       TEXT PRIMARY KEY NOT NULL,
    rule     TEXT NOT NULL,
    kind     TEXT NOT NULL,
    severity TEXT NOT NULL,
    at       REAL NOT NULL,
    payload  TEXT NOT NULL  -- Signal.to_json()
);
CREATE INDEX signals_by_at ON signals (at);

CREATE TABLE outbox (
    key             TEXT PRIMARY KEY NOT NULL,
    sink            TEXT NOT NULL,
    signal_id       TEXT NOT NULL,
    payload         TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    created_at      REAL NOT NULL,
    updated_at      REAL NOT NULL,  -- last status change: when it was delivered, dead-lettered, requeued
    last_error      TEXT,
    delivered_at    REAL
);
-- Serves due_alerts / next_due_at (status = 'pending', next_attempt_at <= now) and, by its status
-- prefix, the retention of delivered rows.
CREATE INDEX outbox_by_status_due ON outbox (status, next_attempt_at);

CREATE TABLE engine_state (
    name       TEXT PRIMARY KEY NOT NULL,
    data       TEXT NOT NULL,
    updated_at REAL NOT NULL
);
"""

# Alert routing (issue 4): signals waiting in a group before they become one outbox row, the group an
# outbox row belongs to (delivery keeps each group's order), and silences created at run time.
_SCHEMA_V2 = """
ALTER TABLE outbox ADD COLUMN group_key TEXT;
-- The "is an older alert of this group still pending?" probe of due_alerts / next_due_at.
CREATE INDEX outbox_by_group ON outbox (group_key, status);

CREATE TABLE alert_staging (
    group_key TEXT NOT NULL,
    sink      TEXT NOT NULL,
    signal_id TEXT NOT NULL,
    staged_at REAL NOT NULL,
    PRIMARY KEY (group_key, signal_id)
);

CREATE TABLE silences (
    id         TEXT PRIMARY KEY NOT NULL,
    matchers   TEXT NOT NULL,  -- JSON object label -> glob
    starts_at  REAL NOT NULL,
    ends_at    REAL,           -- NULL: until expired
    comment    TEXT NOT NULL DEFAULT '',
    created_by TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL
);
"""

# `post_rules` is filled by `Store.write_batch` itself, in one INSERT … SELECT per batch over the posts
# the batch really inserted, instead of a trigger run per post (a fifth of the store's cost per post).
_SCHEMA_V3 = """
DROP TRIGGER posts_index_rules;
"""

MIGRATIONS: Sequence[Migration] = ((1, _SCHEMA_V1), (2, _SCHEMA_V2), (3, _SCHEMA_V3))

LATEST_VERSION = MIGRATIONS[-1][0]

_CREATE_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    version    INTEGER PRIMARY KEY NOT NULL,
    applied_at REAL NOT NULL
)
"""


def split_statements(sql: str) -> Iterator[str]:
    """Yield the complete statements of `sql` one by one.

    `executescript` would be simpler but always COMMITs an open transaction first, which would break
    "one migration, one transaction". `sqlite3.complete_statement` knows about string literals and
    trigger bodies, so semicolons inside them do not split a statement.
    """
    pending = ""
    for piece in sql.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \t\r\n;"):
                yield pending.strip()
            pending = ""
    if pending.strip(" \t\r\n;"):
        raise ValueError(f"incomplete SQL statement at the end of a migration: {pending.strip()[:80]!r}")


async def current_version(db: aiosqlite.Connection) -> int:
    """The highest applied migration, 0 for a new database."""
    rows = await db.execute_fetchall("SELECT MAX(version) FROM schema_version")
    value = next(iter(rows))[0]
    return int(value) if value is not None else 0


async def apply_migrations(
    db: aiosqlite.Connection, migrations: Sequence[Migration] = MIGRATIONS
) -> list[int]:
    """Bring the database up to the newest migration; return the versions applied (often none).

    The connection must be in autocommit mode (`isolation_level=None`): transactions are explicit.
    Refuses, with `StoreError`, a database written by a newer harvester, rather than guessing at a
    schema it does not know.
    """
    latest = migrations[-1][0] if migrations else 0
    await db.execute(_CREATE_VERSION_TABLE)
    found = await current_version(db)
    if found > latest:
        raise StoreError(
            f"database schema version {found} is newer than this harvester supports ({latest}); "
            "upgrade harvester or point it at another database"
        )
    applied: list[int] = []
    for version, sql in migrations:
        if version <= found:
            continue
        await db.execute("BEGIN IMMEDIATE")
        try:
            # Re-read under the write lock: another process may have migrated in the meantime.
            if await current_version(db) >= version:
                await db.execute("COMMIT")
                continue
            for statement in split_statements(sql):
                await db.execute(statement)
            await db.execute(
                "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)", (version, time.time())
            )
            await db.execute("COMMIT")
        except sqlite3.Error as exc:
            await rollback_quietly(db)
            raise StoreError(f"schema migration {version} failed: {exc}") from exc
        except BaseException:
            await rollback_quietly(db)
            raise
        applied.append(version)
    return applied
