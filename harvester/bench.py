"""`harvester bench`: push synthetic posts through the real pipeline (store included) and print figures.

The ceiling is VADER itself: every post matches at least one rule here (an all-traffic rule, as a
user watching overall sentiment would configure), so every post is scored once, exactly like the
VADER-only pass over the same texts read back from the store afterwards. Latency is measured from a
post entering the inbox to the engine's verdict on it (and, separately, to each signal it raised).
With posts pushed as fast as possible the inbox stays full, so those latencies are mostly queueing:
they show what a saturated daemon looks like, not the idle-path cost.
"""

from __future__ import annotations

import asyncio
import resource
import sqlite3
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harvester.app import App, Hooks
from harvester.config.loader import LoadedConfig
from harvester.config.schema import (
    Config,
    EngineConfig,
    LogConfig,
    RuleConfig,
    StoreConfig,
    VolumeSpikeConfig,
)
from harvester.engine.sentiment import SENTIMENT_MAX_CHARS, SentimentScorer
from harvester.logging import configure_logging
from harvester.sources.synthetic import SyntheticConfig, SyntheticScenarios
from harvester.sources.synthetic_text import BRAND_KEYWORDS, TICKERS


@dataclass
class BenchFigures:
    posts: int
    seconds: float
    posts_per_s: float
    vader_only_posts_per_s: float
    p50_ms: float
    p99_ms: float
    signal_p50_ms: float | None
    signal_p99_ms: float | None
    signals: int
    stored: int
    peak_rss_mb: float

    @property
    def ratio(self) -> float:
        return self.posts_per_s / self.vader_only_posts_per_s if self.vader_only_posts_per_s else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "posts": self.posts,
            "posts_per_s": round(self.posts_per_s, 1),
            "vader_only_posts_per_s": round(self.vader_only_posts_per_s, 1),
            "ratio": round(self.ratio, 3),
            "p50_ms": round(self.p50_ms, 2),
            "p99_ms": round(self.p99_ms, 2),
            "signal_p50_ms": None if self.signal_p50_ms is None else round(self.signal_p50_ms, 2),
            "signal_p99_ms": None if self.signal_p99_ms is None else round(self.signal_p99_ms, 2),
            "signals": self.signals,
            "stored": self.stored,
            "peak_rss_mb": round(self.peak_rss_mb, 1),
        }

    def as_text(self) -> str:
        f = self.as_json()
        return "\n".join(
            [
                f"posts                 {f['posts']} ({f['stored']} stored, {f['signals']} signals)",
                f"pipeline              {f['posts_per_s']:,.0f} posts/s end to end (store included)",
                f"VADER alone           {f['vader_only_posts_per_s']:,.0f} posts/s on the same texts",
                f"ratio                 {f['ratio']:.3f}",
                f"inbox -> verdict      p50 {f['p50_ms']} ms, p99 {f['p99_ms']} ms (saturated: queueing)",
                f"inbox -> signal       p50 {f['signal_p50_ms']} ms, p99 {f['signal_p99_ms']} ms",
                f"peak RSS              {f['peak_rss_mb']} MB",
            ]
        )


def bench_rules() -> list[RuleConfig]:
    """A rule per synthetic brand and ticker, plus one all-traffic rule so every post is scored."""
    rules = [
        RuleConfig(name=f"brand-{i}", keywords=[keyword]) for i, keyword in enumerate(BRAND_KEYWORDS.values())
    ]
    rules += [RuleConfig(name=f"ticker-{t.lower()}", cashtags=[t]) for t in TICKERS]
    rules.append(
        RuleConfig(name="all-traffic", match_all=True, volume_spike=VolumeSpikeConfig(enabled=False))
    )
    return rules


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[round(q * 1000) - 1]


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def vader_only(texts: list[str]) -> float:
    scorer = SentimentScorer()
    started = time.perf_counter()
    for text in texts:
        scorer.score(text[:SENTIMENT_MAX_CHARS])
    return len(texts) / (time.perf_counter() - started)


def run_bench(
    posts: int = 200_000, seed: int = 7, sentiment_workers: int | None = None, rate: float | None = None
) -> BenchFigures:
    """Push `posts` through the pipeline: as fast as possible, or paced at `rate` posts/s in real
    time (then throughput is just the offered rate, and the latencies are those of a daemon that
    keeps up rather than of a full inbox)."""
    configure_logging("warning", "console")
    with tempfile.TemporaryDirectory(prefix="harvester-bench-") as tmp:
        config = Config(
            state_dir=Path(tmp),
            log=LogConfig(level="warning"),
            store=StoreConfig(snapshot_interval=3600, prune_interval=3600),
            engine=EngineConfig(
                clock="event" if rate is None else "wall",
                sentiment_workers="auto" if sentiment_workers is None else sentiment_workers,
                volume_spike=VolumeSpikeConfig(
                    bucket=2, window_buckets=3, warmup_buckets=5, min_count=20, threshold=5, cooldown=20
                ),
            ),
            sources=[
                SyntheticConfig(
                    name="bench",
                    rate=rate or 2000,
                    seed=seed,
                    pace="max" if rate is None else "realtime",
                    limit=posts,
                    # A scenario every 20 s of event time, so even a short run measures signal latency.
                    scenarios=SyntheticScenarios(
                        first_after=12, every=20, duration=10, kinds=["brand_crisis", "ticker_pump"]
                    ),
                )
            ],
            rules=bench_rules(),
            stats_interval=3600,
        )
        latencies: list[float] = []
        signal_latencies: list[float] = []
        started: list[float] = []

        def processed(enqueued: float, _signalled: bool) -> None:
            latencies.append(time.perf_counter() - enqueued)

        hooks = Hooks(
            on_processed=processed,
            on_signal_latency=signal_latencies.append,
            on_started=lambda _app: started.append(time.perf_counter()),
        )
        app = App(LoadedConfig(config, None), hooks=hooks, exit_when_sources_finish=True)
        asyncio.run(app.run())
        seconds = time.perf_counter() - started[0]
        peak = _peak_rss_mb()
        processed_posts = app.processor.processed if app.processor else 0
        signals = app.router.signals if app.router else 0
        with sqlite3.connect(config.db_path) as db:
            texts = [row[0] for row in db.execute("SELECT text FROM posts")]
        vader = vader_only(texts)
    return BenchFigures(
        posts=processed_posts,
        seconds=seconds,
        posts_per_s=processed_posts / seconds,
        vader_only_posts_per_s=vader,
        p50_ms=_percentile(latencies, 0.5) * 1000,
        p99_ms=_percentile(latencies, 0.99) * 1000,
        signal_p50_ms=_percentile(signal_latencies, 0.5) * 1000 if signal_latencies else None,
        signal_p99_ms=_percentile(signal_latencies, 0.99) * 1000 if signal_latencies else None,
        signals=signals,
        stored=len(texts),
        peak_rss_mb=peak,
    )
