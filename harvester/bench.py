"""`harvester bench`: push synthetic posts through the real pipeline (store included) and print figures.

The ceiling is VADER itself: every post matches at least one rule here (an all-traffic rule, as a
user watching overall sentiment would configure), so every post is scored once, exactly like the
VADER-only pass over the same texts read back from the store afterwards. Latency is measured from a
post entering the inbox to the engine's verdict on it (and, separately, to each signal it raised).
With posts pushed as fast as possible the inbox stays full, so those latencies are mostly queueing:
they show what a saturated daemon looks like, not the idle-path cost.

The engine's own cost with 1, 100 and 1,000 rules (`harvester.bench_rules`) is then measured in the
same run on the same stored texts: `Engine.process_many` (match, sentiment, detectors) in a plain loop,
no store, no asyncio, on a stretch of consecutive posts from the middle of the run (the stream as
dense as the daemon saw it), each chunk timed alternately with VADER alone on the same texts, in CPU
time, so the ratio does not follow the speed of a shared host as it drifts during the run.
"""

from __future__ import annotations

import asyncio
import resource
import sqlite3
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from harvester.app import App, Hooks
from harvester.bench_rules import generated_rules
from harvester.config.loader import LoadedConfig
from harvester.config.schema import (
    Config,
    EngineConfig,
    LogConfig,
    RuleConfig,
    StoreConfig,
    VolumeSpikeConfig,
)
from harvester.engine import Engine
from harvester.engine.sentiment import SENTIMENT_MAX_CHARS, SentimentScorer
from harvester.logging import configure_logging
from harvester.models import Post
from harvester.pipeline import tuned_gc
from harvester.sources.synthetic import SyntheticConfig, SyntheticScenarios
from harvester.sources.synthetic_text import BRAND_KEYWORDS, TICKERS

ENGINE_RULE_COUNTS = (1, 100, 1000)
ENGINE_SAMPLE_POSTS = 20_000
ENGINE_CHUNK = 256  # posts per `Engine.process_many` call, as a replay reads them
# Texts VADER alone is timed on before and after each daemon run with a generated rule set (spread
# over the texts that run processes), so that run's ratio compares figures taken minutes apart at
# most (a shared host's speed drifts more).
VADER_CHECK_TEXTS = 10_000
# Posts per daemon run with each generated rule set: enough for the windows to fill and the rates to
# settle (the first seconds of a run are start-up), few enough that three runs take a few minutes.
RULE_PIPELINE_POSTS = 50_000

T = TypeVar("T")


@dataclass
class EngineFigures:
    """`Engine.process_many` throughput with one generated rule set."""

    rules: int
    keywords: int
    cashtags: int
    posts: int
    posts_per_s: float  # per second of CPU time
    vader_posts_per_s: float  # VADER alone on the same chunks, timed alternately with the engine
    rules_per_post: float  # mean number of rules a post matched (the all-traffic rule included)
    build_s: float  # compiling the rules, not part of posts_per_s

    @property
    def ratio(self) -> float:
        return self.posts_per_s / self.vader_posts_per_s if self.vader_posts_per_s else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "posts_per_s": round(self.posts_per_s, 1),
            "vader_posts_per_s": round(self.vader_posts_per_s, 1),
            "ratio": round(self.ratio, 3),
            "keywords": self.keywords,
            "cashtags": self.cashtags,
            "rules_per_post": round(self.rules_per_post, 2),
            "build_s": round(self.build_s, 3),
        }


@dataclass
class PipelineRuleFigures:
    """The whole daemon (as the main run) with one generated rule set instead of the brand rules."""

    rules: int
    posts: int
    posts_per_s: float
    signals: int
    vader_posts_per_s: float  # VADER alone, the mean of a pass just before and one just after the run

    @property
    def ratio(self) -> float:
        return self.posts_per_s / self.vader_posts_per_s if self.vader_posts_per_s else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "posts": self.posts,
            "posts_per_s": round(self.posts_per_s, 1),
            "vader_posts_per_s": round(self.vader_posts_per_s, 1),
            "ratio": round(self.ratio, 3),
            "signals": self.signals,
        }


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
    engine_posts: int = 0
    engine_rules: dict[int, EngineFigures] = field(default_factory=dict)
    pipeline_rules: dict[int, PipelineRuleFigures] = field(default_factory=dict)

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
            "engine_posts": self.engine_posts,
            "engine_rules": {str(n): figures.as_json() for n, figures in self.engine_rules.items()},
            "pipeline_rules": {str(n): figures.as_json() for n, figures in self.pipeline_rules.items()},
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
                *self._pipeline_lines(f["pipeline_rules"]),
                *self._engine_lines(f["engine_rules"]),
            ]
        )

    def _pipeline_lines(self, runs: dict[str, dict[str, Any]]) -> list[str]:
        if not runs:
            return []
        lines = ["daemon by rule set    the same pipeline with the generated rule sets (as below):"]
        for n, run in runs.items():
            label = f"  {n} rule{'s' if n != '1' else ''}"
            lines.append(
                f"{label:<22}{run['posts_per_s']:,.0f} posts/s, ratio {run['ratio']:.3f} to VADER alone "
                f"at {run['vader_posts_per_s']:,.0f} around the run ({run['posts']:,} posts, "
                f"{run['signals']} signals)"
            )
        return lines

    def _engine_lines(self, engine: dict[str, dict[str, Any]]) -> list[str]:
        if not engine:
            return []
        lines = [
            "engine alone          Engine.process_many: match + VADER + detectors, no store, no asyncio,",
            f"                      on {self.engine_posts:,} consecutive posts of the {self.stored:,} "
            "(CPU time, chunks timed alternately with VADER alone)",
        ]
        for n, e in engine.items():
            label = f"  {n} rule{'s' if n != '1' else ''}"
            lines.append(
                f"{label:<22}{e['posts_per_s']:,.0f} posts/s, ratio {e['ratio']:.3f} to VADER alone at "
                f"{e['vader_posts_per_s']:,.0f} "
                f"({e['keywords']:,} keywords, {e['cashtags']:,} cashtags; "
                f"{e['rules_per_post']:.1f} rules matched per post)"
            )
        return lines


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


_POST_QUERY = (
    "SELECT uid, source, native_id, author, text, created_at, lang, likes, reposts, replies, followers "
    "FROM posts ORDER BY rowid"
)
StoredRow = tuple[Any, ...]


def _stored_rows(db_path: Path) -> list[StoredRow]:
    """The benchmark's posts read back from the store, in the order they were written, as rows: the
    VADER pass needs only their texts, and only the engine pass's sample is made into `Post`s."""
    with sqlite3.connect(db_path) as db:
        return db.execute(_POST_QUERY).fetchall()


def _stored_post(row: StoredRow) -> Post:
    uid, source, native_id, author, text, created, lang, likes, reposts, replies, followers = row
    at = datetime.fromtimestamp(created, UTC)
    return Post(
        uid=uid,
        source=source,
        native_id=native_id,
        author=author,
        text=text,
        created_at=at,
        received_at=at,
        lang=lang,
        likes=likes,
        reposts=reposts,
        replies=replies,
        followers=followers,
    )


def _middle_stretch(posts: list[T], size: int) -> list[T]:
    """`size` consecutive posts from the middle of the run: as dense in event time as the daemon saw
    them (a sample of every tenth post would give each rule a tenth of its traffic, and so batches a
    tenth as full as a busy daemon's), and past the warm-up, with the run's scenarios on both sides."""
    start = max(0, (len(posts) - size) // 2)
    return posts[start : start + size]


def engine_throughput(posts: list[Post], rules: list[RuleConfig]) -> EngineFigures:
    """Run `posts` through a fresh `Engine` with `rules`, in event time, each chunk timed alternately
    with VADER alone on the same texts (CPU time: the loop is single-threaded and does no I/O)."""
    started = time.perf_counter()
    engine = Engine(rules, EngineConfig())
    _ = engine.scorer  # built lazily on first use: load VADER's lexicon here, not inside the timed loop
    build = time.perf_counter() - started
    vader = SentimentScorer()
    matched = 0
    now = float("-inf")
    timed: list[tuple[Post, float]] = []
    for post in posts:  # event time, never going back (as a replay does)
        now = max(now, post.created_at.timestamp())
        timed.append((post, now))
    engine_seconds = vader_seconds = 0.0
    clock = time.process_time
    with tuned_gc():  # as the daemon's pipeline runs
        for first in range(0, len(timed), ENGINE_CHUNK):
            chunk = timed[first : first + ENGINE_CHUNK]
            started = clock()
            for post, _ in chunk:
                vader.score(post.text[:SENTIMENT_MAX_CHARS])
            vader_seconds += clock() - started
            started = clock()
            for verdict in engine.process_many(chunk):
                matched += len(verdict.rules)
            engine_seconds += clock() - started
    return EngineFigures(
        rules=len(rules),
        keywords=sum(len(rule.keywords) for rule in rules),
        cashtags=sum(len(rule.cashtags) for rule in rules),
        posts=len(posts),
        posts_per_s=len(posts) / engine_seconds if engine_seconds > 0 else 0.0,
        vader_posts_per_s=len(posts) / vader_seconds if vader_seconds > 0 else 0.0,
        rules_per_post=matched / len(posts) if posts else 0.0,
        build_s=build,
    )


@dataclass
class _Run:
    processed: int
    seconds: float
    signals: int
    latencies: list[float]
    signal_latencies: list[float]
    db_path: Path


def _run_daemon(
    state_dir: Path,
    rules: list[RuleConfig],
    posts: int,
    *,
    seed: int,
    sentiment_workers: int | None,
    rate: float | None,
) -> _Run:
    """One run of the real daemon (`App`) on the synthetic stream, as fast as it takes posts (or
    paced at `rate`), until the source has sent `posts`."""
    config = Config(
        state_dir=state_dir,
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
        rules=rules,
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
    return _Run(
        processed=app.processor.processed if app.processor else 0,
        seconds=time.perf_counter() - started[0],
        signals=app.router.signals if app.router else 0,
        latencies=latencies,
        signal_latencies=signal_latencies,
        db_path=config.db_path,
    )


def run_bench(
    posts: int = 200_000,
    seed: int = 7,
    sentiment_workers: int | None = None,
    rate: float | None = None,
    *,
    engine_posts: int = ENGINE_SAMPLE_POSTS,
    engine_rule_counts: tuple[int, ...] = ENGINE_RULE_COUNTS,
    rule_posts: int = RULE_PIPELINE_POSTS,
) -> BenchFigures:
    """Push `posts` through the pipeline: as fast as possible, or paced at `rate` posts/s in real
    time (then throughput is just the offered rate, and the latencies are those of a daemon that
    keeps up rather than of a full inbox). Then, on the stored texts: VADER alone (the ceiling), the
    engine alone with each generated rule set, and the daemon again with each rule set for
    `rule_posts` posts (0 skips those runs)."""
    configure_logging("warning", "console")
    with tempfile.TemporaryDirectory(prefix="harvester-bench-") as tmp:
        main = _run_daemon(
            Path(tmp) / "main",
            bench_rules(),
            posts,
            seed=seed,
            sentiment_workers=sentiment_workers,
            rate=rate,
        )
        peak = _peak_rss_mb()
        stored = _stored_rows(main.db_path)
        texts = [row[4] for row in stored]
        vader = vader_only(texts)
        sampled = _middle_stretch(stored, engine_posts) if engine_posts > 0 else []
        sample = [_stored_post(row) for row in sampled]
        engine = {
            n: engine_throughput(sample, generated_rules(n, texts, seed))
            for n in engine_rule_counts
            if sample
        }
        by_rules: dict[int, PipelineRuleFigures] = {}
        # The texts those runs process (the same seed makes the same stream), spread over all of them:
        # a scenario's texts score slower than everyday ones, so the first few thousand alone would
        # set the ceiling too high.
        seen = texts[:rule_posts]
        check = seen[:: max(1, len(seen) // VADER_CHECK_TEXTS)]
        for n in engine_rule_counts if rule_posts > 0 and texts else ():
            before = vader_only(check)
            run = _run_daemon(
                Path(tmp) / f"rules-{n}",
                generated_rules(n, texts, seed),
                rule_posts,
                seed=seed,
                sentiment_workers=sentiment_workers,
                rate=rate,
            )
            ceiling = (before + vader_only(check)) / 2
            by_rules[n] = PipelineRuleFigures(
                n, run.processed, run.processed / run.seconds, run.signals, ceiling
            )
    latencies, signal_latencies = main.latencies, main.signal_latencies
    return BenchFigures(
        posts=main.processed,
        seconds=main.seconds,
        posts_per_s=main.processed / main.seconds,
        vader_only_posts_per_s=vader,
        p50_ms=_percentile(latencies, 0.5) * 1000,
        p99_ms=_percentile(latencies, 0.99) * 1000,
        signal_p50_ms=_percentile(signal_latencies, 0.5) * 1000 if signal_latencies else None,
        signal_p99_ms=_percentile(signal_latencies, 0.99) * 1000 if signal_latencies else None,
        signals=main.signals,
        stored=len(texts),
        peak_rss_mb=peak,
        engine_posts=len(sample),
        engine_rules=engine,
        pipeline_rules=by_rules,
    )
