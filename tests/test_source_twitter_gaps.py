"""Nothing is lost across disconnects and restarts: the stream plus the gap backfill cover every
tweet, and dedup (uid uniqueness) absorbs their overlap. The real tweepy, the fake X API, and for
the restarts the whole daemon with its SQLite store."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from harvester.app import App
from harvester.config.loader import LoadedConfig
from harvester.config.schema import Config, EngineConfig
from harvester.sources.twitter import TwitterConfig
from tests.fake_twitter import DilatedTime, FakeX
from tests.test_source_twitter import ACME, make, running


@pytest.fixture
async def fake() -> AsyncIterator[FakeX]:
    server = FakeX()
    await server.start()
    yield server
    await server.stop()


class Producer:
    """Publishes a tweet for `tag` every `interval` real seconds until stopped."""

    def __init__(self, fake: FakeX, tag: str, interval: float) -> None:
        self.fake = fake
        self.tag = tag
        self.interval = interval
        self.published: list[str] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            self.published.append(self.fake.publish(self.tag))
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def test_fifty_forced_disconnects_lose_nothing(fake: FakeX) -> None:
    fake.disconnect_every = 4  # every connection ends after 4 tweets: dropped or closed, in turn
    source, ctx, inbox = make(fake, DilatedTime(0.01), rules=[ACME])
    producer = Producer(fake, "acme", 0.003)
    async with running(source, ctx):
        await fake.wait_connections(1)
        producer.start()
        await fake.wait_connections(51, within=40)  # 50 forced disconnects and the stream back
        await producer.stop()
        published = set(producer.published)
        await inbox.wait_for(lambda: published <= set(inbox.ids()), within=20)
        # The last gap is closed once the cursor reaches the newest tweet.
        newest = max(producer.published, key=int)
        await inbox.wait_for(lambda: ctx.cursor == newest, within=20)

    counts = Counter(inbox.ids())
    assert set(counts) == published  # every tweet, and nothing that was not published
    extra = ctx.health.extra
    disconnects = extra["disconnects"]
    assert isinstance(disconnects, dict)
    assert disconnects.get("clean_close", 0) >= 20 and disconnects.get("network", 0) >= 20
    assert isinstance(extra["backfills"], int) and extra["backfills"] >= 10
    from_backfill = [e for e in inbox.envelopes if e.post is not None and e.cursor is None]
    assert from_backfill, "no tweet needed the backfill: the test did not exercise a gap"
    emitted = sum(counts.values())
    print(  # figures for the report: how much the backfill recovered and how much dedup absorbs
        f"published={len(published)} emitted={emitted} duplicates={emitted - len(counts)}"
        f" backfills={extra['backfills']} backfilled={extra['backfilled_posts']} disconnects={disconnects}"
    )


def stored(db: Path) -> tuple[list[str], str | None]:
    if not db.exists():
        return [], None
    with sqlite3.connect(db) as conn:
        uids = [uid for (uid,) in conn.execute("SELECT uid FROM posts")]
        row = conn.execute("SELECT cursor FROM cursors WHERE source = 'tw'").fetchone()
    return uids, None if row is None else str(row[0])


async def wait_stored(db: Path, predicate: object, within: float = 20.0) -> None:
    assert callable(predicate)
    async with asyncio.timeout(within):
        # The daemon commits in its own time; poll the database (a condition, bounded by the timeout).
        while not predicate(*stored(db)):  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def test_two_daemon_restarts_mid_stream_lose_and_duplicate_nothing(fake: FakeX, tmp_path: Path) -> None:
    time = DilatedTime(0.01)
    config = Config(
        state_dir=tmp_path,
        engine=EngineConfig(sentiment_workers=0, clock="wall"),
        sources=[TwitterConfig(name="tw", bearer_token="token-a", api_base=fake.base, backfill={"delay": 0})],
        rules=[ACME],
        stats_interval=3600,
    )
    db = config.db_path
    producer = Producer(fake, "acme", 0.005)
    cursors_at_stop: list[str | None] = []
    for run in range(3):
        app = App(LoadedConfig(config, None), clock=time, sleep=time.sleep)
        task = asyncio.create_task(app.run())
        await fake.wait_connections(run + 1)
        if run == 0:
            producer.start()
        else:  # resumed from the cursor committed at the last stop
            since = cursors_at_stop[-1]
            await wait_stored(
                db, lambda _u, _c, since=since: any(r.get("since_id") == since for r in fake.search_requests)
            )
        published_now = len(producer.published)
        await wait_stored(db, lambda uids, _c, n=published_now: len(uids) >= n + 10)  # some tweets live
        if run == 2:
            await producer.stop()
            published = set(producer.published)
            newest = max(producer.published, key=int)
            await wait_stored(
                db,
                lambda uids, cursor, p=published, n=newest: (
                    {u.split(":")[1] for u in uids} >= p and cursor == n
                ),
            )
        app.request_stop()
        await asyncio.wait_for(task, 20)
        await asyncio.wait_for(fake.connections[-1].closed.wait(), 5)  # the stop closed the stream
        cursors_at_stop.append(stored(db)[1])

    uids, cursor = stored(db)
    assert len(uids) == len(set(uids)) == len(producer.published)
    assert {u.split(":")[1] for u in uids} == set(producer.published)
    assert cursor == max(producer.published, key=int)
    assert None not in cursors_at_stop
