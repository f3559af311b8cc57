"""The engine hands a rule's posts to its window detectors in small batches: same state, same signals,
at most `BATCH_SECONDS` of engine time or `BATCH_POSTS` posts later than post by post."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from harvester.config.detectors import (
    CampaignConfig,
    CrisisConfig,
    SentimentShiftConfig,
    SilenceConfig,
    ViralConfig,
)
from harvester.config.schema import EngineConfig, RuleConfig, VolumeSpikeConfig
from harvester.engine import Engine
from harvester.engine.detectors.base import Observation
from harvester.engine.detectors.crisis import CrisisDetector
from harvester.engine.detectors.sentiment import SentimentShiftDetector
from harvester.engine.engine import BATCH_POSTS, BATCH_SECONDS
from harvester.engine.volume import VolumeSpikeDetector
from harvester.models import Post, Signal
from tests.helpers import T0, make_post

VOLUME = VolumeSpikeConfig(
    bucket=10, window_buckets=3, warmup_buckets=6, min_count=8, threshold=4, cooldown=300
)
SENTIMENT = SentimentShiftConfig(bucket=10, window_buckets=3, warmup_buckets=6, min_posts=20)
CRISIS = CrisisConfig(within=300)


# Buckets narrower than a batch: most batches are cut into runs (see `bucket_runs`).
NARROW = (
    VolumeSpikeConfig(bucket=1, window_buckets=5, warmup_buckets=30, min_count=8, threshold=4, cooldown=300),
    SentimentShiftConfig(bucket=1, window_buckets=10, warmup_buckets=30, min_posts=20),
    CrisisConfig(within=45),
)


def _config(
    volume: VolumeSpikeConfig = VOLUME,
    sentiment: SentimentShiftConfig = SENTIMENT,
    crisis: CrisisConfig = CRISIS,
) -> EngineConfig:
    return EngineConfig(
        volume_spike=volume,
        sentiment=sentiment,
        crisis=crisis,
        viral=ViralConfig(enabled=False),
        campaign=CampaignConfig(enabled=False),
        silence=SilenceConfig(enabled=False),
        source_silence=SilenceConfig(enabled=False),
    )


def _stream(seconds: int, rng: random.Random) -> list[tuple[float, Post, float]]:
    """Calm traffic at about 2 posts/s, then a minute of a grumpy outage at ten times that."""
    posts = []
    n = 0
    t0 = T0.timestamp()
    for s in range(seconds):
        outage = seconds - 90 <= s < seconds - 30
        count = rng.randint(15, 25) if outage else rng.randint(1, 3)
        for k in range(count):
            n += 1
            ts = t0 + s + k / (count + 1)
            text = "acme outage, refund now" if outage else "acme is fine i guess"
            score = rng.uniform(-0.9, -0.5) if outage else rng.uniform(-0.3, 0.6)
            posts.append((ts, make_post(n, text, at=T0 + timedelta(seconds=ts - t0)), score))
    return posts


def _post_by_post(
    posts: list[tuple[float, Post, float]],
    configs: tuple[VolumeSpikeConfig, SentimentShiftConfig, CrisisConfig] = (VOLUME, SENTIMENT, CRISIS),
) -> list[tuple[float, Signal]]:
    """The detectors fed directly, one post at a time, with the engine's composite wiring."""
    volume = VolumeSpikeDetector("acme", configs[0], lateness=EngineConfig().lateness)
    sentiment = SentimentShiftDetector("acme", configs[1])
    crisis = CrisisDetector("acme", configs[2])
    fired: list[tuple[float, Signal]] = []
    for ts, post, score in posts:
        obs = Observation(ts, post, score)
        for detector in (volume, sentiment, crisis):
            for signal in detector.observe(obs):
                fired.append((ts, signal))
                if signal.kind == "volume_spike":
                    fired += [(ts, extra) for extra in crisis.note_signal(signal)]
    return fired


@pytest.mark.parametrize("configs", [(VOLUME, SENTIMENT, CRISIS), NARROW], ids=["wide", "narrow"])
def test_batched_detectors_raise_the_same_signals_at_most_a_batch_later(
    configs: tuple[VolumeSpikeConfig, SentimentShiftConfig, CrisisConfig],
) -> None:
    posts = _stream(900, random.Random(5))
    engine = Engine([RuleConfig(name="acme", keywords=["acme"])], _config(*configs))
    batched: list[tuple[float, Signal]] = []
    for ts, post, score in posts:
        verdict = engine.observe(post, engine.match(post), score, ts)
        batched += [(ts, signal) for signal in verdict.signals]
    direct = _post_by_post(posts, configs)
    assert {s.kind for _, s in direct} >= {"volume_spike", "sentiment_drop", "crisis"}

    # The same events, each first signalled within a batch of when it was post by post (either
    # way: post by post, a busy window is judged every 8th post or second, see `Throttle`; a batch
    # at its end). A batch may see an event already at the severity post by post reached only by
    # escalating, so it may need fewer signals, never more.
    def first_by_kind(signals: list[tuple[float, Signal]]) -> dict[str, float]:
        first: dict[str, float] = {}
        for ts, signal in signals:
            first.setdefault(signal.kind, ts)
        return first

    expected, got = first_by_kind(direct), first_by_kind(batched)
    assert expected.keys() == got.keys()
    for kind, ts in expected.items():
        assert abs(got[kind] - ts) <= BATCH_SECONDS + 1.0, kind  # + the gap to the next post
    assert 0 < len(batched) <= len(direct)


def test_state_includes_pending_posts_and_their_signals_are_not_lost() -> None:
    engine = Engine([RuleConfig(name="acme", keywords=["acme"])], _config())
    t0 = T0.timestamp()
    for n in range(BATCH_POSTS - 1):  # fewer than a batch, within a second: all still pending
        post = make_post(n, "acme", at=T0 + timedelta(seconds=n * 0.01))
        engine.observe(post, engine.match(post), 0.1, t0 + n * 0.01)
    volume = engine.detectors("acme")["volume_spike"]
    assert isinstance(volume, VolumeSpikeDetector)
    assert volume.window_count == BATCH_POSTS - 1  # asking for the detectors hands the batch over
    snapshot = engine.snapshot()
    restored = Engine([RuleConfig(name="acme", keywords=["acme"])], _config())
    restored.restore(snapshot)
    again = restored.detectors("acme")["volume_spike"]
    assert isinstance(again, VolumeSpikeDetector) and again.window_count == BATCH_POSTS - 1


def test_a_batch_is_handed_over_once_full_or_a_second_later() -> None:
    engine = Engine([RuleConfig(name="acme", keywords=["acme"])], _config())
    state = engine.rules["acme"]
    t0 = T0.timestamp()
    for n in range(BATCH_POSTS + 1):
        post = make_post(n, "acme")
        engine.observe(post, engine.match(post), 0.0, t0 + n * 0.001)
    assert len(state.pending) == 1  # the first BATCH_POSTS went as one batch
    other = make_post(99, "nothing to see")
    engine.observe(other, engine.match(other), None, t0 + BATCH_SECONDS + 0.5)  # any post moves time
    assert state.pending == []


def test_a_post_older_than_the_pending_batch_is_not_folded_out_of_order() -> None:
    engine = Engine([RuleConfig(name="acme", keywords=["acme"])], _config())
    t0 = T0.timestamp() + 15  # the middle of a 10 s bucket
    # Engine times: bucket k, k+1, k+1 (each more than a second apart: each hands the last over),
    # then a late post back in bucket k and one more in k+1 within the same second.
    for n, ts in enumerate((t0, t0 + 10, t0 + 11.5, t0 + 1, t0 + 11.6)):
        post = make_post(n, "acme")
        engine.observe(post, engine.match(post), 0.0, ts)
    volume = engine.detectors("acme")["volume_spike"]
    assert isinstance(volume, VolumeSpikeDetector)
    assert [b.count for b in volume.buckets] == [2, 3]


def test_ticks_hand_batches_over_only_once_they_are_due() -> None:
    engine = Engine([RuleConfig(name="acme", keywords=["acme"])], _config())
    state = engine.rules["acme"]
    t0 = T0.timestamp()
    engine.tick(t0)  # the daemon ticks every second, posts or not
    post = make_post(1, "acme")
    engine.observe(post, engine.match(post), 0.0, t0 + 0.1)
    engine.tick(t0 + 1.0)
    assert len(state.pending) == 1  # a tick a second later leaves the young batch to grow
    engine.tick(t0 + BATCH_SECONDS + 0.1)
    assert state.pending == []
    volume = engine.rules["acme"].detectors["volume_spike"][1]
    assert isinstance(volume, VolumeSpikeDetector) and volume.window_count == 1


def test_process_many_gives_the_verdicts_of_process() -> None:
    posts = _stream(900, random.Random(8))
    rules = [RuleConfig(name="acme", keywords=["acme"]), RuleConfig(name="outage", keywords=["outage"])]
    one, many = Engine(rules, _config()), Engine(rules, _config())
    singly = [one.process(post, ts) for ts, post, _ in posts]
    timed = [(post, ts) for ts, post, _ in posts]
    chunked = [
        verdict for i in range(0, len(timed), 100) for verdict in many.process_many(timed[i : i + 100])
    ]
    assert chunked == singly
    assert any(verdict.signals for verdict in singly)
