"""The store's read-only connection and its write-stall figure: what /health, /metrics and the API read
must not wait behind writes stuck on another process's lock, and /health must learn that writes are
stuck without reading the store."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from harvester.models import Alert
from harvester.store import Store
from tests.test_store import EPOCH, alerts_for, make_signal, record

# Far longer than any bound below: a read that waited for a queued write would blow the bound.
PATIENT = 30.0
BOUND = 5.0  # a bound on waiting for an answer that needs no waiting at all


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path / "h.db")
    yield opened
    await opened.close()


@pytest.fixture
async def patient_store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path / "h.db", busy_timeout=PATIENT)
    yield opened
    await opened.close()


async def test_outside_reads_answer_while_a_write_waits_for_another_process_lock(
    patient_store: Store,
) -> None:
    store = patient_store
    signal = make_signal()
    await store.save_signal_and_alerts(signal, alerts_for(signal, "hook"), EPOCH)
    await store.write_batch([record(1, rules=("brand",))], {"src": "1"}, [])
    clock = store.monotonic = FakeMonotonic()

    other = sqlite3.connect(store.path, timeout=0, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # a backup tool, a sqlite3 shell left in a transaction
    try:
        writing = asyncio.create_task(store.write_batch([record(2)], {"src": "2"}, []))
        async with asyncio.timeout(BOUND):
            while store.writes_waiting == 0:  # noqa: ASYNC110 - the task starts at the next loop turn
                await asyncio.sleep(0)
        clock.now += 3
        assert store.write_stalled_for() == 3.0
        async with asyncio.timeout(BOUND):
            status = await store.outbox_status()
            counts = await store.outbox_counts()
            posts = await store.search_posts(rule="brand")
            signals = await store.search_signals()
            rowids = await store.last_rowids()
        assert not writing.done()  # the write is still waiting for the lock all along
        assert status["per_sink"] == {"hook": {"pending": 1, "delivered": 0, "dead": 0}}
        assert counts == {"pending": 1, "delivered": 0, "dead": 0}
        assert [p["uid"] for p in posts] == ["src:1"]  # committed rows only
        assert [s.id for s in signals] == [signal.id] and rowids["signals"] == 1
    finally:
        other.execute("ROLLBACK")
        other.close()
    async with asyncio.timeout(BOUND):
        assert await writing == 1  # the lock is gone: the waiting write goes through
    assert store.writes_waiting == 0 and store.write_stalled_for() == 0.0
    assert await store.post_uids() == ["src:1", "src:2"]


async def test_write_stall_grows_through_failures_and_restarts_from_each_success(store: Store) -> None:
    clock = store.monotonic = FakeMonotonic()
    loop = asyncio.get_running_loop()
    first, second, third, fourth = (loop.create_future() for _ in range(4))

    def start(future: asyncio.Future[int]) -> asyncio.Task[int]:
        return asyncio.create_task(store._counted_write(lambda: future))

    assert store.write_stalled_for() == 0.0
    a = start(first)
    await asyncio.sleep(0)
    clock.now += 5
    b = start(second)  # queued behind the first: the stall is still counted from the first
    await asyncio.sleep(0)
    assert (store.writes_waiting, store.write_stalled_for()) == (2, 5.0)
    clock.now += 1
    first.set_exception(sqlite3.OperationalError("database is locked"))
    with pytest.raises(sqlite3.OperationalError):
        await a
    assert store.write_stalled_for() == 6.0  # a failed write is no progress
    clock.now += 1
    second.set_result(1)
    await b
    assert (store.writes_waiting, store.write_stalled_for()) == (0, 0.0)

    c, d = start(third), start(fourth)
    await asyncio.sleep(0)
    clock.now += 4
    third.set_result(1)
    await c  # progress: the write still waiting has waited from now on
    clock.now += 1
    assert (store.writes_waiting, store.write_stalled_for()) == (1, 1.0)
    fourth.set_result(1)
    await d
    assert store.write_stalled_for() == 0.0


async def test_the_read_connection_refuses_writes(store: Store) -> None:
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        await store._reader.execute("DELETE FROM outbox")


async def test_reads_see_what_was_committed_just_before(store: Store) -> None:
    """Two connections, but an operation awaited before a read is visible to it (WAL: each read
    starts a snapshot of everything committed)."""
    signal = make_signal()
    (alert,) = alerts_for(signal, "hook")
    await store.save_signal_and_alerts(signal, [alert], EPOCH)
    assert (await store.outbox_counts())["pending"] == 1
    await store.mark_delivered(alert.key, EPOCH + 1)
    assert await store.outbox_counts() == {"pending": 0, "delivered": 1, "dead": 0}
    assert [e.key for e in await store.search_alerts(status="delivered")] == [
        Alert.make_key(signal.id, "hook")
    ]
