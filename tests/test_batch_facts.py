"""A rule's batch is summed once for its three window detectors, to the same figures each of them
worked out alone; the first batch a volume detector ever gets is folded in as a batch."""

from __future__ import annotations

import random

from harvester.config.schema import VolumeSpikeConfig
from harvester.engine.detectors.base import Observation
from harvester.engine.detectors.batch import NEUTRAL_BAND, Batch, facts_of
from harvester.engine.volume import VolumeSpikeDetector
from tests.helpers import T0, make_post


def _batch(n: int, seed: int) -> Batch:
    rng = random.Random(seed)
    batch = Batch()
    for i in range(n):
        score = rng.choice([None, -0.8, -0.05, -0.01, 0.0, 0.04, 0.05, 0.6])
        post = make_post(i, "acme news", author=f"user{rng.randrange(12)}")
        batch.append(Observation(T0.timestamp() + i / 10, post, score))
    return batch


def test_a_batch_is_summed_once_and_as_each_detector_would() -> None:
    batch = _batch(300, seed=3)
    facts = facts_of(batch)
    assert facts_of(batch) is facts  # the next detector reads the same figures
    scored = [obs for obs in batch if obs.sentiment is not None]
    scores = [obs.sentiment for obs in scored if obs.sentiment is not None]
    assert facts.scored == len(scored) < len(batch)
    assert abs(facts.total - sum(scores)) < 1e-9
    assert abs(facts.squares - sum(s * s for s in scores)) < 1e-9
    assert facts.authors.names == [obs.post.author for obs in batch]
    assert facts.scored_authors.names == [obs.post.author for obs in scored]
    assert facts.negative == [obs for obs in scored if (obs.sentiment or 0) <= -NEUTRAL_BAND]
    assert facts.positive == [obs for obs in scored if (obs.sentiment or 0) >= NEUTRAL_BAND]
    # A plain list (a slice of a batch that spans two buckets) gets its own, equal figures.
    alone = facts_of(list(batch))
    assert alone is not facts
    assert (alone.scored, alone.total, alone.negative) == (facts.scored, facts.total, facts.negative)


def test_a_fully_scored_batch_hashes_its_authors_once() -> None:
    batch = Batch()
    for i in range(10):
        batch.append(Observation(T0.timestamp() + i, make_post(i, author=f"a{i % 4}"), 0.1))
    facts = facts_of(batch)
    assert facts.scored_authors is facts.authors
    assert facts.authors.hashes == {hash(f"a{i}") for i in range(4)}
    assert facts.authors.least == min(hash(f"a{i}") for i in range(4))


def test_the_first_batch_of_a_volume_detector_lands_as_post_by_post() -> None:
    config = VolumeSpikeConfig(bucket=60, window_buckets=5, warmup_buckets=3, min_count=5)
    batch = _batch(200, seed=8)  # 20 s: one bucket
    by_batch = VolumeSpikeDetector("r", config)
    assert by_batch.observe_many(batch) == []
    by_post = VolumeSpikeDetector("r", config)
    for obs in batch:
        by_post.observe(obs)
    assert [b.index for b in by_batch.buckets] == [b.index for b in by_post.buckets]
    assert by_batch.window_count == by_post.window_count == 200
    got, want = by_batch.buckets[-1], by_post.buckets[-1]
    assert (got.count, got.sentiment_n) == (want.count, want.sentiment_n)
    assert abs(got.sentiment_sum - want.sentiment_sum) < 1e-9
    assert len(got.authors) == len(want.authors) == 12
    assert by_batch.window.partial_index == by_post.window.partial_index == got.index
