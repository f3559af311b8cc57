"""The first engine: rule matching, sentiment once per matched post, and the volume-spike detector."""

from __future__ import annotations

import math
import random
from datetime import timedelta

from harvester.config.schema import EngineConfig, RuleConfig, VolumeSpikeConfig
from harvester.engine import Engine
from harvester.engine.detectors.base import Observation
from harvester.engine.volume import VolumeSpikeDetector
from harvester.models import Severity
from tests.helpers import T0, make_post


def test_sentiment_only_for_matched_posts() -> None:
    engine = Engine([RuleConfig(name="a", keywords=["acme"])], EngineConfig())
    miss = engine.process(make_post(1, "I love this"), T0.timestamp())
    hit = engine.process(make_post(2, "acme is terrible, awful, I hate it"), T0.timestamp())
    assert miss.sentiment is None and miss.rules == ()
    assert hit.rules == ("a",) and hit.sentiment is not None and hit.sentiment < -0.5


SPIKE = VolumeSpikeConfig(
    bucket=10, window_buckets=3, warmup_buckets=6, min_count=8, threshold=4, cooldown=300
)


def feed(
    detector: VolumeSpikeDetector,
    start: float,
    seconds: int,
    per_second: float,
    rng: random.Random,
    first_id: int = 0,
) -> list[tuple[float, object]]:
    fired = []
    n = first_id
    for s in range(seconds):
        count = int(per_second) + (1 if rng.random() < per_second % 1 else 0)
        for k in range(count):
            ts = start + s + k / (count + 1)
            n += 1
            post = make_post(n, "acme", at=T0 + timedelta(seconds=ts - T0.timestamp()))
            fired += [(ts, signal) for signal in detector.observe(Observation(ts, post, 0.0))]
    return fired


def test_a_day_of_baseline_traffic_with_a_rhythm_never_fires() -> None:
    rng = random.Random(3)
    detector = VolumeSpikeDetector("acme", SPIKE)
    fired = []
    t = T0.timestamp()
    for minute in range(24 * 60):
        # Day/night rhythm (0.4x at night to 1.6x in the afternoon) with +-20% jitter per minute.
        rhythm = 1.0 + 0.6 * math.sin(2 * math.pi * (minute / 60 - 10) / 24)
        fired += feed(detector, t + minute * 60, 60, rhythm * rng.uniform(0.8, 1.2), rng, minute * 1000)
    assert fired == []


def test_spike_fires_within_seconds_and_once_per_cooldown() -> None:
    rng = random.Random(5)
    detector = VolumeSpikeDetector("acme", SPIKE)
    t = T0.timestamp()
    assert feed(detector, t, 300, 1.0, rng) == []
    fired = feed(detector, t + 300, 60, 8.0, rng, 10_000)
    assert len(fired) == 1
    at, signal = fired[0]
    assert at - (t + 300) <= 10  # detected within 10 s of the onset
    assert signal.rule == "acme" and signal.kind == "volume_spike"  # type: ignore[attr-defined]
    assert signal.observed > 2 * signal.baseline  # type: ignore[attr-defined]
    assert signal.severity in (Severity.LOW, Severity.MEDIUM, Severity.HIGH)  # type: ignore[attr-defined]
    assert signal.evidence["example_uids"]  # type: ignore[attr-defined]


def test_a_spike_does_not_become_the_new_normal() -> None:
    rng = random.Random(9)
    detector = VolumeSpikeDetector("acme", SPIKE)
    t = T0.timestamp()
    feed(detector, t, 300, 1.0, rng)
    feed(detector, t + 300, 120, 10.0, rng, 10_000)
    assert detector.mean < 3.0 * 10  # clipped: far below the spike's ~100 per bucket


def test_a_surge_ramping_up_just_after_warm_up_is_judged_against_the_traffic_before_it() -> None:
    # The README demo at night: 5 s buckets, a rule that gets about one post in two buckets, and a
    # crisis that arrives while only four buckets have been learned and ramps up over half a minute.
    # Had each of its buckets been learned as soon as it closed (a fifth of the baseline this early),
    # mean and variance would have risen with it and the window never reached 4 sigma.
    config = VolumeSpikeConfig(bucket=5, window_buckets=3, warmup_buckets=4, min_count=10, threshold=4)
    detector = VolumeSpikeDetector("acme", config)
    t = T0.timestamp()
    quiet, surge = [0, 1, 0, 1, 0, 2, 1], [2, 4, 5, 7, 10, 13, 14, 13]  # posts per 5 s bucket
    counts = [*quiet, *surge]
    fired: list[tuple[int, object]] = []
    n = 0
    for bucket, count in enumerate(counts):
        for k in range(count):
            n += 1
            ts = t + bucket * 5 + 5 * (k + 0.5) / count
            post = make_post(n, "acme", at=T0 + timedelta(seconds=ts - t))
            fired += [(bucket, signal) for signal in detector.observe(Observation(ts, post, 0.0))]
    assert fired, "the surge was never signalled"
    assert fired[0][0] <= len(quiet) + 3  # within the surge's fourth bucket: 20 s after it began
    assert detector.baseline.mean > detector.mean  # the window's buckets are learned, not judged against


def test_warmup_suppresses_early_alarms() -> None:
    rng = random.Random(1)
    detector = VolumeSpikeDetector("acme", SPIKE)
    assert feed(detector, T0.timestamp(), 40, 20.0, rng) == []


def test_snapshot_restore_keeps_baseline_and_ignores_downtime() -> None:
    rng = random.Random(2)
    detector = VolumeSpikeDetector("acme", SPIKE)
    t = T0.timestamp()
    feed(detector, t, 600, 2.0, rng)
    state = detector.snapshot()
    restored = VolumeSpikeDetector("acme", SPIKE)
    restored.restore(state)
    assert restored.mean == detector.mean and restored.closed == detector.closed
    assert restored.baseline.mean == detector.baseline.mean
    # Down for an hour: the gap must not be learned as an hour of silence.
    later = t + 600 + 3600
    assert feed(restored, later, 120, 2.0, rng, 50_000) == []
    assert restored.mean > 10  # ~20 per bucket, not decayed towards zero
