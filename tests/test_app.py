"""The whole daemon: synthetic posts through the real pipeline, store, router and a sink."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import ClassVar, Literal

import pytest

from harvester.alerts.sinks.base import Sink
from harvester.app import App
from harvester.config.loader import LoadedConfig, load_config
from harvester.config.schema import (
    AlertsConfig,
    Config,
    EngineConfig,
    RuleConfig,
    SinkConfig,
    StoreConfig,
    VolumeSpikeConfig,
)
from harvester.models import Alert
from harvester.plugins import SINKS
from harvester.sources.synthetic import SyntheticConfig, SyntheticScenarios
from harvester.sources.synthetic_text import BRAND_KEYWORDS, DEFAULT_START, TICKERS

SHIPPED_CONFIG = Path(__file__).resolve().parent.parent / "config" / "harvester.yaml"


class MemorySinkConfig(SinkConfig):
    type: Literal["memory"] = "memory"


class MemorySink(Sink):
    config_class = MemorySinkConfig
    delivered: ClassVar[list[Alert]] = []

    async def send(self, alert: Alert) -> None:
        MemorySink.delivered.append(alert)


@pytest.fixture(autouse=True)
def memory_sink() -> object:
    SINKS.register("memory", MemorySinkConfig, MemorySink)
    MemorySink.delivered.clear()
    yield
    SINKS.unregister("memory")


def demo_rules() -> list[RuleConfig]:
    rules = [RuleConfig(name=f"brand-{i}", keywords=[kw]) for i, kw in enumerate(BRAND_KEYWORDS.values())]
    rules += [RuleConfig(name=f"ticker-{t.lower()}", cashtags=[t]) for t in TICKERS]
    return rules


def event_time_config(tmp_path: Path, limit: int, **scenarios: object) -> Config:
    return Config(
        state_dir=tmp_path,
        engine=EngineConfig(
            clock="event",
            volume_spike=VolumeSpikeConfig(
                bucket=5, window_buckets=3, warmup_buckets=4, min_count=10, threshold=5, cooldown=120
            ),
        ),
        store=StoreConfig(batch_max_posts=200),
        sources=[
            SyntheticConfig(
                name="demo",
                rate=25,
                pace="max",
                limit=limit,
                seed=42,
                scenarios=SyntheticScenarios(**scenarios),  # type: ignore[arg-type]
            )
        ],
        rules=demo_rules(),
        alerts=AlertsConfig(sinks=[MemorySinkConfig(name="mem")], cooldown=60),
        stats_interval=3600,
    )


def stored_numbers(db: Path) -> list[int]:
    with sqlite3.connect(db) as conn:
        return sorted(int(uid.split(":")[1]) for (uid,) in conn.execute("SELECT uid FROM posts"))


def stored_cursor(db: Path, source: str) -> str | None:
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT cursor FROM cursors WHERE source = ?", (source,)).fetchone()
    return None if row is None else str(row[0])


async def test_injected_crisis_becomes_a_delivered_alert(tmp_path: Path) -> None:
    config = event_time_config(
        tmp_path, limit=25 * 200, first_after=60, every=1000, duration=60, kinds=["brand_crisis"]
    )
    app = App(LoadedConfig(config, None), exit_when_sources_finish=True)
    await app.run()
    assert stored_numbers(config.db_path) == list(range(1, 25 * 200 + 1))
    assert len(stored_numbers(config.db_path)) == 25 * 200
    alerts = [a for a in MemorySink.delivered if a.signal.rule.startswith("brand-")]
    assert alerts, f"no brand alert; delivered: {[a.signal.summary for a in MemorySink.delivered]}"
    first = alerts[0].signal
    onset = DEFAULT_START.timestamp() + 60
    assert 0 <= first.at.timestamp() - onset <= 60  # signalled within a minute of event time
    assert first.evidence["mean_sentiment"] < 0  # a crisis, not a celebration
    with sqlite3.connect(config.db_path) as conn:
        statuses = dict(conn.execute("SELECT status, count(*) FROM outbox GROUP BY status").fetchall())
    assert statuses.get("delivered", 0) == len(MemorySink.delivered) and "pending" not in statuses


async def test_restart_resumes_from_the_cursor_without_gaps_or_duplicates(tmp_path: Path) -> None:
    config = event_time_config(tmp_path, limit=3000, enabled=False)
    for run in range(1, 3):
        await App(LoadedConfig(config, None), exit_when_sources_finish=True).run()
        numbers = stored_numbers(config.db_path)
        assert len(numbers) == 3000 * run
        assert numbers == list(range(numbers[0], numbers[0] + 3000 * run))
        assert stored_cursor(config.db_path, "demo") == str(numbers[-1])


async def test_engine_baselines_survive_a_restart(tmp_path: Path) -> None:
    config = event_time_config(tmp_path, limit=4000, enabled=False)
    first = App(LoadedConfig(config, None), exit_when_sources_finish=True)
    await first.run()
    assert first.engine is not None
    learned = {name: first.engine.detectors(name)["volume_spike"].closed for name in first.engine.rules}  # type: ignore[attr-defined]
    second = App(LoadedConfig(config, None), exit_when_sources_finish=True)
    await second.run()
    assert second.engine is not None
    after = {name: second.engine.detectors(name)["volume_spike"].closed for name in learned}  # type: ignore[attr-defined]
    assert all(after[name] > closed > 0 for name, closed in learned.items())


async def test_demo_settings_raise_no_alarm_on_an_hour_of_quiet_traffic(tmp_path: Path) -> None:
    config = event_time_config(tmp_path, limit=25 * 3600, enabled=False)
    app = App(LoadedConfig(config, None), exit_when_sources_finish=True)
    await app.run()
    assert app.router is not None and app.processor is not None
    assert app.processor.processed == 25 * 3600
    assert app.router.signals == 0, [a.signal.summary for a in MemorySink.delivered]


async def test_shipped_demo_alerts_on_the_crisis_and_not_before(tmp_path: Path) -> None:
    """The demo as a new user sees it, in event time: started mid-bucket at a busy hour, no alert may
    precede the first injected scenario, and the scenario's own rule alerts first."""
    loaded = load_config(SHIPPED_CONFIG, env={"HARVESTER_STATE_DIR": str(tmp_path)})
    demo = loaded.config.sources[0]
    start = DEFAULT_START + timedelta(hours=16, seconds=2.5)  # 1.6x the average rate, mid-bucket
    source = demo.model_copy(update={"pace": "max", "start": start, "limit": 40 * 120})
    config = loaded.config.model_copy(
        update={
            "sources": [source],
            "alerts": AlertsConfig(sinks=[MemorySinkConfig(name="mem")], cooldown=120),
        }
    )
    await App(LoadedConfig(config, None), exit_when_sources_finish=True).run()
    onset = start + timedelta(seconds=demo.scenarios.first_after)  # type: ignore[attr-defined]
    assert MemorySink.delivered, "the demo raised no alert"
    first = MemorySink.delivered[0].signal
    early = [a.signal.summary for a in MemorySink.delivered if a.signal.at < onset]
    assert early == []
    assert first.rule in {"acme-air", "globex-bank", "initech", "hooli", "umbrella-foods", "stark-mobile"}
    assert first.evidence["mean_sentiment"] < 0
    assert (first.at - onset).total_seconds() <= 15
