"""Durable state in SQLite: posts, source cursors, the dedup set, signals, the alert outbox, and
engine snapshots. See `harvester.store.db` for the crash-safety contract."""

from harvester.store.db import Store
from harvester.store.migrations import LATEST_VERSION, MIGRATIONS
from harvester.store.records import OutboxEntry, PostRecord

__all__ = ["LATEST_VERSION", "MIGRATIONS", "OutboxEntry", "PostRecord", "Store"]
