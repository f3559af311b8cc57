"""Another connection holds the daemon's database locked (BEGIN EXCLUSIVE) for a while, then lets go.

A backup tool, a `sqlite3` shell left inside a transaction, a second harvester pointed at the same file
by mistake: the daemon must keep running degraded, say so in /health, and once the lock is released
write everything it held back, losing and doubling nothing, and deliver every alert.

/health (and the API and /metrics) must answer promptly all the while: a load balancer or a health
check that times out would take the daemon for dead. So every request here is bounded by `PROMPT`,
far below the busy timeout a write waits out before it gives up.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from harvester.alerts.sinks.log import LogSinkConfig
from harvester.app import App
from harvester.config.schema import (
    AlertsConfig,
    Config,
    EngineConfig,
    RuleConfig,
    StoreConfig,
    VolumeSpikeConfig,
)
from harvester.config.web import WebConfig
from harvester.sources.synthetic import SyntheticConfig, SyntheticScenarios
from harvester.store import Store
from tests.web_helpers import running, url

RATE = 400  # posts per second: enough for scenarios to raise alerts within seconds, light on a loaded box
PROMPT = 5.0  # seconds: the bound on any one /health or API request, locked database or not


def busy_config(tmp_path: Path) -> Config:
    return Config(
        state_dir=tmp_path,
        engine=EngineConfig(
            clock="wall",
            sentiment_workers=0,
            volume_spike=VolumeSpikeConfig(
                bucket=1, window_buckets=2, warmup_buckets=3, min_count=10, threshold=4, cooldown=5
            ),
        ),
        # Snapshots and pruning every second, so they too run into the lock.
        store=StoreConfig(batch_max_posts=200, snapshot_interval=1, prune_interval=1),
        sources=[
            SyntheticConfig(
                name="fast",
                rate=RATE,
                seed=5,
                scenarios=SyntheticScenarios(
                    first_after=2, every=5, duration=3, kinds=["campaign", "brand_crisis"]
                ),
            )
        ],
        rules=[RuleConfig(name="brands", keywords=["acme air", "globex bank", "initech", "hooli"])],
        alerts=AlertsConfig(
            sinks=[LogSinkConfig(name="console")], group_wait=0.2, poll_interval=0.2, cooldown=1
        ),
        web=WebConfig(enabled=True, port=0),
        stats_interval=3600,
    )


class LockHolder:
    """A second connection, in its own thread, holding the write lock from `acquired` until `release`.

    In a thread because taking the lock may have to wait for the daemon's transaction in flight, and
    the daemon runs on this test's event loop: waiting there would wait for itself."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.acquired = threading.Event()
        self.release = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._hold, name="lock-holder", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _hold(self) -> None:
        try:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            try:
                conn.execute("BEGIN EXCLUSIVE")
                self.acquired.set()
                self.release.wait(120)
                conn.execute("ROLLBACK")
            finally:
                conn.close()
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.error = exc
            self.acquired.set()

    async def stop(self) -> None:
        self.release.set()
        await asyncio.to_thread(self._thread.join, 30)
        assert not self._thread.is_alive()


async def until(predicate: Callable[[], bool], within: float, what: str) -> None:
    """Wait (bounded) for a condition of the daemon that has no event of its own to await."""
    try:
        async with asyncio.timeout(within):
            while not predicate():  # noqa: ASYNC110 - polled state, bounded by the timeout
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def health(session: aiohttp.ClientSession, app: App) -> dict[str, Any]:
    async with session.get(url(app, "/health"), timeout=aiohttp.ClientTimeout(total=PROMPT)) as response:
        body: dict[str, Any] = await response.json()
        return body


async def health_until(
    session: aiohttp.ClientSession,
    app: App,
    predicate: Callable[[dict[str, Any]], bool],
    within: float,
    what: str,
) -> dict[str, Any]:
    """Ask /health (each answer bounded by PROMPT) until its report satisfies `predicate`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        body = await health(session, app)
        if predicate(body):
            return body
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last /health: {body}")
        await asyncio.sleep(0.1)


def stalled(body: dict[str, Any]) -> bool:
    return body["status"] == "degraded" and any("store writes stalled" in p for p in body["problems"])


def check_stored(db_path: Path, emitted: int) -> dict[str, int]:
    """Every post the source emitted stored once, the cursor covering exactly them; the outbox counts."""
    with sqlite3.connect(db_path) as conn:
        numbers = [int(uid.split(":")[1]) for (uid,) in conn.execute("SELECT uid FROM posts ORDER BY rowid")]
        (cursor,) = conn.execute("SELECT cursor FROM cursors WHERE source = 'fast'").fetchone()
        outbox = dict(conn.execute("SELECT status, count(*) FROM outbox GROUP BY status").fetchall())
    assert sorted(numbers) == list(range(1, len(numbers) + 1)), "a post was lost or stored twice"
    assert len(numbers) == emitted  # every post the source emitted, held through the lock
    assert int(cursor) == len(numbers)  # the cursor covers exactly the stored posts
    return outbox


@pytest.mark.timeout(150)
async def test_database_locked_by_another_connection_then_released(tmp_path: Path) -> None:
    config = busy_config(tmp_path)
    holder = LockHolder(config.db_path)
    async with running(config) as app, aiohttp.ClientSession() as session:
        assert app.writer is not None and app.dispatcher is not None and app.inbox is not None
        writer, dispatcher, source = app.writer, app.dispatcher, app.health.sources["fast"]
        await until(lambda: dispatcher.delivered >= 1, 60, "a first alert")
        assert (await health(session, app))["status"] == "ok"

        holder.start()
        await asyncio.to_thread(holder.acquired.wait, 30)
        assert holder.error is None, holder.error
        try:
            at_lock, batches_at_lock = source.posts, writer.committed_batches
            await until(lambda: writer.failing, 60, "store writes to fail")
            asked = time.monotonic()
            body = await health(session, app)
            health_s = time.monotonic() - asked
            assert body["status"] == "degraded", body
            assert any("store writes failing" in problem for problem in body["problems"]), body["problems"]
            assert body["sources"]["fast"]["state"] == "connected"
            # Still collecting: posts wait in memory, then the bounded queues push back on the source.
            await until(lambda: source.posts > at_lock + RATE, 60, "posts to keep arriving while locked")
            assert writer.failing and writer.committed_batches == batches_at_lock
        finally:
            await holder.stop()

        await until(lambda: not writer.failing and writer.committed_batches > batches_at_lock, 60, "recovery")
        body = await health(session, app)
        assert not any("store writes failing" in problem for problem in body["problems"]), body["problems"]
        await until(lambda: source.posts > at_lock + 3 * RATE, 60, "posts to flow on after the release")
        signals_before_stop = app.router.signals if app.router else 0
    # `running` stopped the daemon with its graceful drain: whatever was pending is committed now.
    assert holder.error is None, holder.error
    assert app.inbox.dropped == 0 and source.dropped == 0  # the inbox blocks: nothing is dropped

    outbox = check_stored(config.db_path, source.posts)
    with sqlite3.connect(config.db_path) as conn:
        (signals,) = conn.execute("SELECT count(*) FROM signals").fetchone()
    assert signals >= signals_before_stop >= 1
    assert set(outbox) == {"delivered"}, outbox  # alerts raised, and every one delivered
    assert dispatcher.delivered == outbox["delivered"]  # each exactly once
    after = source.posts - at_lock
    print(f"posts {source.posts} ({after} from the lock on); /health took {health_s:.1f} s while locked")


# Far above PROMPT: a /health that waited for a write to give up on the lock would fail its bound.
PATIENT_BUSY_TIMEOUT = 30.0


@pytest.mark.timeout(120)
async def test_health_answers_promptly_while_writes_wait_out_a_long_busy_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open = Store.open

    async def patient_open(cls: type[Store], /, path: Path, **kwargs: Any) -> Store:
        return await real_open(path, busy_timeout=PATIENT_BUSY_TIMEOUT)

    monkeypatch.setattr(Store, "open", classmethod(patient_open))
    config = busy_config(tmp_path)
    holder = LockHolder(config.db_path)
    async with running(config) as app, aiohttp.ClientSession() as session:
        assert app.writer is not None and app.store is not None
        writer, source = app.writer, app.health.sources["fast"]
        await until(lambda: writer.committed_batches >= 2, 30, "the first batches to be stored")
        await health_until(session, app, lambda b: b["status"] == "ok", 30, "a healthy daemon")

        holder.start()
        await asyncio.to_thread(holder.acquired.wait, 30)
        assert holder.error is None, holder.error
        try:
            batches_at_lock = writer.committed_batches
            body = stalled_body = await health_until(session, app, stalled, 30, "a stalled store in /health")
            # Said long before any write gave up: they wait PATIENT_BUSY_TIMEOUT for the lock first.
            assert not body["store"]["writes_failing"] and body["store"]["writes_waiting"] >= 1, body
            assert body["store"]["write_stalled_s"] >= 2.0
            assert body["sources"]["fast"]["state"] == "connected"
            # The dashboard's and the scraper's reads do not wait behind the stuck writes either.
            bound = aiohttp.ClientTimeout(total=PROMPT)
            for path in ("/api/signals", "/api/alerts", "/api/posts", "/metrics"):
                async with session.get(url(app, path), timeout=bound) as response:
                    assert response.status == 200, (path, await response.text())
            assert writer.committed_batches == batches_at_lock  # the lock really held every write back
        finally:
            await holder.stop()

        body = await health_until(session, app, lambda b: b["status"] == "ok", 30, "/health to recover")
        assert not stalled(body) and writer.committed_batches > batches_at_lock
    assert holder.error is None, holder.error
    assert set(check_stored(config.db_path, source.posts)) <= {"delivered"}
    print(f"posts {source.posts}; locked, /health said {stalled_body['problems']} {stalled_body['store']}")
