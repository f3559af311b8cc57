"""The whole engine (every detector, default settings) on the synthetic source, in event time.

Each injected scenario must be signalled within a minute of its onset by the detectors made for it,
and a day of everyday traffic with its day/night rhythm and noise must raise no volume or sentiment
signal. Time is the posts' own event time, passed in; nothing reads a clock.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from harvester.config.schema import EngineConfig, RuleConfig
from harvester.engine import Engine
from harvester.models import Signal
from harvester.sources.synthetic_text import (
    BRAND_KEYWORDS,
    BRANDS,
    TICKERS,
    ScenarioPlan,
    StreamGenerator,
)
from tests.helpers import T0

START = T0.timestamp()
HOUR = 3600.0
WARM_UP = HOUR  # baselines need an hour of everyday traffic before the first scenario
EVERY = 600.0

# What each scenario must bring, at the latest a minute after its onset.
EXPECTED = {
    "brand_crisis": {"volume_spike", "sentiment_drop", "crisis"},
    "ticker_pump": {"volume_spike", "sentiment_surge"},
    "campaign": {"campaign"},
    "viral": {"viral_post"},
}


def demo_rules(gen: StreamGenerator) -> list[RuleConfig]:
    """A rule per brand and per ticker, as a user would write them, and one following the big
    accounts (whose posts the viral scenario makes go round)."""
    rules = [RuleConfig(name=f"brand-{i}", keywords=[BRAND_KEYWORDS[b]]) for i, b in enumerate(BRANDS)]
    rules += [RuleConfig(name=f"ticker-{t.lower()}", cashtags=[f"${t}"]) for t in TICKERS]
    rules.append(RuleConfig(name="celebrities", keywords=[a.handle for a in gen.pool.celebrities]))
    return rules


def run(gen: StreamGenerator, engine: Engine, end: float) -> list[Signal]:
    """Feed the stream up to `end`, letting time pass every second as the daemon's tick does."""
    signals: list[Signal] = []
    ts, seq, last_tick = START, 1, START
    while ts < end:
        when = T0 + timedelta(seconds=ts - START)
        signals += engine.process(gen.post(seq, ts, when, when), ts).signals
        if ts - last_tick >= 1.0:
            signals += engine.tick(ts)
            last_tick = ts
        ts += 1.0 / gen.rate_at(ts)
        seq += 1
    return signals


def target_rules(target: str) -> set[str]:
    if target.startswith("@"):
        return {"celebrities"}
    if target.startswith("$"):
        return {f"ticker-{target[1:].lower()}"}
    return {f"brand-{BRANDS.index(target)}"}


@pytest.mark.timeout(300)
def test_every_injected_scenario_is_signalled_within_a_minute() -> None:
    plan = ScenarioPlan(first_after=WARM_UP, every=EVERY, duration=120)
    gen = StreamGenerator(seed=42, source="synthetic", rate=20.0, origin=START, plan=plan)
    engine = Engine(demo_rules(gen), EngineConfig())
    scenarios = [gen.scenario_at(START + WARM_UP + k * EVERY) for k in range(4)]
    signals = run(gen, engine, START + WARM_UP + 3 * EVERY + 180)

    assert [s for s in signals if s.at.timestamp() < START + WARM_UP] == []  # quiet while learning
    for scenario in scenarios:
        assert scenario is not None
        onset = scenario.start.timestamp()
        rules = target_rules(scenario.target)
        early = {s.kind for s in signals if s.rule in rules and onset <= s.at.timestamp() <= onset + 60}
        missing = EXPECTED[scenario.kind] - early
        assert not missing, f"{scenario.kind} on {scenario.target}: no {missing} within 60 s"
    crisis = [s for s in signals if s.kind == "crisis"]
    assert crisis and all(s.severity.value == "critical" for s in crisis)


@pytest.mark.timeout(600)
def test_a_day_of_everyday_traffic_raises_no_volume_or_sentiment_signal() -> None:
    # Two busy rules (every brand, every ticker: about 0.75 posts/s each at this rate), so that the
    # volume and sentiment detectors judge full windows all day long, through night and day.
    gen = StreamGenerator(
        seed=7, source="synthetic", rate=5.0, origin=START, plan=ScenarioPlan(enabled=False)
    )
    rules = [
        RuleConfig(name="brands", keywords=list(BRAND_KEYWORDS.values())),
        RuleConfig(name="tickers", cashtags=[f"${t}" for t in TICKERS]),
    ]
    engine = Engine(rules, EngineConfig())
    signals = run(gen, engine, START + 24 * HOUR)
    noisy = [s for s in signals if s.kind in {"volume_spike", "sentiment_drop", "sentiment_surge"}]
    assert noisy == [], [s.summary for s in noisy]
