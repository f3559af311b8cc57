"""A daemon with its web server in the test's own event loop, and ways to wait on it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from harvester.alerts.sinks.log import LogSinkConfig
from harvester.app import App
from harvester.config.loader import LoadedConfig
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
from harvester.sources.synthetic_text import BRAND_KEYWORDS, TICKERS

TOKEN = "t0ken-for-tests-0123456789"


def rules() -> list[RuleConfig]:
    found = [RuleConfig(name=f"brand-{i}", keywords=[kw]) for i, kw in enumerate(BRAND_KEYWORDS.values())]
    return found + [RuleConfig(name=f"ticker-{t.lower()}", cashtags=[t]) for t in TICKERS]


def config(
    tmp_path: Path,
    *,
    limit: int = 600,
    crisis: bool = False,
    token: str | None = None,
    **web: Any,
) -> Config:
    scenarios = (
        SyntheticScenarios(first_after=60, every=1000, duration=60, kinds=["brand_crisis"])
        if crisis
        else SyntheticScenarios(enabled=False)
    )
    return Config(
        state_dir=tmp_path,
        engine=EngineConfig(
            clock="event",
            sentiment_workers=0,
            volume_spike=VolumeSpikeConfig(
                bucket=5, window_buckets=3, warmup_buckets=4, min_count=10, threshold=5, cooldown=120
            ),
        ),
        store=StoreConfig(batch_max_posts=200),
        sources=[
            SyntheticConfig(name="demo", rate=25, pace="max", limit=limit, seed=42, scenarios=scenarios)
        ],
        rules=rules(),
        alerts=AlertsConfig(sinks=[LogSinkConfig(name="console")], cooldown=60, group_wait=0),
        web=WebConfig(
            enabled=True,
            port=0,
            token=None if token is None else SecretStr(token),
            **{"push_interval": 0.05, **web},
        ),
        stats_interval=3600,
    )


async def wait_until(predicate: Callable[[], bool], within: float = 30.0) -> None:
    """Wait for a condition of the running daemon (bounded: a failure shows as a timeout)."""
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 - the daemon's state has no event to await; bounded
            await asyncio.sleep(0.02)


def running(cfg: Config, secrets: frozenset[str] = frozenset()) -> AbstractAsyncContextManager[App]:
    return running_loaded(LoadedConfig(cfg, None, secrets))


@asynccontextmanager
async def running_loaded(loaded: LoadedConfig) -> AsyncIterator[App]:
    app = App(loaded)
    task = asyncio.create_task(app.run())
    try:
        async with asyncio.timeout(30):
            started = asyncio.ensure_future(app.started.wait())
            await asyncio.wait([task, started], return_when="FIRST_COMPLETED")
            started.cancel()
        if task.done():
            task.result()
        assert app.web is not None and app.web.port
        yield app
    finally:
        app.request_stop()
        await asyncio.wait_for(task, 30)


def finished(app: App) -> Callable[[], bool]:
    return lambda: all(h.state.value == "finished" for h in app.health.sources.values())


def url(app: App, path: str) -> str:
    assert app.web is not None
    return f"{app.web.url}{path}"
