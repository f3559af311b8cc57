"""Viral posts: engagement growing fast over re-fetches, or many accounts referencing one post; on
hand-built sightings and on the synthetic source's viral scenario.

Time is the `ts` each observation carries; nothing reads a clock.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from datetime import timedelta

import pytest

from harvester.config.detectors import ViralConfig
from harvester.config.schema import EngineConfig, RuleConfig
from harvester.engine import Engine
from harvester.engine.detectors.base import MIN_COOLDOWN_S, Observation
from harvester.engine.detectors.viral import ViralPostDetector
from harvester.models import Post, Severity, Signal
from harvester.sources.synthetic_text import ScenarioPlan, StreamGenerator
from tests.helpers import T0, make_post

START = T0.timestamp()


def detector(**overrides: object) -> ViralPostDetector:
    return ViralPostDetector("acme", ViralConfig.model_validate(overrides))


def post(
    n: int, ts: float, *, author: str = "brand", likes: int = 0, followers: int | None = None, **kw: object
) -> Post:
    base = make_post(
        n,
        "Acme Air just announced free upgrades for everyone flying today",
        at=T0 + timedelta(seconds=ts - START),
        author=author,
        likes=likes,
    )
    return replace(base, followers=followers, **kw)  # type: ignore[arg-type]


def test_engagement_growing_fast_between_re_fetches_is_viral() -> None:
    det = detector()
    assert det.observe(Observation(START, post(1, START, likes=100), 0.5)) == []
    signals: list[Signal] = []
    for minute in range(1, 6):  # re-fetched every minute, 300 more likes each time: 5 per second
        ts = START + 60 * minute
        signals += det.reobserve(ts, post(1, ts, likes=100 + 300 * minute))
    assert len(signals) == 1
    signal = signals[0]
    assert signal.kind == "viral_post" and signal.rule == "acme"
    assert signal.at.timestamp() == START + 120  # 700 likes: past min_engagement on the second fetch
    evidence = signal.evidence
    assert evidence["trigger"] == "velocity" and evidence["velocity_per_s"] == 5.0
    assert evidence["uid"] == "test:1" and evidence["example_uids"][0] == "test:1"
    assert signal.observed == 5.0 and signal.baseline == 2.0


def test_slow_growth_and_small_posts_are_not_viral() -> None:
    det = detector()
    det.observe(Observation(START, post(1, START, likes=600), 0.0))
    slow = [det.reobserve(START + 60 * m, post(1, START + 60 * m, likes=600 + 60 * m)) for m in range(1, 10)]
    assert slow == [[]] * 9  # 1 like per second: under min_velocity
    det.observe(Observation(START, post(2, START, likes=0), 0.0))
    fast_but_small = [
        det.reobserve(START + 10 * m, post(2, START + 10 * m, likes=30 * m)) for m in range(1, 10)
    ]
    assert fast_but_small == [[]] * 9  # 3 per second, but under min_engagement all along


def test_a_post_not_followed_at_first_sight_is_measured_from_its_creation_when_fetched_again() -> None:
    det = detector()
    created = START
    det.observe(Observation(START + 5, post(1, created, likes=2), 0.0))
    assert "test:1" not in det.posts  # too little engagement to follow at first sight
    signals = det.reobserve(START + 200, post(1, created, likes=1500))
    assert len(signals) == 1
    assert signals[0].evidence["velocity_per_s"] == 7.5  # 1500 likes in the 200 s since it was made


def test_many_accounts_referencing_one_post_is_viral_and_self_replies_do_not_count() -> None:
    det = detector()
    original = post(1, START, author="celebrity", followers=2_000_000, likes=10)
    assert det.observe(Observation(START, original, 0.2)) == []
    signals: list[Signal] = []
    for i in range(30):  # the author replying to themselves is not reach
        reply = post(100 + i, START + 1 + i, author="celebrity", ref="test:1")
        signals += det.observe(Observation(START + 1 + i, reply, 0.0))
    assert signals == []
    for i in range(30):
        ts = START + 40 + i
        reference = post(200 + i, ts, author=f"fan{i}", ref="test:1", likes=i)
        signals += det.observe(Observation(ts, reference, 0.3))
    assert len(signals) == 1
    signal = signals[0]
    assert signal.at.timestamp() == START + 40 + 24  # the 25th distinct account
    assert signal.evidence["trigger"] == "references" and signal.evidence["distinct_referrers"] == 25
    assert signal.severity is Severity.MEDIUM  # just past the threshold, one level up for 2M followers
    assert signal.evidence["example_uids"][:2] == ["test:1", "test:224"]  # the post, then top referrers


def test_a_post_referenced_before_it_is_seen_is_followed_from_its_references() -> None:
    det = detector()
    signals: list[Signal] = []
    for i in range(25):
        ts = START + i
        signals += det.observe(Observation(ts, post(100 + i, ts, author=f"fan{i}", ref="twitter:999"), 0.0))
    assert [s.evidence["uid"] for s in signals] == ["twitter:999"]
    assert signals[0].evidence["author"] is None  # never seen itself


def test_pure_reposts_are_references_never_posts_of_their_own() -> None:
    det = detector()
    rt = replace(
        post(5, START, author="fan", likes=5000), text="RT @brand: Acme Air just announced free upgrades"
    )
    det.observe(Observation(START, rt, 0.0))
    assert "test:5" not in det.posts
    assert det.reobserve(START + 60, replace(rt, likes=50_000)) == []


def test_one_signal_per_post_then_only_escalations_after_the_cooldown() -> None:
    det = detector(cooldown=600)
    det.observe(Observation(START, post(1, START, likes=1000), 0.0))
    fired = det.reobserve(START + 60, post(1, START + 60, likes=1000 + 60 * 3))  # 3/s: low
    assert [s.severity for s in fired] == [Severity.LOW]
    assert det.reobserve(START + 120, post(1, START + 120, likes=1180 + 60 * 3)) == []  # same level
    # Much faster inside the cooldown: still quiet; after it, the higher severity goes out once.
    assert det.reobserve(START + 300, post(1, START + 300, likes=1360 + 180 * 30)) == []
    later = det.reobserve(START + 700, post(1, START + 700, likes=6760 + 400 * 30))
    assert [s.severity for s in later] == [Severity.HIGH]
    assert later[0].id != fired[0].id


def test_the_rule_wide_gap_holds_a_second_post_until_it_passes() -> None:
    det = detector()
    for n in (1, 2):
        det.observe(Observation(START, post(n, START, likes=1000), 0.0))
    first = det.reobserve(START + 60, post(1, START + 60, likes=1000 + 60 * 5))
    held = det.reobserve(START + 61, post(2, START + 61, likes=1000 + 61 * 5))
    assert len(first) == 1 and held == []
    released = det.advance(START + 60 + MIN_COOLDOWN_S)
    assert [s.evidence["uid"] for s in released] == ["test:2"]


def test_memory_is_bounded_by_max_tracked() -> None:
    det = detector(max_tracked=100)
    for n in range(5000):
        det.observe(Observation(START + n, post(n, START + n, likes=500), 0.0))
        det.observe(Observation(START + n, post(10_000 + n, START + n, author="x", ref=f"test:ext{n}"), 0.0))
    assert len(det.posts) == 100


def test_snapshot_and_restore_keep_a_fired_post_quiet() -> None:
    det = detector()
    det.observe(Observation(START, post(1, START, likes=1000), 0.0))
    assert det.reobserve(START + 60, post(1, START + 60, likes=1300))
    restored = detector()
    restored.restore(json.loads(json.dumps(det.snapshot())))
    assert "test:1" in restored.posts
    assert restored.reobserve(START + 120, post(1, START + 120, likes=1600)) == []


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_synthetic_viral_post_is_signalled_within_a_minute(seed: int) -> None:
    plan = ScenarioPlan(first_after=1800, every=86_400, duration=120, kinds=("viral",))
    gen = StreamGenerator(seed=seed, source="synthetic", rate=20.0, origin=START, plan=plan)
    scenario = gen.scenario_at(START + plan.first_after)
    assert scenario is not None
    handle = scenario.target.removeprefix("@")
    engine = Engine(
        [RuleConfig(name="celebrities", keywords=[a.handle for a in gen.pool.celebrities])], EngineConfig()
    )
    onset = scenario.start.timestamp()
    signals: list[Signal] = []
    referenced: Counter[str] = Counter()
    ts, seq = START, 1
    while ts < onset + 120:
        when = T0 + timedelta(seconds=ts - START)
        item = gen.post(seq, ts, when, when)
        if item.ref is not None and handle in item.text:
            referenced[item.ref] += 1
        signals += engine.process(item, ts).signals
        ts += 1.0 / gen.rate_at(ts)
        seq += 1
    viral = [s for s in signals if s.kind == "viral_post"]
    assert viral, "no viral signal"
    assert [s for s in viral if s.at.timestamp() < onset] == []
    assert 0 < viral[0].at.timestamp() - onset <= 60
    # The celebrity's own post does not mention the handle (the rule sees only its references), so
    # the signal names it by the uid its references carry.
    assert viral[0].evidence["uid"] == referenced.most_common(1)[0][0]


def test_posts_seen_once_wait_in_a_bounded_table_of_candidates() -> None:
    det = detector(max_tracked=160)  # candidates: an eighth, 20
    for n in range(1000):
        det.observe(Observation(START + n, post(n, START + n, likes=500), 0.0))
    assert len(det.posts) == 0  # seen once, none can be viral yet: no full entry for any of them
    assert list(det.candidates) == [f"test:{n}" for n in range(980, 1000)]
    # A candidate fetched again is measured from its first sighting (500 likes at START + 999)...
    ts = START + 999 + 100
    fired = det.reobserve(ts, post(999, START + 999, likes=500 + 100 * 4))
    assert [s.evidence["velocity_per_s"] for s in fired] == [4.0]
    assert "test:999" in det.posts and "test:999" not in det.candidates
    # ...one pushed out long ago, from its creation: 1100 likes in about 1100 s, 1 per second, not viral.
    assert det.reobserve(ts + MIN_COOLDOWN_S, post(0, START, likes=500 + 600)) == []
    assert det.posts["test:0"].velocity == pytest.approx(1100 / (ts + MIN_COOLDOWN_S - START))


def test_candidates_past_the_tracking_period_are_dropped() -> None:
    det = detector(track=600)
    det.observe(Observation(START, post(1, START, likes=500), 0.0))
    det.advance(START + 601 + 60)
    assert det.candidates == {}
    # Seen again after its period: a candidate afresh from this sighting, not from the old one.
    det.observe(Observation(START + 700, post(1, START, likes=900), 0.0))
    assert det.candidates["test:1"][:2] == (START + 700, 900)
    det.reobserve(START + 800, post(1, START, likes=1000))
    assert det.posts["test:1"].first_seen == START + 700 and det.posts["test:1"].velocity == 1.0
