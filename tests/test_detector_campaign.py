"""Coordinated campaigns: near-duplicate texts from many accounts, on hand-built streams, through the
shared near-duplicate index, and on the synthetic source's campaign scenario.

Time is the `ts` each observation carries; nothing reads a clock.
"""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import timedelta

import pytest

from harvester.config.detectors import CampaignConfig
from harvester.config.schema import EngineConfig, RuleConfig
from harvester.engine import Engine
from harvester.engine.detectors.base import Observation
from harvester.engine.detectors.campaign import CampaignDetector, index_for
from harvester.engine.detectors.near_duplicates import NearDuplicateIndex
from harvester.models import Post, Severity, Signal
from harvester.sources.synthetic_text import ScenarioPlan, StreamGenerator
from tests.helpers import CAMPAIGN_MESSAGE as MESSAGE
from tests.helpers import T0, make_post

START = T0.timestamp()
SWAPS = ("truth", "story", "reality", "details", "evidence", "numbers")
EVERYDAY = (
    "just landed in lisbon and the weather is lovely, off to find coffee",
    "my cat knocked a plant off the shelf again this morning, classic tuesday",
    "anyone know a good place for ramen near the station, asking for a friend",
    "finished the book last night and the ending was not what i expected at all",
    "the new season of that baking show is on tonight, cannot wait to watch it",
    "went for a long run by the river today and my legs are complaining now",
)


class Feed:
    """Posts for one rule, numbered uniquely, at chosen times and from chosen accounts."""

    def __init__(self) -> None:
        self.seq = 0

    def post(
        self, ts: float, text: str, author: str, *, followers: int | None = None, ref: str | None = None
    ) -> Post:
        self.seq += 1
        post = make_post(self.seq, text, at=T0 + timedelta(seconds=ts - START), author=author)
        return replace(post, followers=followers, ref=ref, likes=self.seq % 7)

    def variant(self, rng: random.Random) -> str:
        """The message with one word swapped; the first call gives it as written, so that the cluster
        it opens is centred on it (a cluster is a ball around its first post, and two variants can be
        twice as far apart as each is from the message)."""
        word = rng.choice(SWAPS) if self.seq else "truth"
        return MESSAGE.replace("truth", word)


def detector(**overrides: object) -> CampaignDetector:
    return CampaignDetector("acme", CampaignConfig.model_validate(overrides))


def feed(det: CampaignDetector, posts: list[tuple[float, Post]]) -> list[Signal]:
    signals: list[Signal] = []
    for ts, post in posts:
        signals += det.observe(Observation(ts, post, -0.5))
    return signals


def test_many_accounts_posting_variants_of_one_message_fire_once_at_min_accounts() -> None:
    rng = random.Random(1)
    stream = Feed()
    det = detector()
    posts = [
        (START + 20 * i, stream.post(START + 20 * i, stream.variant(rng), f"bot{i}", followers=12))
        for i in range(25)
    ]
    signals = feed(det, posts[:14])
    assert signals == []  # 14 accounts: one short of min_accounts
    signals = feed(det, posts[14:])
    first = signals[0]
    assert first.kind == "campaign" and first.rule == "acme"
    assert first.at.timestamp() == START + 20 * 14  # fired on the 15th account
    evidence = first.evidence
    assert evidence["distinct_accounts"] == 15
    assert evidence["low_follower_share"] == 1.0  # every account tiny: the mark of bought accounts
    assert first.severity is Severity.MEDIUM  # low by count, one level up for the tiny accounts
    assert "engine failures" in evidence["representative_text"]
    assert set(evidence["example_authors"]) <= {f"bot{i}" for i in range(15)}
    assert len(evidence["example_uids"]) == 3
    # Escalations only: the same cluster growing stays quiet until it reaches a higher severity.
    assert all(s.severity.rank > first.severity.rank for s in signals[1:])


def test_one_account_repeating_itself_is_not_a_campaign() -> None:
    rng = random.Random(2)
    stream = Feed()
    posts = [
        (START + 10 * i, stream.post(START + 10 * i, stream.variant(rng), "loud_person")) for i in range(60)
    ]
    assert feed(detector(), posts) == []


def test_everyday_posts_from_many_accounts_are_not_a_campaign() -> None:
    rng = random.Random(3)
    stream = Feed()
    posts = []
    for i in range(600):
        ts = START + i
        text = f"{rng.choice(EVERYDAY)} {rng.choice(('lol', 'honestly', 'ok', 'anyway', ''))}".strip()
        posts.append((ts, stream.post(ts, text, f"user{rng.randrange(400)}")))
    # The six everyday sentences repeat by chance, but a few accounts per sentence in ten minutes
    # would be enough only with a lower bar; with the default 15 they would need to be organised.
    signals = feed(detector(min_accounts=200), posts)
    assert signals == []


def test_accounts_spread_over_more_than_the_window_do_not_add_up() -> None:
    rng = random.Random(4)
    stream = Feed()
    # 20 accounts, one every 60 s, with a 300 s window: never more than 5 in any window.
    posts = [
        (START + 60 * i, stream.post(START + 60 * i, stream.variant(rng), f"acct{i}")) for i in range(20)
    ]
    assert feed(detector(window=300), posts) == []


def test_pure_reposts_and_reaction_waves_are_left_to_the_viral_detector() -> None:
    stream = Feed()
    reposts = [(START + i, stream.post(START + i, f"RT @celebrity: {MESSAGE}", f"fan{i}")) for i in range(40)]
    assert feed(detector(), reposts) == []
    replies = [
        (
            START + 100 + i,
            stream.post(
                START + 100 + i, "this is so true, everyone needs to read it now", f"reply{i}", ref="test:1"
            ),
        )
        for i in range(40)
    ]
    assert feed(detector(), replies) == []


def test_short_texts_are_too_alike_by_chance() -> None:
    stream = Feed()
    posts = [(START + i, stream.post(START + i, "gm gm everyone", f"user{i}")) for i in range(50)]
    assert feed(detector(), posts) == []


def test_a_second_cluster_of_a_fired_campaign_is_the_same_campaign() -> None:
    rng = random.Random(5)
    stream = Feed()
    det = detector()
    first_wave = [(START + i, stream.post(START + i, stream.variant(rng), f"bot{i}")) for i in range(20)]
    assert len(feed(det, first_wave)) >= 1
    # The same accounts push a reworded version that falls into a cluster of its own.
    other = "Share this before they delete it: Acme Air hides engine failures from every passenger today"
    second_wave = [(START + 60 + i, stream.post(START + 60 + i, other, f"bot{i}")) for i in range(20)]
    assert feed(det, second_wave) == []


def test_memory_is_bounded_by_max_clusters() -> None:
    rng = random.Random(6)
    stream = Feed()
    det = detector(max_clusters=50)
    words = [f"w{n}" for n in range(500)]
    for i in range(3000):
        text = " ".join(rng.sample(words, 12))
        det.observe(Observation(START + i * 0.1, stream.post(START + i * 0.1, text, f"u{i % 3}"), 0.0))
    assert det.own_index is not None
    assert len(det.own_index.clusters) <= 50
    assert len(det.clusters) <= 50


def test_the_shared_index_places_each_post_once_and_each_rule_counts_its_own_posts() -> None:
    engine = Engine(
        [
            RuleConfig(name="acme", keywords=["acme"]),
            RuleConfig(name="engines", keywords=["engine failures"]),
            RuleConfig(name="strict", keywords=["acme"], campaign=CampaignConfig(min_accounts=40)),
        ],
        EngineConfig(),
    )
    assert engine.near_duplicates is not None
    rng = random.Random(7)
    stream = Feed()
    signals: list[Signal] = []
    for i in range(20):
        ts = START + 15 * i
        signals += engine.process(stream.post(ts, stream.variant(rng), f"bot{i}"), ts).signals
    campaigns = [s for s in signals if s.kind == "campaign"]
    assert {s.rule for s in campaigns} == {"acme", "engines"}  # "strict" wants 40 accounts
    assert len({s.evidence["fingerprint"] for s in campaigns}) == 1  # one shared cluster
    assert len(engine.near_duplicates.clusters) == 1


def test_a_rule_with_a_tighter_radius_skips_far_variants_of_a_shared_cluster() -> None:
    index = NearDuplicateIndex(max_distance=12, min_chars=30, window=600, max_clusters=100)
    loose = CampaignDetector("loose", CampaignConfig(max_distance=12), index=index)
    tight = CampaignDetector("tight", CampaignConfig(max_distance=0), index=index)
    rng = random.Random(8)
    stream = Feed()
    fired: dict[str, list[Signal]] = {"loose": [], "tight": []}
    for i in range(20):
        ts = START + i
        obs = Observation(ts, stream.post(ts, stream.variant(rng), f"bot{i}"), -0.2)
        obs.cluster = index.place(obs, ("loose", "tight"))
        fired["loose"] += loose.observe(obs)
        fired["tight"] += tight.observe(obs)
    assert fired["loose"]
    # Exact copies only: five wordings, none of them from 15 accounts.
    assert fired["tight"] == []


def test_snapshot_and_restore_keep_clusters_and_do_not_fire_again() -> None:
    rules = [RuleConfig(name="acme", keywords=["acme"])]
    engine = Engine(rules, EngineConfig())
    rng = random.Random(9)
    stream = Feed()
    signals: list[Signal] = []
    for i in range(20):
        ts = START + 10 * i
        signals += engine.process(stream.post(ts, stream.variant(rng), f"bot{i}"), ts).signals
    assert [s.kind for s in signals].count("campaign") == 1
    blob = engine.snapshot()
    restored = Engine(rules, EngineConfig())
    assert restored.restore(blob) == 1
    assert restored.near_duplicates is not None and len(restored.near_duplicates.clusters) == 1
    again: list[Signal] = []
    for i in range(20, 30):  # the same campaign goes on after the restart
        ts = START + 10 * i
        again += restored.process(stream.post(ts, stream.variant(rng), f"bot{i}"), ts).signals
    assert [s for s in again if s.kind == "campaign"] == []


def test_index_for_serves_the_most_demanding_rule() -> None:
    index = index_for(
        [CampaignConfig(max_distance=3, window=60), CampaignConfig(min_chars=10, max_clusters=9)]
    )
    assert (index.max_distance, index.min_chars, index.window, index.max_clusters) == (6, 10, 600, 5000)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_synthetic_campaign_is_signalled_within_a_minute(seed: int) -> None:
    plan = ScenarioPlan(first_after=1800, every=86_400, duration=120, kinds=("campaign",))
    gen = StreamGenerator(seed=seed, source="synthetic", rate=20.0, origin=START, plan=plan)
    scenario = gen.scenario_at(START + plan.first_after)
    assert scenario is not None
    target = scenario.target
    rule = (
        RuleConfig(name="target", cashtags=[target])
        if target.startswith("$")
        else RuleConfig(name="target", keywords=[target.lower()])
    )
    engine = Engine([rule], EngineConfig())
    onset = scenario.start.timestamp()
    signals: list[Signal] = []
    ts, seq = START, 1
    while ts < onset + 180:
        when = T0 + timedelta(seconds=ts - START)
        signals += engine.process(gen.post(seq, ts, when, when), ts).signals
        ts += 1.0 / gen.rate_at(ts)
        seq += 1
    campaigns = [s for s in signals if s.kind == "campaign"]
    assert campaigns, "no campaign signal"
    assert [s for s in campaigns if s.at.timestamp() < onset] == []
    assert 0 < campaigns[0].at.timestamp() - onset <= 60
    assert campaigns[0].evidence["distinct_accounts"] >= 15
