"""The campaign detector's and the near-duplicate index's `snapshot_json`: the very text
`json.dumps(snapshot(), separators=(",", ":"))` gives (the engine's way of writing a snapshot), built
a row or a batch of rows at a time, and it restores.

Time is the `ts` each observation carries; nothing reads a clock.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from harvester.bench import bench_rules
from harvester.config.detectors import CampaignConfig
from harvester.config.schema import EngineConfig
from harvester.engine import Engine
from harvester.engine.detectors import near_duplicates as near_duplicates_module
from harvester.engine.detectors.base import Observation
from harvester.engine.detectors.campaign import CampaignDetector
from harvester.models import Post
from harvester.sources.synthetic_text import ScenarioPlan, StreamGenerator
from tests.helpers import T0, make_post

START = T0.timestamp()


def dumped(holder: Any) -> str:
    return json.dumps(holder.snapshot(), separators=(",", ":"))


def test_empty_state() -> None:
    det = CampaignDetector("acme", CampaignConfig())
    assert det.snapshot_json() == dumped(det)
    assert det.own_index is not None and det.own_index.snapshot_json() == dumped(det.own_index)


def test_a_busy_stream_with_campaigns_gives_the_same_text(monkeypatch: Any) -> None:
    # Small batches, so that the index's text is joined from several of them.
    monkeypatch.setattr(near_duplicates_module, "_ROWS_AT_ONCE", 7)
    plan = ScenarioPlan(first_after=20, every=90, duration=60, kinds=("campaign", "brand_crisis"))
    gen = StreamGenerator(seed=4, source="synthetic", rate=50.0, origin=START, plan=plan)
    engine = Engine([rule for rule in bench_rules() if not rule.match_all], EngineConfig())
    ts = START
    for seq in range(1, 12_001):
        when = T0 + timedelta(seconds=ts - START)
        engine.process(gen.post(seq, ts, when, when), ts)
        ts += 1.0 / gen.rate_at(ts)
    engine.flush()
    index = engine.near_duplicates
    assert index is not None and len(index.snapshot()["clusters"]) > 20
    assert index.snapshot_json() == dumped(index)
    detectors = [
        d for name in engine.rules for kind, d in engine.detectors(name).items() if kind == "campaign"
    ]
    assert any(isinstance(d, CampaignDetector) and d.campaigns for d in detectors)  # some fired
    for det in detectors:
        assert isinstance(det, CampaignDetector)
        assert det.snapshot_json() == dumped(det)
        restored = CampaignDetector(det.rule, det.config)
        restored.restore(json.loads(det.snapshot_json()))
        assert restored.snapshot_json() == det.snapshot_json()


def test_unknown_followers_texts_outside_ascii_and_a_held_gap() -> None:
    det = CampaignDetector("acme", CampaignConfig(min_accounts=3, cooldown=60))
    text = 'Acme Air "hides" the truth — engine failures on the new planes, café naïve ✈️ \\ share it'
    for n in range(8):
        ts = START + n
        author = f"acc\u00e9{n}" if n % 2 else f"a{n}"
        made = make_post(n, text, at=T0 + timedelta(seconds=n), author=author)
        post = Post(**{**{f: getattr(made, f) for f in made.__dataclass_fields__}, "followers": n or None})
        det.observe(Observation(ts, post, 0.0))
    assert det.campaigns and det.snapshot()["quiet_until"] is not None
    assert det.snapshot_json() == dumped(det)
    assert det.own_index is not None and det.own_index.snapshot_json() == dumped(det.own_index)
