"""The evidence a bucket keeps: the most engaged posts and a sample of the newest, however they arrive."""

from __future__ import annotations

import random

from harvester.engine.detectors.base import Observation
from harvester.engine.detectors.evidence import SAMPLE_SIZE, Tally, top_examples
from tests.helpers import T0, make_post


def _observations(n: int, seed: int) -> list[Observation]:
    rng = random.Random(seed)
    return [
        Observation(T0.timestamp() + i, make_post(i, "acme", likes=rng.choice([0, 1, 5, 40, 900])), 0.0)
        for i in range(n)
    ]


def test_batches_and_single_posts_keep_the_same_evidence() -> None:
    observations = _observations(200, seed=4)
    one_by_one, in_batches = Tally(), Tally()
    for obs in observations:
        one_by_one.add(obs, 3)
    rng = random.Random(9)
    i = 0
    while i < len(observations):
        size = rng.randint(1, 40)
        in_batches.add_many(observations[i : i + size], 3)
        i += size
    assert one_by_one.seen == in_batches.seen == 200
    assert one_by_one.sample == in_batches.sample == [o.post.text for o in observations[-SAMPLE_SIZE:]]
    assert sorted(one_by_one.examples) == sorted(in_batches.examples)
    expected = sorted(((o.engagement, o.post.uid) for o in observations), reverse=True)[:3]
    assert top_examples([in_batches], 3) == [uid for _, uid in expected]
