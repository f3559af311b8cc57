"""The evidence a bucket keeps: the most engaged posts and a sample of the newest, however they arrive."""

from __future__ import annotations

import random

import pytest

from harvester.engine.detectors.base import Observation
from harvester.engine.detectors.evidence import (
    DISTINCT_EXACT,
    SAMPLE_SIZE,
    DistinctCount,
    Tally,
    top_examples,
)
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


def names(prefix: str, count: int) -> list[str]:
    return [f"{prefix}-{i}" for i in range(count)]


def test_distinct_count_is_exact_up_to_its_size_and_ignores_repeats() -> None:
    count = DistinctCount()
    accounts = names("a", DISTINCT_EXACT)
    count.add_many(accounts[:10])
    assert len(count) == 10
    count.add_many(accounts)  # the first ten again, and the rest
    count.add(accounts[0])
    assert len(count) == DISTINCT_EXACT and not count.saturated
    fewer, other = DistinctCount(), DistinctCount()
    fewer.add_many(accounts[:40])
    other.add_many(accounts[:5] + names("b", 7))  # five shared with the first
    assert DistinctCount.union([fewer, other]) == 47


def test_distinct_count_estimates_many_accounts_in_bounded_memory() -> None:
    # Each sketch is off by about 13% (its hashes are salted per process, so each run draws anew);
    # the mean over 30 independent ones is within a few percent.
    for true in (500, 20_000):
        estimates = []
        for run in range(30):
            count = DistinctCount()
            accounts = names(f"r{run}", true)
            for first in range(0, true, 32):  # in batches, as detectors add them
                count.add_many(accounts[first : first + 32])
            count.add_many(accounts[::3])  # repeats change nothing
            assert count.names is None and len(count.smallest) == DISTINCT_EXACT and count.saturated
            estimates.append(len(count))
        assert sum(estimates) / len(estimates) == pytest.approx(true, rel=0.15)


def test_distinct_count_union_counts_each_account_once() -> None:
    estimates = []
    for run in range(30):
        buckets = [DistinctCount() for _ in range(5)]
        for i, account in enumerate(names(f"u{run}", 5000)):  # every account in two buckets
            buckets[i % 5].add(account)
            buckets[(i + 1) % 5].add(account)
        estimates.append(DistinctCount.union(buckets))
    assert sum(estimates) / len(estimates) == pytest.approx(5000, rel=0.15)
