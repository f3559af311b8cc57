"""The `discord` source inside the real daemon: SQLite store, cursors committed with the posts, dedup,
and a daemon restart in the middle of a conversation. Every message ends up in the posts table once."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

from harvester.app import App
from harvester.config.loader import LoadedConfig
from harvester.config.schema import Config, EngineConfig
from harvester.health import SourceState
from harvester.sources.discord import DiscordConfig
from tests.fake_discord import Changes, FakeDiscord, NotifyingDict

GUILD, CHAN_A, CHAN_B = 111, 201, 202


def daemon_config(tmp_path: Path, fake: FakeDiscord) -> Config:
    source = DiscordConfig.model_validate(
        {
            "type": "discord",
            "name": "dc",
            "token": fake.token,
            "guilds": [GUILD],
            "api_base_url": fake.api_base_url,
            "gateway_url": fake.gateway_url,
            "identify_delay": 0,
        }
    )
    return Config(
        state_dir=tmp_path, engine=EngineConfig(sentiment_workers=0), sources=[source], stats_interval=3600
    )


class Daemon:
    def __init__(self, config: Config, changes: Changes) -> None:
        self.app = App(LoadedConfig(config, None))
        self.changes = changes
        self.task = asyncio.create_task(self.app.run())

    async def connected(self) -> None:
        await asyncio.wait_for(self.app.started.wait(), timeout=15)
        health = self.app.health.sources["dc"]
        health.extra = NotifyingDict(self.changes)  # wake the test whenever the source reports
        await self.changes.until(lambda: health.state is SourceState.CONNECTED, "connected")

    def posts(self) -> int:
        return self.app.health.sources["dc"].posts

    async def stop(self) -> None:
        self.app.request_stop()
        await asyncio.wait_for(self.task, timeout=15)


def stored(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [uid for (uid,) in conn.execute("SELECT uid FROM posts")]


def cursor(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        (value,) = conn.execute("SELECT cursor FROM cursors WHERE source = 'dc'").fetchone()
    return str(value)


async def test_daemon_restart_stores_every_discord_message_once(tmp_path: Path) -> None:
    changes = Changes()
    fake = await FakeDiscord(guilds={GUILD: [CHAN_A, CHAN_B]}, changes=changes).start()
    try:
        config = daemon_config(tmp_path, fake)
        sent = []
        first = Daemon(config, changes)
        await first.connected()
        sent += [await fake.post_message(CHAN_A if i % 2 else CHAN_B, f"live {i}") for i in range(5)]
        await changes.until(lambda: first.posts() == 5, "5 live posts")
        await fake.invalidate_session()
        sent += [await fake.post_message(CHAN_A, f"gap {i}") for i in range(3)]
        await changes.until(lambda: first.posts() == 8, "the gap, backfilled")
        await first.stop()

        sent += [await fake.post_message(CHAN_B if i % 2 else CHAN_A, f"down {i}") for i in range(4)]
        second = Daemon(config, changes)
        await second.connected()
        await changes.until(lambda: second.posts() == 4, "the downtime, backfilled")
        sent += [await fake.post_message(CHAN_B, f"again {i}") for i in range(2)]
        await changes.until(lambda: second.posts() == 6, "live again")
        await second.stop()
    finally:
        await fake.stop()

    uids = stored(config.db_path)
    assert sorted(uids) == sorted(f"dc:{m['id']}" for m in sent)  # each message once
    entries = json.loads(cursor(config.db_path))
    assert entries[f"{GUILD}/{CHAN_B}"] == sent[-1]["id"]
    assert set(entries) == {f"{GUILD}/{CHAN_A}", f"{GUILD}/{CHAN_B}"}
