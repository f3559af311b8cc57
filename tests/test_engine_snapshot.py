"""The engine's snapshot is written part by part, as the very text `json.dumps` of the whole state
gives, and a new engine restores it."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from harvester.bench import bench_rules
from harvester.config.schema import EngineConfig
from harvester.engine import Engine
from harvester.engine.engine import SNAPSHOT_VERSION
from harvester.sources.synthetic_text import ScenarioPlan, StreamGenerator
from tests.helpers import T0


def _whole(engine: Engine) -> str:
    """The snapshot as one dict, encoded at once (how it was written before)."""
    state: dict[str, Any] = {
        "version": SNAPSHOT_VERSION,
        "rules": {
            name: {kind: detector.snapshot() for kind, detector in engine.detectors(name).items()}
            for name in engine.rules
        },
        "stream": {detector.kind: detector.snapshot() for detector in engine.stream},
    }
    if engine.near_duplicates is not None:
        state["near_duplicates"] = engine.near_duplicates.snapshot()
    return json.dumps(state, separators=(",", ":"))


def test_a_busy_engine_writes_the_same_text_in_parts_and_restores_it() -> None:
    plan = ScenarioPlan(first_after=20, every=90, duration=60, kinds=("campaign", "brand_crisis", "viral"))
    start = T0.timestamp()
    gen = StreamGenerator(seed=4, source="synthetic", rate=50.0, origin=start, plan=plan)
    engine = Engine(bench_rules(), EngineConfig())
    ts, kinds = start, set()
    for seq in range(1, 10_001):
        when = T0 + timedelta(seconds=ts - start)
        kinds.update(signal.kind for signal in engine.process(gen.post(seq, ts, when, when), ts).signals)
        ts += 1.0 / gen.rate_at(ts)
    assert "campaign" in kinds  # views and fired campaigns to write, besides every rule's windows
    text = engine.snapshot()
    assert text == _whole(engine)
    again = Engine(bench_rules(), EngineConfig())
    assert again.restore(text) == len(engine.rules)


def test_an_engine_with_no_campaign_rules_writes_no_index() -> None:
    config = EngineConfig.model_validate({"campaign": {"enabled": False}})
    engine = Engine(bench_rules()[:3], config)
    assert engine.near_duplicates is None
    assert engine.snapshot() == _whole(engine)
    assert "near_duplicates" not in json.loads(engine.snapshot())
