"""Sentiment drop and surge, on hand-built streams and on the synthetic source's brand crisis.

Time is the `ts` each observation carries; nothing reads a clock.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from harvester.config.detectors import SentimentShiftConfig
from harvester.engine.detectors.base import MIN_COOLDOWN_S, Observation
from harvester.engine.detectors.sentiment import (
    DROP,
    SPREAD_FLOOR,
    SURGE,
    SentimentShiftDetector,
    corrected_z,
)
from harvester.engine.normalize import for_sentiment, terms
from harvester.models import Severity, Signal
from harvester.sources.synthetic_text import (
    BRAND_KEYWORDS,
    ScenarioKind,
    ScenarioPlan,
    StreamGenerator,
)
from tests.helpers import T0, make_post

START = T0.timestamp()  # 12:00 UTC, on a bucket boundary
HOUR = 3600.0
DAY = 86_400.0


@dataclass(frozen=True)
class Mood:
    """A VADER-like mix of compound scores: many exact zeros, the rest spread on either side."""

    neutral: float
    positive: float
    low: float = 0.05  # magnitude range of non-neutral scores
    high: float = 0.95

    @property
    def mean(self) -> float:
        negative = 1.0 - self.neutral - self.positive
        return (self.positive - negative) * (self.low + self.high) / 2

    def draw(self, rng: random.Random) -> float:
        r = rng.random()
        if r < self.neutral:
            return 0.0
        magnitude = round(rng.uniform(self.low, self.high), 4)
        return magnitude if r < self.neutral + self.positive else -magnitude


CALM = Mood(neutral=0.3, positive=0.55)  # mean +0.20: everyday mentions of a brand
COLLAPSE = Mood(neutral=0.1, positive=0.05, low=0.3, high=0.98)  # mean -0.51
SURGING = Mood(neutral=0.05, positive=0.9, low=0.4, high=0.98)  # mean +0.58


def rhythm(ts: float) -> float:
    """Posts per second with a day/night rhythm: 0.2 at 04:00 UTC, 2.0 at 16:00 UTC."""
    hour = (ts % DAY) / HOUR
    return 1.1 + 0.9 * math.cos(2 * math.pi * (hour - 16) / 24)


WORDS = ("service", "app", "price", "support", "update", "order", "store", "delivery")


class Stream:
    """Poisson arrivals of scored observations for one rule; numbering stays unique across calls."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = random.Random(seed)
        self.seq = 0

    def posts(
        self, start: float, end: float, rate: Callable[[float], float], mood: Mood
    ) -> Iterator[Observation]:
        rng = self.rng
        ts = start + rng.expovariate(rate(start))
        while ts < end:
            self.seq += 1
            yield self.one(ts, mood.draw(rng))
            ts += rng.expovariate(rate(ts))

    def one(self, ts: float, sentiment: float | None, terms: tuple[str, ...] = ()) -> Observation:
        self.seq += 1
        n = self.seq
        post = make_post(
            n,
            at=T0 + timedelta(seconds=ts - START),
            author=f"user{self.rng.randrange(5000)}",
            likes=self.rng.randrange(100),
        )
        return Observation(ts, post, sentiment, terms or ("acme", self.rng.choice(WORDS)))


def run(detector: SentimentShiftDetector, observations: Iterator[Observation]) -> list[Signal]:
    """Feed the observations, letting time pass every second as the engine's tick would."""
    signals: list[Signal] = []
    last_tick = -math.inf
    for obs in observations:
        if obs.ts - last_tick >= 1.0:
            signals += detector.advance(obs.ts)
            last_tick = obs.ts
        signals += detector.observe(obs)
    return signals


def steady(rate: float) -> Callable[[float], float]:
    return lambda ts: rate


def detector(**overrides: object) -> SentimentShiftDetector:
    return SentimentShiftDetector("acme", SentimentShiftConfig.model_validate(overrides))


def first_delay(signals: list[Signal], kind: str, onset: float) -> float:
    times = [s.at.timestamp() for s in signals if s.kind == kind]
    assert times, f"no {kind} signal"
    return times[0] - onset


# ---------------------------------------------------------------------------------------------------
# Quiet on normal traffic, quick on real shifts


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_day_of_normal_traffic_with_a_day_night_rhythm_raises_nothing(seed: int) -> None:
    det = detector()
    stream = Stream(seed)
    signals = run(det, stream.posts(START, START + DAY, rhythm, CALM))
    assert signals == []
    # Not vacuous: the detector warmed up and learned the stream as it is.
    assert det.warmed_up
    assert abs(det.baseline_mean - CALM.mean) < 0.05
    assert 0.4 < det.baseline_sigma < 0.6


@pytest.mark.parametrize(
    ("rate", "within"),
    [
        (1.0, 60.0),
        (5.0, 60.0),
        (50.0, 60.0),
        # Below min_posts a minute, the verdict waits for min_posts posts (20 at 0.2/s: ~100 s).
        (0.5, 90.0),
        (0.2, 150.0),
    ],
)
def test_a_collapse_is_signalled_within_a_minute(rate: float, within: float) -> None:
    det = detector()
    stream = Stream(4)
    onset = START + 2 * HOUR + 17  # not on a bucket boundary
    before = run(det, stream.posts(START, onset, steady(rate), CALM))
    assert before == []
    signals = run(det, stream.posts(onset, onset + 300, steady(rate), COLLAPSE))
    assert 0 < first_delay(signals, DROP, onset) <= within
    signal = signals[0]
    assert signal.kind == DROP and signal.rule == "acme"
    assert signal.observed < signal.baseline - 0.25
    assert abs(signal.baseline - CALM.mean) < 0.06
    assert signal.score >= 4.0
    evidence = signal.evidence
    assert evidence["posts"] >= 20 and evidence["z"] == signal.score
    assert evidence["negative_share"] > 2 * 0.15  # the calm stream has 15% negative posts
    assert evidence["distinct_authors"] >= 10
    assert evidence["top_terms"][0] == ["acme", evidence["top_terms"][0][1]]
    assert len(evidence["example_uids"]) == 3
    assert signal.window_start.timestamp() <= onset + 60
    assert signal.id == Signal.make_id("acme", DROP, signal.window_start)
    assert "acme" in signal.summary and "down from the usual +0." in signal.summary
    # The first signal sees the collapse mixed with the calm just before it; as the collapse fills
    # the window the signal escalates (once per level) to high, with its own id, inside the cooldown.
    escalations = [s for s in signals if s.at.timestamp() < onset + 300 and s is not signal]
    if signal.severity is not Severity.HIGH:
        assert escalations and escalations[-1].severity is Severity.HIGH
        assert escalations[-1].at.timestamp() - onset <= within + 90
    ranks = [s.severity.rank for s in signals if s.at.timestamp() < onset + 300]
    assert ranks == sorted(set(ranks))  # each one a step up, never a repeat
    assert all(s.evidence["escalates"] == prev.id for prev, s in zip(signals, escalations, strict=False))
    assert len({s.id for s in signals}) == len(signals)


def test_examples_are_the_most_engaged_posts_on_the_side_of_the_shift() -> None:
    det = detector()
    stream = Stream(5)
    onset = START + HOUR
    assert run(det, stream.posts(START, onset, steady(1.0), CALM)) == []
    signals: list[Signal] = []
    for i in range(40):
        obs = stream.one(onset + i, -0.8)
        post = obs.post
        viral = make_post(10_000 + i, at=post.created_at, author=post.author, likes=1000 + i)
        signals += det.observe(Observation(obs.ts, viral, -0.8, ("acme", "outage", "refund")))
        if signals:
            break
    assert signals
    assert signals[0].evidence["example_uids"] == [f"test:{10_000 + i - k}" for k in range(3)]
    assert [t for t, _ in signals[0].evidence["top_terms"][:3]] == ["acme", "outage", "refund"]


def test_a_surge_is_signalled_and_only_when_asked_for() -> None:
    onset = START + 2 * HOUR + 5
    for surge in (True, False):
        det = detector(surge=surge)
        stream = Stream(6)
        assert run(det, stream.posts(START, onset, steady(1.0), CALM)) == []
        signals = run(det, stream.posts(onset, onset + 600, steady(1.0), SURGING))
        if surge:
            assert 0 < first_delay(signals, SURGE, onset) <= 60
            assert {s.kind for s in signals} == {SURGE}
            assert signals[0].observed > signals[0].baseline + 0.25
            assert signals[0].evidence["positive_share"] > 0.8
            assert "up from the usual" in signals[0].summary
        else:
            assert signals == []


def test_severity_grows_with_the_shift() -> None:
    def severity_of(mood: Mood) -> Severity:
        det = detector()
        stream = Stream(7)
        onset = START + HOUR
        assert run(det, stream.posts(START, onset, steady(2.0), CALM)) == []
        # Let the shift fill a whole window before judging it, so the severity is that of the mood.
        det.cooldown_until[DROP] = det.cooldown_until[SURGE] = onset + 300
        signals = run(det, stream.posts(onset, onset + 360, steady(2.0), mood))
        assert signals
        return signals[0].severity

    assert severity_of(Mood(neutral=0.3, positive=0.2)) is Severity.LOW  # mean -0.05: shift ~0.25-0.5
    assert severity_of(Mood(neutral=0.3, positive=0.05, low=0.2, high=0.8)) is Severity.MEDIUM  # ~-0.32
    assert severity_of(COLLAPSE) is Severity.HIGH


# ---------------------------------------------------------------------------------------------------
# Guards: the two gates, sample size, warm-up, cooldown, unscored posts, clipping


def test_the_threshold_is_corrected_for_the_looks_a_window_gets() -> None:
    assert corrected_z(4.0, 1) == pytest.approx(4.0)
    assert corrected_z(4.0, 25) == pytest.approx(4.7, abs=0.01)
    assert detector(threshold=4.0, window_buckets=5).z_required == pytest.approx(corrected_z(4.0, 25))
    assert detector(threshold=3.0).z_required < detector(threshold=4.0).z_required


def test_at_high_volume_a_small_shift_is_not_a_signal() -> None:
    det = detector(min_shift=0.25)
    stream = Stream(20)
    onset = START + HOUR
    assert run(det, stream.posts(START, onset, steady(30.0), CALM)) == []
    slightly_worse = Mood(neutral=0.3, positive=0.4)  # mean +0.05: a shift of -0.15, z ~ 20
    assert run(det, stream.posts(onset, onset + 600, steady(30.0), slightly_worse)) == []
    much_worse = Mood(neutral=0.3, positive=0.25)  # mean -0.10: a shift of -0.30
    assert run(det, stream.posts(onset + 600, onset + 900, steady(30.0), much_worse)) != []


def test_a_constant_history_does_not_make_every_wobble_significant() -> None:
    def after_a_silent_history(scores: list[float]) -> list[Signal]:
        det = detector()
        stream = Stream(21)
        # An hour in which every post scored 0.0 (e.g. a language VADER does not read): no spread.
        history = (stream.one(START + i, 0.0) for i in range(3600))
        assert run(det, history) == []
        assert det.baseline_sigma == SPREAD_FLOOR
        return run(det, (stream.one(START + 3600 + i, score) for i, score in enumerate(scores)))

    # Thirty posts averaging -0.3 but split between delight and fury: their own spread (0.9) makes
    # the mean uncertain, and nothing fires.
    assert after_a_silent_history([0.9, -0.9, -0.9] * 10 + [0.0] * 10) == []
    # The same mean from posts that agree is a real change.
    assert after_a_silent_history([-0.3] * 40) != []


def test_fewer_than_min_posts_never_fire_and_the_min_posts_th_does() -> None:
    det = detector(min_posts=20)
    stream = Stream(8)
    quiet_from = START + HOUR
    assert run(det, stream.posts(START, quiet_from, steady(1.0), CALM)) == []
    # Ten quiet minutes empty the window; then 19 furious posts in half a minute: too few to judge.
    # (From the middle of a bucket: a bucket less than half through is not judged on its own.)
    burst = quiet_from + 630
    signals = run(det, (stream.one(burst + i * 1.5, -0.9) for i in range(19)))
    assert signals == []
    assert det.observe(stream.one(burst + 29, -0.9)) != []  # the 20th post makes a verdict possible


def test_nothing_fires_during_warm_up() -> None:
    def collapse_after(minutes_of_history: int) -> list[Signal]:
        det = detector(warmup_buckets=10)
        stream = Stream(9)
        onset = START + minutes_of_history * 60
        assert run(det, stream.posts(START, onset, steady(2.0), CALM)) == []
        return run(det, stream.posts(onset, onset + 90, steady(2.0), COLLAPSE))

    assert collapse_after(8) == []  # 7 buckets learned (the first one is partial) by the onset
    assert collapse_after(20) != []


def test_cooldown_limits_repeats_and_never_goes_below_the_minimum() -> None:
    for cooldown, gap in ((900.0, 900.0), (0.0, MIN_COOLDOWN_S)):
        det = detector(cooldown=cooldown)
        stream = Stream(10)
        onset = START + HOUR
        assert run(det, stream.posts(START, onset, steady(1.0), CALM)) == []
        signals = run(det, stream.posts(onset, onset + 2400, steady(1.0), COLLAPSE))
        fresh = [s for s in signals if "escalates" not in s.evidence]
        times = [s.at.timestamp() for s in fresh]
        assert len(times) >= 2
        assert all(b - a >= gap for a, b in itertools.pairwise(times))
        if cooldown:
            assert len(times) <= 3  # 40 minutes of collapse: 0, ~15 and ~30 minutes in
            assert len(signals) <= 3 * 3  # at most two escalations (low -> medium -> high) each


def test_a_long_collapse_does_not_become_the_new_normal() -> None:
    det = detector()
    stream = Stream(11)
    onset = START + HOUR
    run(det, stream.posts(START, onset, steady(1.0), CALM))
    learned_sigma = det.baseline_sigma
    signals = run(det, stream.posts(onset, onset + HOUR, steady(1.0), COLLAPSE))
    # An hour of collapse is one baseline half-life: learned as it is, it would have pulled the
    # baseline halfway (0.35 of the 0.71 gap). Clipped at the alarm boundary (~0.26 from the
    # baseline at 60 posts a bucket), each bucket moves it by at most alpha x 0.26: ~0.18 an hour.
    assert det.baseline_mean > CALM.mean - 0.25
    assert abs(det.baseline_sigma - learned_sigma) < 0.05  # and does not teach the spread
    # ...so it is still reported an hour in, once per cooldown.
    assert [s.at.timestamp() - onset for s in signals][-1] > HOUR - 900


def test_unscored_posts_are_ignored() -> None:
    det = detector()
    stream = Stream(12)
    onset = START + HOUR
    run(det, stream.posts(START, onset, steady(1.0), CALM))
    det.advance(onset)  # the last calm bucket closes
    learned = det.level.n
    assert run(det, (stream.one(onset + i * 0.2, None) for i in range(3000))) == []
    assert det.level.n == learned  # ten minutes of unscored posts taught nothing


def test_posts_later_than_a_bucket_are_dropped_and_slightly_late_ones_count() -> None:
    det = detector()
    stream = Stream(13)
    run(det, stream.posts(START, START + 600, steady(1.0), CALM))
    det.observe(stream.one(START + 530, -0.5))  # 70 s late: beyond the allowed lateness
    assert det.window.late == 1
    det.observe(stream.one(START + 590, -0.5))  # 10 s late, in the previous bucket: counted
    assert det.window.late == 1


# ---------------------------------------------------------------------------------------------------
# Persistence


def test_snapshot_and_restore_round_trip_keep_the_baseline_and_the_cooldown() -> None:
    det = detector()
    stream = Stream(14)
    onset = START + HOUR
    run(det, stream.posts(START, onset, steady(1.0), CALM))
    fired = run(det, stream.posts(onset, onset + 120, steady(1.0), COLLAPSE))
    assert fired and fired[-1].severity is Severity.HIGH  # after escalating, if it did
    state = json.loads(json.dumps(det.snapshot()))

    again = detector()
    again.restore(state)
    assert again.snapshot() == state
    assert again.warmed_up and again.baseline_mean == det.baseline_mean
    # Restarted a minute later, mid-collapse: the cooldown survived, so no second alarm for it.
    resume = onset + 180
    assert run(again, stream.posts(resume, resume + 300, steady(1.0), COLLAPSE)) == []

    # Restarted two hours later: no warm-up needed, the learned baseline judges at once.
    later = detector()
    later.restore(state)
    resume = onset + 2 * HOUR + 7
    signals = run(later, stream.posts(resume, resume + 300, steady(1.0), COLLAPSE))
    assert 0 < first_delay(signals, DROP, resume) <= 60


def test_downtime_after_a_restore_is_not_learned() -> None:
    det = detector()
    stream = Stream(15)
    run(det, stream.posts(START, START + HOUR, steady(1.0), CALM))
    restored = detector()
    restored.restore(det.snapshot())
    learned = restored.level.n
    # Back three hours later, in the middle of a bucket: that bucket is seen only from its middle.
    resume = START + 4 * HOUR + 30
    run(restored, stream.posts(resume, resume + 29, steady(1.0), CALM))
    restored.advance(resume + 31)  # the partial bucket closes: not learned
    assert restored.level.n == learned
    run(restored, stream.posts(resume + 31, resume + 89, steady(1.0), CALM))
    restored.advance(resume + 91)  # the first whole bucket closes: learned
    assert restored.level.n == learned + 1


# ---------------------------------------------------------------------------------------------------
# The synthetic source's brand crisis, scored by VADER


def synthetic_signals(kind: ScenarioKind, seed: int) -> tuple[list[Signal], float]:
    """Two hours of the synthetic stream, then a two-minute scenario; one rule follows its target,
    its posts scored by VADER. Returns the signals and the scenario's onset."""
    vader = SentimentIntensityAnalyzer()
    plan = ScenarioPlan(first_after=2 * HOUR, every=DAY, duration=120, kinds=(kind,))
    gen = StreamGenerator(seed=seed, source="synthetic", rate=20.0, origin=START, plan=plan)
    scenario = gen.scenario_at(START + plan.first_after)
    assert scenario is not None
    target = scenario.target
    cashtag = target.startswith("$")
    keyword = target if cashtag else BRAND_KEYWORDS[target]
    onset = scenario.start.timestamp()
    det = detector()
    signals: list[Signal] = []
    ts, seq = START, 1
    while ts < onset + 180:
        when = T0 + timedelta(seconds=ts - START)
        post = gen.post(seq, ts, when, when)
        if keyword in (post.text if cashtag else post.text.lower()):
            sentiment = float(vader.polarity_scores(for_sentiment(post.text))["compound"])
            signals += det.observe(Observation(ts, post, sentiment, tuple(terms(post.text))))
        ts += 1.0 / gen.rate_at(ts)
        seq += 1
    return signals, onset


def test_the_synthetic_brand_crisis_is_signalled_within_a_minute() -> None:
    signals, onset = synthetic_signals("brand_crisis", seed=42)
    assert [s for s in signals if s.at.timestamp() < onset] == []
    assert {s.kind for s in signals} == {DROP}
    assert 0 < first_delay(signals, DROP, onset) <= 60
    assert any(s.severity is Severity.HIGH and s.at.timestamp() - onset <= 120 for s in signals)
    top = [term for term, _ in signals[0].evidence["top_terms"]]
    assert set(top) & {"refund", "cancelled", "scam", "outage", "hacked", "lawsuit", "recall", "delayed"}


def test_the_synthetic_ticker_pump_is_a_surge_within_a_minute() -> None:
    signals, onset = synthetic_signals("ticker_pump", seed=42)
    assert [s for s in signals if s.at.timestamp() < onset] == []
    assert {s.kind for s in signals} == {SURGE}
    assert 0 < first_delay(signals, SURGE, onset) <= 60
