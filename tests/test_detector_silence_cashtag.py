"""Silence (rules and sources) and new-cashtag trends, with time driven by the ts passed in."""

from __future__ import annotations

import random
from datetime import timedelta

from harvester.config.detectors import NewCashtagConfig, SilenceConfig
from harvester.engine.detectors.base import Observation
from harvester.engine.detectors.cashtags import NewCashtagDetector
from harvester.engine.detectors.silence import SilenceDetector, SourceSilenceDetector
from harvester.models import Post, Signal
from tests.helpers import T0, make_post

START = T0.timestamp()


def obs(ts: float, n: int) -> Observation:
    return Observation(ts, make_post(n, at=T0 + timedelta(seconds=ts - START)), 0.0, ())


def run_traffic(
    detector: SilenceDetector, start: float, seconds: int, per_s: float, rng: random.Random
) -> list[Signal]:
    signals: list[Signal] = []
    for s in range(seconds):
        ts = start + s
        if rng.random() < per_s:
            signals += detector.observe(obs(ts, s))
        signals += detector.advance(ts + 0.5)
    return signals


def test_a_rule_that_goes_quiet_signals_once_per_gap() -> None:
    rng = random.Random(1)
    detector = SilenceDetector("acme", SilenceConfig(min_gap=300, gap_factor=20))
    assert run_traffic(detector, START, 3600, 0.5, rng) == []  # an hour of steady traffic
    quiet = [s for t in range(3600, 3600 + 1200) for s in detector.advance(START + t)]
    assert len(quiet) == 1  # one signal for a 20-minute gap
    signal = quiet[0]
    assert signal.kind == "silence" and signal.rule == "acme"
    assert 300 <= signal.evidence["silent_s"] <= 330  # fired once the gap reached min_gap
    assert run_traffic(detector, START + 4800, 600, 0.5, rng) == []  # traffic resumes: no more signals
    again = [s for t in range(5400, 5400 + 900) for s in detector.advance(START + t)]
    assert len(again) == 1  # a new gap fires again


def test_rare_traffic_is_never_called_silent() -> None:
    rng = random.Random(2)
    detector = SilenceDetector("rare", SilenceConfig(min_rate=0.05))
    assert run_traffic(detector, START, 6 * 3600, 0.01, rng) == []  # one post every ~100 s: no expectation


def test_sources_are_watched_separately_and_restore_does_not_count_downtime() -> None:
    detector = SourceSilenceDetector(SilenceConfig(min_gap=120, gap_factor=10))
    for s in range(1800):
        detector.observe(START + s, make_post(s, source="alive"), ())
        if s < 900:
            detector.observe(START + s, make_post(s, source="dying"), ())
        assert all(sig.rule == "source:dying" for sig in detector.advance(START + s))
    fired = [sig for s in range(1800, 1900) for sig in detector.advance(START + s)]
    assert [sig.rule for sig in fired] == []  # already signalled during the gap
    restored = SourceSilenceDetector(SilenceConfig(min_gap=120, gap_factor=10))
    restored.restore(detector.snapshot())
    later = START + 86_400  # a day later: the downtime itself is not a gap
    assert restored.advance(later) == []
    fired = [sig for s in range(1, 400) for sig in restored.advance(later + s)]
    assert {sig.rule for sig in fired} == {"source:dying", "source:alive"}  # dead since the restart


def cashtag_post(n: int, tag: str, author: str) -> Post:
    return make_post(n, f"loading up on ${tag} before it runs", author=author)


def test_a_new_cashtag_rising_fast_fires_but_usual_tags_and_warmup_do_not() -> None:
    config = NewCashtagConfig(window=900, min_mentions=20, min_authors=10, known_after=50, warmup=3600)
    detector = NewCashtagDetector(config)
    n = 0
    fired = []
    for s in range(0, 7200, 10):  # two hours of $BTC chatter from the start
        n += 1
        fired += detector.observe(START + s, cashtag_post(n, "BTC", f"a{n % 30}"), ())
    assert fired == []  # $BTC was there during warm-up: usual, not new
    for i in range(40):  # $ZORK appears: 40 mentions by 25 accounts in 4 minutes
        n += 1
        fired += detector.observe(START + 7200 + i * 6, cashtag_post(n, "ZORK", f"z{i % 25}"), ())
    assert len(fired) == 1
    signal = fired[0]
    assert signal.rule == "cashtag:$ZORK" and signal.kind == "new_cashtag"
    assert signal.evidence["distinct_authors"] >= 10


def test_one_account_spamming_a_tag_is_not_a_trend() -> None:
    detector = NewCashtagDetector(NewCashtagConfig(warmup=0, min_mentions=20, min_authors=10))
    fired = [s for i in range(100) for s in detector.observe(START + i, cashtag_post(i, "SPAM", "bot"), ())]
    assert fired == []


def test_memory_stays_bounded() -> None:
    detector = NewCashtagDetector(NewCashtagConfig(max_tracked=1000, warmup=0))
    for i in range(20_000):
        detector.observe(START + i, cashtag_post(i, f"T{i}", "a"), ())
    detector.advance(START + 30_000)
    assert len(detector.mentions) <= 1000 and len(detector.recent) <= 1000


def test_mentions_older_than_the_window_do_not_count_towards_a_trend() -> None:
    config = NewCashtagConfig(window=900, min_mentions=20, min_authors=10, known_after=50, warmup=0)
    detector = NewCashtagDetector(config)
    fired = [s for i in range(15) for s in detector.observe(START + i, cashtag_post(i, "ZORK", f"a{i}"), ())]
    # An hour later, 10 more mentions: 25 in the tag's lifetime, but only these 10 in the window.
    later = START + 3600
    fired += [
        s for i in range(10) for s in detector.observe(later + i, cashtag_post(100 + i, "ZORK", f"b{i}"), ())
    ]
    assert fired == []
    assert [ts for ts, _, _ in detector.recent["ZORK"]] == [later + i for i in range(10)]
    fired = [
        s
        for i in range(10)
        for s in detector.observe(later + 10 + i, cashtag_post(200 + i, "ZORK", f"c{i}"), ())
    ]
    assert len(fired) == 1 and fired[0].evidence["mentions"] == 20
    assert fired[0].evidence["example_uids"] == ["test:207", "test:208", "test:209"]
