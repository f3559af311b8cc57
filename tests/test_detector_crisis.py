"""The crisis composite: a volume spike, negative sentiment and crisis terms together -> critical.

Time is the `ts` each observation and signal carries; nothing reads a clock.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import timedelta

import pytest
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from harvester.config.detectors import CrisisConfig, VolumeSpikeConfig
from harvester.engine.detectors.base import Observation, at
from harvester.engine.detectors.crisis import MIN_POSTS, WINDOW_BUCKETS, CrisisDetector
from harvester.engine.detectors.evidence import DISTINCT_EXACT
from harvester.engine.normalize import for_sentiment, terms
from harvester.engine.volume import VolumeSpikeDetector
from harvester.models import Severity, Signal
from harvester.sources.synthetic_text import (
    BRAND_KEYWORDS,
    ScenarioKind,
    ScenarioPlan,
    StreamGenerator,
)
from tests.helpers import T0, make_post

START = T0.timestamp()
HOUR = 3600.0
CALM_TERMS = ("acme", "flight", "great", "crew", "service", "seat", "lounge", "app")
CRISIS_TERMS = ("acme", "flight", "cancelled", "refund", "outage", "stranded", "furious")


class Stream:
    """Observations for one rule: calm everyday mentions, or the posts of a crisis."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = random.Random(seed)
        self.seq = 0

    def one(self, ts: float, sentiment: float | None, terms: tuple[str, ...], likes: int = 0) -> Observation:
        self.seq += 1
        post = make_post(
            self.seq,
            at=T0 + timedelta(seconds=ts - START),
            author=f"user{self.rng.randrange(100_000)}",
            likes=likes or self.rng.randrange(50),
        )
        return Observation(ts, post, sentiment, terms)

    def calm(self, start: float, end: float, rate: float = 0.5) -> Iterator[Observation]:
        """Mildly positive mentions with no crisis vocabulary."""
        ts = start + self.rng.expovariate(rate)
        while ts < end:
            sentiment = self.rng.choice((0.0, 0.0, 0.4, 0.6, 0.8, -0.3))
            yield self.one(ts, sentiment, tuple(self.rng.sample(CALM_TERMS, 4)))
            ts += self.rng.expovariate(rate)

    def crisis(
        self,
        start: float,
        end: float,
        rate: float = 5.0,
        *,
        negative: bool = True,
        crisis_terms: bool = True,
    ) -> Iterator[Observation]:
        """The surge of a crisis; either of its two marks (tone, vocabulary) can be left out."""
        ts = start + self.rng.expovariate(rate)
        while ts < end:
            sentiment = self.rng.uniform(-0.95, -0.4) if negative else self.rng.uniform(-0.1, 0.7)
            pool = CRISIS_TERMS if crisis_terms else CALM_TERMS
            terms = (*pool[:2], *self.rng.sample(pool[2:], 2))
            yield self.one(ts, sentiment, terms)
            ts += self.rng.expovariate(rate)


def spike(ts: float, rule: str = "acme", window_s: float = 300.0) -> Signal:
    """A volume-spike signal as the volume detector would send it (window minute-aligned)."""
    window_start = at((ts - window_s) // 60 * 60 + 60)
    return Signal(
        id=Signal.make_id(rule, "volume_spike", window_start),
        rule=rule,
        kind="volume_spike",
        severity=Severity.HIGH,
        at=at(ts),
        window_start=window_start,
        window_end=at(ts),
        observed=310.0,
        baseline=42.5,
        score=11.3,
        summary="310 posts in 300s",
    )


def feed(detector: CrisisDetector, observations: Iterator[Observation]) -> list[Signal]:
    signals: list[Signal] = []
    for obs in observations:
        signals += detector.observe(obs)
    return signals


def merged(*streams: Iterator[Observation]) -> Iterator[Observation]:
    return iter(sorted((o for s in streams for o in s), key=lambda o: o.ts))


def detector(**overrides: object) -> CrisisDetector:
    return CrisisDetector("acme", CrisisConfig.model_validate(overrides))


ONSET = START + HOUR + 13


def calm_hour(det: CrisisDetector, stream: Stream) -> None:
    assert feed(det, stream.calm(START, ONSET)) == []


# ---------------------------------------------------------------------------------------------------
# All three together -> one critical signal


def test_spike_negative_tone_and_crisis_terms_give_one_critical_signal() -> None:
    det = detector()
    stream = Stream(1)
    calm_hour(det, stream)
    first = merged(stream.calm(ONSET, ONSET + 40), stream.crisis(ONSET, ONSET + 40))
    signals = feed(det, first)
    assert signals == []  # no spike noted yet
    signals = det.note_signal(spike(ONSET + 40))
    signals += feed(
        det, merged(stream.calm(ONSET + 40, ONSET + 1800), stream.crisis(ONSET + 40, ONSET + 1800))
    )
    assert len(signals) == 1
    signal = signals[0]
    assert signal.kind == "crisis" and signal.rule == "acme"
    assert signal.severity is Severity.CRITICAL
    assert signal.at.timestamp() == ONSET + 40  # on the spike's arrival: the crisis posts were there
    assert (signal.observed, signal.baseline, signal.score) == (310.0, 42.5, 11.3)
    evidence = signal.evidence
    assert evidence["spike_observed"] == 310.0 and evidence["spike_baseline"] == 42.5
    assert evidence["mean_sentiment"] <= -0.25
    assert evidence["crisis_share"] >= 0.2
    found = dict(evidence["crisis_terms"])
    assert set(found) == {"cancelled", "refund", "outage", "stranded"}  # "furious" is not a crisis term
    # Each crisis post carries two of the five words, one of which may be "furious".
    assert sum(found.values()) / 2 <= evidence["crisis_posts"] <= sum(found.values())
    assert evidence["distinct_authors"] >= 100
    assert len(evidence["example_uids"]) == 3
    assert [t for t, _ in evidence["top_terms"][:2]] in (["acme", "flight"], ["flight", "acme"])
    # Judged from the spike's window start (a minute boundary 4-5 minutes back), not the last 15.
    assert ONSET - 300 <= signal.window_start.timestamp() <= ONSET
    assert signal.id == Signal.make_id("acme", "crisis", signal.window_start)
    assert "crisis" in signal.summary and "310" in signal.summary and "refund" in signal.summary


def test_posts_arriving_after_the_spike_trigger_it_too() -> None:
    det = detector()
    stream = Stream(2)
    calm_hour(det, stream)
    assert det.note_signal(spike(ONSET + 1)) == []  # the spike comes first: nothing negative yet
    signals = feed(det, merged(stream.calm(ONSET, ONSET + 600), stream.crisis(ONSET, ONSET + 600)))
    assert len(signals) == 1
    assert signals[0].at.timestamp() - ONSET < 30  # the newest buckets show it, however calm before


def test_the_most_engaged_crisis_posts_are_the_examples() -> None:
    det = detector()
    stream = Stream(3)
    calm_hour(det, stream)
    det.note_signal(spike(ONSET))
    signals: list[Signal] = []
    for i in range(40):
        obs = stream.one(ONSET + i, -0.8, ("acme", "outage"), likes=1000 * (i + 1))
        signals += det.observe(obs)
    assert len(signals) == 1
    fired_after = signals[0].evidence["crisis_posts"]
    assert signals[0].evidence["example_uids"] == [
        f"test:{stream.seq - 40 + fired_after - k}" for k in range(3)
    ]


# ---------------------------------------------------------------------------------------------------
# Any condition missing -> nothing


@pytest.mark.parametrize(
    ("with_spike", "negative", "crisis_terms"),
    [
        (False, True, True),  # no volume spike
        (True, False, True),  # crisis words, but the tone is not negative ("refund arrived, thanks")
        (True, True, False),  # angry, but not about a crisis
    ],
)
def test_each_condition_missing_alone_gives_nothing(
    with_spike: bool, negative: bool, crisis_terms: bool
) -> None:
    det = detector()
    stream = Stream(4)
    calm_hour(det, stream)
    if with_spike:
        assert det.note_signal(spike(ONSET + 30)) == []
    crisis = stream.crisis(ONSET, ONSET + 900, negative=negative, crisis_terms=crisis_terms)
    assert feed(det, merged(stream.calm(ONSET, ONSET + 900), crisis)) == []


def test_a_spike_older_than_within_does_not_count() -> None:
    def signals_with_spike_at(spike_ts: float) -> list[Signal]:
        det = detector(within=900)
        stream = Stream(5)
        assert feed(det, stream.calm(START, spike_ts)) == []
        assert det.note_signal(spike(spike_ts)) == []
        assert feed(det, stream.calm(spike_ts, ONSET)) == []
        return feed(det, merged(stream.calm(ONSET, ONSET + 300), stream.crisis(ONSET, ONSET + 300)))

    late = signals_with_spike_at(ONSET - 1000)
    assert late == []  # the spike was 1000 s before the crisis posts: outside `within`
    recent = signals_with_spike_at(ONSET - 800)
    assert len(recent) == 1  # 800 s before: still counts
    assert recent[0].at.timestamp() <= ONSET - 800 + 900


def test_too_few_posts_give_no_verdict() -> None:
    det = detector()
    stream = Stream(6)
    det.note_signal(spike(START + 10))
    posts = [stream.one(START + 20 + i, -0.9, ("acme", "outage")) for i in range(MIN_POSTS)]
    assert feed(det, iter(posts[:-1])) == []
    assert len(det.observe(posts[-1])) == 1  # the MIN_POSTS-th post makes a verdict possible


def test_other_signals_and_other_rules_are_ignored() -> None:
    det = detector()
    stream = Stream(7)
    calm_hour(det, stream)
    drop = Signal(
        id="x", rule="acme", kind="sentiment_drop", severity=Severity.HIGH, at=at(ONSET),
        window_start=at(ONSET - 60), window_end=at(ONSET), observed=-0.5, baseline=0.2, score=9.0,
        summary="",
    )  # fmt: skip
    assert det.note_signal(drop) == []
    assert det.note_signal(spike(ONSET, rule="other")) == []
    assert feed(det, merged(stream.calm(ONSET, ONSET + 600), stream.crisis(ONSET, ONSET + 600))) == []


def test_cooldown_holds_through_a_second_spike_and_then_lets_the_next_crisis_through() -> None:
    det = detector(cooldown=3600)
    stream = Stream(8)
    calm_hour(det, stream)
    signals = det.note_signal(spike(ONSET))
    signals += feed(det, merged(stream.calm(ONSET, ONSET + 1200), stream.crisis(ONSET, ONSET + 1200)))
    signals += det.note_signal(spike(ONSET + 1200))  # the crisis goes on, the volume spikes again
    signals += feed(
        det, merged(stream.calm(ONSET + 1200, ONSET + 2400), stream.crisis(ONSET + 1200, ONSET + 2400))
    )
    assert len(signals) == 1
    later = ONSET + 4000
    assert feed(det, stream.calm(ONSET + 2400, later)) == []
    signals = det.note_signal(spike(later))
    signals += feed(det, merged(stream.calm(later, later + 300), stream.crisis(later, later + 300)))
    assert len(signals) == 1 and signals[0].at.timestamp() >= ONSET + 3600


def test_memory_stays_bounded() -> None:
    det = detector()
    stream = Stream(9)
    det.note_signal(spike(START + 1))
    feed(det, stream.crisis(START, START + 1200, rate=200))  # 240,000 posts from ~all-new authors
    assert len(det.window.buckets) <= WINDOW_BUCKETS
    assert all(
        len(b.authors.smallest) <= DISTINCT_EXACT and b.authors.names is None for b in det.window.buckets
    )
    assert all(len(b.crisis_terms) <= len(det.crisis_terms) for b in det.window.buckets)
    assert all(len(b.evidence.examples) <= det.examples for b in det.window.buckets)


# ---------------------------------------------------------------------------------------------------
# Persistence


def test_snapshot_and_restore_keep_the_spike_and_the_cooldown() -> None:
    det = detector()
    stream = Stream(10)
    calm_hour(det, stream)
    det.note_signal(spike(ONSET))
    state = json.loads(json.dumps(det.snapshot()))
    assert state["spike"]["observed"] == 310.0 and state["cooldown_until"] is None

    restored = detector()
    restored.restore(state)
    assert restored.snapshot() == state
    # The spike noted before the restart still arms the composite; the window starts empty.
    signals = feed(
        restored, merged(stream.calm(ONSET + 60, ONSET + 300), stream.crisis(ONSET + 60, ONSET + 300))
    )
    assert len(signals) == 1
    assert signals[0].evidence["posts"] < 300 * 5.5  # only posts seen since the restart

    # The cooldown survives too.
    again = detector()
    again.restore(json.loads(json.dumps(restored.snapshot())))
    assert again.cooldown_until == restored.cooldown_until
    again.note_signal(spike(ONSET + 600))
    assert (
        feed(again, merged(stream.calm(ONSET + 600, ONSET + 900), stream.crisis(ONSET + 600, ONSET + 900)))
        == []
    )


# ---------------------------------------------------------------------------------------------------
# End to end: the synthetic brand crisis through the volume detector and the composite


def run_scenario(kind: ScenarioKind, seed: int) -> tuple[list[Signal], list[Signal], float]:
    """An hour of the synthetic stream, then a two-minute scenario; one rule follows its target.

    Returns the crisis signals, the volume spikes and the scenario's onset.
    """
    vader = SentimentIntensityAnalyzer()
    plan = ScenarioPlan(first_after=HOUR, every=24 * HOUR, duration=120, kinds=(kind,))
    gen = StreamGenerator(seed=seed, source="synthetic", rate=20.0, origin=START, plan=plan)
    scenario = gen.scenario_at(START + plan.first_after)
    assert scenario is not None
    target = scenario.target
    keyword = target if target.startswith("$") else BRAND_KEYWORDS[target]
    onset = scenario.start.timestamp()
    volume = VolumeSpikeDetector("acme", VolumeSpikeConfig())
    crisis = detector()
    signals: list[Signal] = []
    spikes: list[Signal] = []
    ts, seq = START, 1
    while ts < onset + 300:
        when = T0 + timedelta(seconds=ts - START)
        post = gen.post(seq, ts, when, when)
        if keyword in (post.text if keyword.startswith("$") else post.text.lower()):
            sentiment = float(vader.polarity_scores(for_sentiment(post.text))["compound"])
            obs = Observation(ts, post, sentiment, tuple(terms(post.text)))
            signals += crisis.observe(obs)
            for spiked in volume.observe(obs):
                spikes.append(spiked)
                signals += crisis.note_signal(spiked)
        ts += 1.0 / gen.rate_at(ts)
        seq += 1
    return signals, spikes, onset


def test_the_synthetic_brand_crisis_is_critical_within_a_minute() -> None:
    signals, spikes, onset = run_scenario("brand_crisis", seed=7)
    assert spikes and spikes[0].at.timestamp() >= onset  # the volume detector saw it too
    assert len(signals) == 1
    assert 0 < signals[0].at.timestamp() - onset <= 60
    assert signals[0].severity is Severity.CRITICAL
    found = dict(signals[0].evidence["crisis_terms"])
    assert found and set(found) <= set(CrisisConfig().crisis_terms)


def test_a_synthetic_ticker_pump_spikes_but_is_no_crisis() -> None:
    signals, spikes, onset = run_scenario("ticker_pump", seed=7)
    assert spikes and spikes[0].at.timestamp() >= onset  # a real spike...
    assert signals == []  # ...of cheering, not of crisis
