"""X's reconnect policy and the token pool, as pure state machines."""

from __future__ import annotations

import random

import pytest

from harvester.sources.twitter_policy import (
    AllTokensRejected,
    Backoff,
    Failure,
    ReconnectPolicy,
    TokenPool,
    TokenStatus,
)
from tests.fake_twitter import FixedRandom


def sequence(failure: Failure, count: int, rng: random.Random, jitter: float = 0.1) -> list[float]:
    backoff = Backoff(ReconnectPolicy(jitter=jitter))
    return [round(backoff.next_delay(failure, rng), 6) for _ in range(count)]


def test_x_documented_progressions_without_jitter() -> None:
    rng = FixedRandom(0.0)
    assert sequence(Failure.CLEAN_CLOSE, 3, rng) == [0, 0, 0]
    assert sequence(Failure.NETWORK, 66, rng)[:4] == [0.25, 0.5, 0.75, 1.0]
    assert sequence(Failure.NETWORK, 66, rng)[-3:] == [16, 16, 16]
    assert sequence(Failure.HTTP, 8, rng) == [5, 10, 20, 40, 80, 160, 320, 320]
    assert sequence(Failure.RATE_LIMITED, 6, rng) == [60, 120, 240, 480, 960, 960]


def test_jitter_only_adds_and_stays_within_its_fraction() -> None:
    top = sequence(Failure.HTTP, 3, FixedRandom(1.0), jitter=0.2)
    assert top == [6, 12, 24]
    rng = random.Random(7)
    for nominal, delay in zip([60, 120, 240], sequence(Failure.RATE_LIMITED, 3, rng), strict=True):
        assert nominal <= delay <= nominal * 1.1


def test_classes_progress_independently_and_reset_together() -> None:
    rng = FixedRandom(0.0)
    backoff = Backoff(ReconnectPolicy(jitter=0))
    assert backoff.next_delay(Failure.HTTP, rng) == 5
    assert backoff.next_delay(Failure.NETWORK, rng) == 0.25
    assert backoff.next_delay(Failure.HTTP, rng) == 10
    backoff.reset()
    assert backoff.next_delay(Failure.HTTP, rng) == 5


def test_a_rate_limited_token_is_benched_and_the_next_one_used() -> None:
    rng = FixedRandom(0.0)
    pool = TokenPool(2, ReconnectPolicy(jitter=0))
    assert pool.choose(0.0) == (0, 0.0)
    assert pool.rate_limited(0, 0.0, rng) == 60
    assert pool.usable_others(0, 0.0)
    assert pool.choose(1.0) == (1, 0.0) and pool.rotations == 1
    assert pool.rate_limited(1, 1.0, rng) == 60
    assert pool.choose(2.0) == (None, 58.0)  # both benched: wait for the first to come back
    assert pool.choose(60.0) == (0, 0.0)
    assert pool.rate_limited(0, 60.0, rng) == 120  # its second 429 in a row doubles
    pool.succeeded(1)
    snapshot = pool.snapshot(61.0)
    assert snapshot[0]["status"] == "rate_limited" and snapshot[0]["retry_in_s"] == 119.0
    assert snapshot[1]["rate_limited"] == 0
    assert all("secret" not in str(s) for s in snapshot)


def test_reset_time_from_the_server_lengthens_the_wait() -> None:
    pool = TokenPool(1, ReconnectPolicy(jitter=0))
    assert pool.rate_limited(0, 100.0, FixedRandom(0), reset_at=400.0) == 300.0
    assert pool.rate_limited(0, 100.0, FixedRandom(0), reset_at=99_999.0) == 960.0  # bounded


def test_rejected_tokens_are_skipped_until_none_is_left() -> None:
    pool = TokenPool(2, ReconnectPolicy())
    pool.rejected(0)
    assert pool.choose(0.0) == (1, 0.0)
    assert pool.states[0].status is TokenStatus.REJECTED
    pool.rejected(1)
    with pytest.raises(AllTokensRejected):
        pool.choose(0.0)
