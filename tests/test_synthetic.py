"""The synthetic source: determinism, cursors, pacing, daily rhythm, and each scenario kind's effect."""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError
from structlog.testing import capture_logs
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from harvester.clock import ManualClock
from harvester.config.detectors import CampaignConfig
from harvester.engine.detectors.base import Observation
from harvester.engine.detectors.campaign import index_for
from harvester.health import HealthRegistry, SourceState
from harvester.models import Post
from harvester.sources.base import Envelope, SourceContext
from harvester.sources.synthetic import TICK_SECONDS, SyntheticConfig, SyntheticSource
from harvester.sources.synthetic_text import (
    BRAND_KEYWORDS,
    BRANDS,
    DEFAULT_START,
    TICKERS,
    ScenarioPlan,
    StreamGenerator,
    daily_rhythm,
)

VADER = SentimentIntensityAnalyzer()


class StopRun(Exception):
    """Raised by the fake sleep to end a realtime run after a simulated duration."""


@dataclass
class Harness:
    """A SourceContext with a list inbox, a ManualClock and a sleep that moves it."""

    clock: ManualClock
    stop_at: datetime | None = None
    cursor: str | None = None
    envelopes: list[Envelope] = field(default_factory=list)
    sleeps: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.health = HealthRegistry().source("synthetic", "synthetic")
        self.ctx = SourceContext(
            name="synthetic",
            put=self._put,
            health=self.health,
            clock=self.clock,
            sleep=self._sleep,
            rng=random.Random(0),
            cursor=self.cursor,
        )

    async def _put(self, envelope: Envelope) -> bool:
        self.envelopes.append(envelope)
        return True

    async def _sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.clock.advance(seconds)
        if self.stop_at is not None and self.clock.now() >= self.stop_at:
            raise StopRun

    @property
    def posts(self) -> list[Post]:
        return [e.post for e in self.envelopes if e.post is not None]


def config(**overrides: Any) -> SyntheticConfig:
    return SyntheticConfig.model_validate({"type": "synthetic", **overrides})


async def run_max(cursor: str | None = None, **overrides: Any) -> Harness:
    """Run a pace-max stream to its limit and return the harness holding what it emitted."""
    harness = Harness(ManualClock(DEFAULT_START), cursor=cursor)
    await SyntheticSource(config(pace="max", **overrides)).run(harness.ctx)
    return harness


async def run_realtime(seconds: float, start: datetime, **overrides: Any) -> Harness:
    """Run a realtime stream on the fake clock for `seconds` of simulated time."""
    harness = Harness(ManualClock(start), stop_at=start + timedelta(seconds=seconds))
    with pytest.raises(StopRun):
        await SyntheticSource(config(**overrides)).run(harness.ctx)
    return harness


# ---------------------------------------------------------------------------------------------------
# Identity, cursor, determinism


async def test_same_seed_gives_the_same_stream_and_another_seed_does_not() -> None:
    first = await run_max(seed=7, limit=2000)
    again = await run_max(seed=7, limit=2000)
    other = await run_max(seed=8, limit=2000)
    assert [p.text for p in first.posts] == [p.text for p in again.posts]
    assert [p.author for p in first.posts] == [p.author for p in again.posts]
    assert [p.text for p in first.posts] != [p.text for p in other.posts]


async def test_uids_are_unique_and_a_restart_continues_after_the_cursor() -> None:
    first = await run_max(limit=500)
    assert [p.native_id for p in first.posts] == [str(n) for n in range(1, 501)]
    assert [e.cursor for e in first.envelopes] == [p.native_id for p in first.posts]
    assert all(p.uid == f"synthetic:{p.native_id}" and p.source == "synthetic" for p in first.posts)

    resumed = await run_max(cursor=first.ctx.cursor, limit=500)
    assert resumed.posts[0].native_id == "501"
    uids = [p.uid for p in first.posts + resumed.posts]
    assert len(set(uids)) == len(uids) == 1000
    # Event time goes on from where the first run was, not back to `start`.
    assert resumed.posts[0].created_at >= first.posts[-1].created_at


async def test_a_cursor_that_is_not_a_sequence_number_is_refused() -> None:
    with pytest.raises(ValueError, match="sequence number"):
        await run_max(cursor="not-a-number", limit=10)


async def test_uses_the_instance_name_for_uids_and_source() -> None:
    harness = Harness(ManualClock(DEFAULT_START))
    await SyntheticSource(config(name="demo", pace="max", limit=3)).run(harness.ctx)
    assert [p.uid for p in harness.posts] == ["demo:1", "demo:2", "demo:3"]
    assert {p.source for p in harness.posts} == {"demo"}


# ---------------------------------------------------------------------------------------------------
# Pacing


async def test_realtime_emits_rate_times_simulated_seconds() -> None:
    start = datetime(2026, 1, 5, 16, 0, tzinfo=UTC)  # peak hour: rhythm 1.6x
    harness = await run_realtime(120.0, start, rate=50, scenarios={"enabled": False})
    expected = 50 * daily_rhythm(start.timestamp()) * 120.0
    assert expected * 0.85 <= len(harness.posts) <= expected * 1.15
    assert harness.health.state is SourceState.CONNECTED


async def test_realtime_stamps_posts_with_the_clock_and_sleeps_per_tick_not_per_post() -> None:
    start = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    harness = await run_realtime(2.0, start, rate=20_000, scenarios={"enabled": False})
    posts = harness.posts
    assert len(posts) > 20_000
    assert len(harness.sleeps) <= 2.0 / TICK_SECONDS + 1
    assert all(p.created_at == p.received_at for p in posts)
    assert start < posts[0].created_at <= posts[-1].created_at <= start + timedelta(seconds=2)
    assert len({p.created_at for p in posts}) >= 2.0 / TICK_SECONDS - 1  # spread over the ticks


async def test_realtime_stops_at_the_limit() -> None:
    harness = Harness(ManualClock(DEFAULT_START), stop_at=DEFAULT_START + timedelta(seconds=60))
    await SyntheticSource(config(rate=100, limit=250)).run(harness.ctx)
    assert len(harness.posts) == 250


async def test_max_pace_emits_exactly_the_limit_in_event_time_from_start() -> None:
    start = datetime(2026, 2, 1, 12, 0, tzinfo=UTC)
    harness = await run_max(limit=1234, rate=10, start=start.isoformat(), scenarios={"enabled": False})
    posts = harness.posts
    assert len(posts) == 1234
    assert harness.sleeps == []
    assert posts[0].created_at == start
    assert all(a.created_at <= b.created_at for a, b in itertools.pairwise(posts))
    assert all(p.received_at == p.created_at for p in posts)
    # ~123 s of event time at 10 posts/s times the 12:00 rhythm (~1.3x): roughly 95 s.
    span = (posts[-1].created_at - posts[0].created_at).total_seconds()
    assert 60 < span < 160
    assert harness.health.state is SourceState.FINISHED


async def test_day_night_rhythm_in_event_time() -> None:
    harness = await run_max(rate=0.2, limit=int(0.2 * 86_400), scenarios={"enabled": False})
    per_hour = Counter(p.created_at.hour for p in harness.posts)
    assert per_hour[16] > 2.5 * per_hour[4]
    assert per_hour[16] > 0.2 * 3600 * 1.3  # about 1.6x the average rate at the peak


# ---------------------------------------------------------------------------------------------------
# Content


async def test_everyday_posts_look_like_a_social_stream() -> None:
    posts = (await run_max(limit=5000, scenarios={"enabled": False})).posts
    words = [len(p.text.split()) for p in posts]
    assert min(words) >= 8 and max(words) <= 55
    assert sum(p.lang == "en" for p in posts) > 0.9 * len(posts)
    assert len({p.author for p in posts}) > 1000
    assert all(p.url and p.url.startswith("https://example.com/") for p in posts)
    channels = {p.channel for p in posts}
    assert {"twitter", "reddit/r/wallstreetbets", "discord/#trading"} <= channels
    assert any("#" in p.text for p in posts) and any("@" in p.text for p in posts)
    followers = sorted(p.followers or 0 for p in posts)
    assert followers[len(followers) // 2] < 2000 < followers[-1]  # log-normal: a long tail
    assert {p.engagement for p in posts} != {0}


@pytest.mark.parametrize("target", [*BRANDS, *(f"${t}" for t in TICKERS)])
async def test_each_target_is_a_small_share_of_everyday_traffic(target: str) -> None:
    posts = await everyday_posts()
    share = sum(mentions(p, target) for p in posts) / len(posts)
    assert 0.003 < share < 0.05


_EVERYDAY: list[Post] = []


async def everyday_posts() -> list[Post]:
    """One scenario-free sample shared by the share tests (generated once)."""
    if not _EVERYDAY:
        _EVERYDAY.extend((await run_max(limit=20_000, scenarios={"enabled": False})).posts)
    return _EVERYDAY


def mentions(post: Post, target: str) -> bool:
    if target.startswith("$"):
        return target in post.text
    if target.startswith("@"):
        return target in post.text or post.author == target[1:]
    return BRAND_KEYWORDS[target] in post.text.lower()


# ---------------------------------------------------------------------------------------------------
# Scenarios


@dataclass
class ScenarioRun:
    posts: list[Post]
    kind: str
    target: str
    start: datetime
    end: datetime

    def between(
        self, lo: datetime, hi: datetime, keep: Callable[[Post], bool] = lambda p: True
    ) -> list[Post]:
        return [p for p in self.posts if lo <= p.created_at < hi and keep(p)]

    def inside(self, keep: Callable[[Post], bool] = lambda p: True) -> list[Post]:
        return self.between(self.start, self.end, keep)

    def before(self, keep: Callable[[Post], bool] = lambda p: True) -> list[Post]:
        return self.between(self.posts[0].created_at, self.start, keep)

    def per_second(self, posts: list[Post], lo: datetime, hi: datetime) -> float:
        return len(posts) / (hi - lo).total_seconds()


BASELINE_S = 600.0
WINDOW_S = 120.0


async def run_scenario(kind: str, seed: int = 42) -> ScenarioRun:
    """Ten quiet minutes of event time from 12:00, then one scenario of `kind`."""
    rate = 20.0
    with capture_logs() as logs:
        harness = await run_max(
            rate=rate,
            seed=seed,
            start="2026-01-05T12:00:00Z",
            limit=int(rate * 1.5 * (BASELINE_S + WINDOW_S + 30)),
            scenarios={"first_after": BASELINE_S, "every": 3600, "duration": WINDOW_S, "kinds": [kind]},
        )
    started = [e for e in logs if e["event"] == "synthetic scenario started"]
    assert len(started) == 1, started
    event = started[0]
    assert event["kind"] == kind and event["log_level"] == "info"
    run = ScenarioRun(
        harness.posts,
        kind,
        event["target"],
        datetime.fromisoformat(event["start"]),
        datetime.fromisoformat(event["end"]),
    )
    assert run.posts[-1].created_at > run.end, "the run must cover the whole scenario window"
    assert run.end - run.start == timedelta(seconds=WINDOW_S)
    return run


def mean_compound(posts: list[Post]) -> float:
    return sum(float(VADER.polarity_scores(p.text)["compound"]) for p in posts) / len(posts)


def volume_ratio(run: ScenarioRun, keep: Callable[[Post], bool]) -> float:
    inside = run.per_second(run.inside(keep), run.start, run.end)
    before = run.per_second(run.before(keep), run.posts[0].created_at, run.start)
    return inside / before


async def test_brand_crisis_multiplies_mentions_with_negative_text() -> None:
    run = await run_scenario("brand_crisis")
    assert run.target in BRANDS

    def about(p: Post) -> bool:
        return mentions(p, run.target)

    assert volume_ratio(run, about) >= 5.0
    assert mean_compound(run.inside(about)) < -0.4
    assert mean_compound(run.before(about)) > mean_compound(run.inside(about)) + 0.4
    crisis_words = ("outage", "refund", "lawsuit", "recall", "hacked", "scam", "cancelled", "delayed")
    assert sum(any(w in p.text.lower() for w in crisis_words) for p in run.inside(about)) > 0.5 * len(
        run.inside(about)
    )


async def test_ticker_pump_multiplies_cashtag_volume_with_positive_text() -> None:
    run = await run_scenario("ticker_pump")
    assert run.target.removeprefix("$") in TICKERS

    def about(p: Post) -> bool:
        return mentions(p, run.target)

    assert volume_ratio(run, about) >= 5.0
    assert mean_compound(run.inside(about)) > 0.4
    assert sum("🚀" in p.text for p in run.inside(about)) > 0.5 * len(run.inside(about))


def word_set(text: str) -> set[str]:
    return set(text.lower().split())


def authors_by_text(posts: list[Post]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for post in posts:
        out.setdefault(post.text, set()).add(post.author)
    return out


def similarity(a: str, b: str) -> float:
    wa, wb = word_set(a), word_set(b)
    return len(wa & wb) / len(wa | wb)


async def test_campaign_is_many_new_accounts_posting_near_identical_text() -> None:
    run = await run_scenario("campaign")
    seen_before = {p.author for p in run.before()}
    campaign = run.inside(lambda p: mentions(p, run.target) and p.author not in seen_before)
    template = Counter(p.text for p in campaign).most_common(1)[0][0]
    near_identical = [p for p in campaign if similarity(p.text, template) >= 0.75]
    authors = {p.author for p in near_identical}
    assert 30 <= len(authors) <= 60
    assert len({p.text for p in near_identical}) > 1  # variations, not one copied string
    # Everyday traffic has no such cluster: in as long a stretch before it, no text is shared by more
    # than a handful of accounts.
    quiet = run.between(run.start - (run.end - run.start), run.start)
    assert max(len(authors) for authors in authors_by_text(quiet).values()) < 10


def test_everyday_posts_of_different_accounts_are_seldom_near_duplicates() -> None:
    """At a busy stream's rate, everyday posts that say the same thing still differ in who, when and
    where: few land in a near-duplicate cluster (as the campaign detector finds them) at all."""
    origin = DEFAULT_START.timestamp()
    generator = StreamGenerator(
        seed=5, source="s", rate=2000, origin=origin, plan=ScenarioPlan(enabled=False)
    )
    index = index_for([CampaignConfig()])
    joined = placed = 0
    for seq in range(1, 30_001):
        ts = origin + seq / 2000
        when = datetime.fromtimestamp(ts, UTC)
        cluster = index.place(Observation(ts, generator.post(seq, ts, when, when), None), ("r",))
        if cluster is not None:
            placed += 1
            joined += cluster.posts > 1
    # Without the details, half of them joined a cluster (the same few thousand texts, 15 s of a busy
    # stream apart, from different accounts); with them, about 3%.
    assert placed > 25_000
    assert joined < 0.1 * placed


async def test_viral_post_draws_a_growing_stream_of_references() -> None:
    run = await run_scenario("viral")
    handle = run.target.removeprefix("@")
    inside = run.inside()
    original = next(p for p in inside if p.author == handle)
    assert original is inside[0]  # the original comes first
    assert (original.followers or 0) > 10_000

    references = run.inside(lambda p: f"@{handle}" in p.text or bool(original.url and original.url in p.text))
    third = (run.end - run.start) / 3
    early = run.between(run.start, run.start + third, lambda p: p in references)
    late = run.between(run.end - third, run.end, lambda p: p in references)
    assert len(references) > 100
    assert len(late) > 2 * len(early)
    reposts = [p for p in references if p.text.startswith(f"RT @{handle}: ")]
    counts = [(p.reposts or 0) + (p.score or 0) for p in reposts]  # Reddit reports a score instead
    assert counts[-1] > 5 * max(counts[0], 1)
    assert len(run.before(lambda p: f"@{handle}" in p.text)) < 10


async def test_scenarios_cycle_through_kinds_and_show_in_health() -> None:
    start = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    harness = await run_realtime(
        45.0, start, rate=5, scenarios={"first_after": "30s", "every": "1m", "duration": "20s"}
    )
    scenario = harness.health.extra["scenario"]
    assert isinstance(scenario, dict)
    assert scenario["kind"] == "brand_crisis"
    assert scenario["start"] == (start + timedelta(seconds=30)).isoformat()
    assert scenario["end"] == (start + timedelta(seconds=50)).isoformat()

    with capture_logs() as logs:
        await run_max(rate=50, limit=50 * 400, scenarios={"first_after": 10, "every": 60, "duration": 20})
    kinds = [e["kind"] for e in logs if e["event"] == "synthetic scenario started"]
    assert kinds[:5] == ["brand_crisis", "ticker_pump", "campaign", "viral", "brand_crisis"]


def test_scenario_at_follows_the_schedule() -> None:
    origin = DEFAULT_START.timestamp()
    plan = ScenarioPlan(first_after=30, every=300, duration=90)
    gen = StreamGenerator(seed=42, source="synthetic", rate=20, origin=origin, plan=plan)
    assert gen.scenario_at(DEFAULT_START + timedelta(seconds=29.9)) is None
    first = gen.scenario_at(DEFAULT_START + timedelta(seconds=30))
    assert first is not None and first.kind == "brand_crisis" and first.target in BRANDS
    assert (first.start, first.end) == (
        DEFAULT_START + timedelta(seconds=30),
        DEFAULT_START + timedelta(seconds=120),
    )
    assert gen.scenario_at(origin + 119.9) == first
    assert gen.scenario_at(origin + 120) is None
    second = gen.scenario_at(origin + 330)
    assert second is not None and second.kind == "ticker_pump" and second.target.removeprefix("$") in TICKERS
    assert (
        StreamGenerator(seed=42, source="x", rate=1, origin=origin, plan=plan).scenario_at(origin + 30)
        == first
    )


async def test_disabled_scenarios_inject_nothing() -> None:
    with capture_logs() as logs:
        harness = await run_max(rate=50, limit=20_000, scenarios={"enabled": False, "first_after": 1})
    assert not [e for e in logs if e["event"] == "synthetic scenario started"]
    assert harness.health.extra["scenario"] is None


# ---------------------------------------------------------------------------------------------------
# Config


def test_config_defaults() -> None:
    cfg = SyntheticConfig()
    assert (cfg.rate, cfg.seed, cfg.pace, cfg.limit, cfg.start) == (20.0, 42, "realtime", None, None)
    assert cfg.scenarios.kinds == ["brand_crisis", "ticker_pump", "campaign", "viral"]
    assert (cfg.scenarios.first_after, cfg.scenarios.every, cfg.scenarios.duration) == (30.0, 300.0, 90.0)
    assert cfg.instance_name == "synthetic"


def test_config_parses_durations_and_naive_start_as_utc() -> None:
    cfg = config(start="2026-03-01T08:00:00", scenarios={"every": "5m", "duration": "1m30s"})
    assert cfg.start == datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
    assert (cfg.scenarios.every, cfg.scenarios.duration) == (300.0, 90.0)


@pytest.mark.parametrize(
    "overrides",
    [
        {"rate": -1},
        {"rate": 0},
        {"rate": 100_001},
        {"pace": "fast"},
        {"limit": 0},
        {"surprise": 1},
        {"scenarios": {"surprise": 1}},
        {"scenarios": {"kinds": ["meteor"]}},
        {"scenarios": {"kinds": []}},
        {"scenarios": {"every": "1m", "duration": "2m"}},
        {"scenarios": {"intensity": 0.5}},
    ],
)
def test_config_rejects_bad_values(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        config(**overrides)


def test_registered_under_its_type() -> None:
    from harvester.plugins import SOURCES

    plugin = SOURCES.get("synthetic")
    assert plugin.config_class is SyntheticConfig
    assert isinstance(plugin.factory(config(name="demo")), SyntheticSource)
