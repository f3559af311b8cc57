"""The engine wiring detectors together: per-rule detectors from settings, stream detectors over
every post, ticks, reloads that keep state, and snapshots."""

from __future__ import annotations

from datetime import timedelta

from harvester.config.detectors import NewCashtagConfig, SilenceConfig, VolumeSpikeConfig
from harvester.config.schema import EngineConfig, RuleConfig
from harvester.engine import Engine
from harvester.engine.presets import resolve_settings
from tests.helpers import T0, make_post

START = T0.timestamp()
QUIET = SilenceConfig(min_gap=120, gap_factor=10)


def engine(*rules: RuleConfig, **config: object) -> Engine:
    settings = {"silence": QUIET, "source_silence": QUIET, **config}
    return Engine(list(rules), EngineConfig(**settings))  # type: ignore[arg-type]


def feed(e: Engine, start: float, seconds: int, text: str, every: int = 2, first: int = 0) -> list[str]:
    kinds = []
    for s in range(0, seconds, every):
        post = make_post(first + s, text, at=T0 + timedelta(seconds=start - START + s))
        kinds += [sig.kind for sig in e.process(post, start + s).signals]
        kinds += [sig.kind for sig in e.tick(start + s + 0.5)]
    return kinds


def test_ticks_surface_a_rule_going_quiet_and_a_source_going_quiet() -> None:
    e = engine(RuleConfig(name="acme", keywords=["acme"]))
    assert feed(e, START, 1800, "acme rocks") == []
    quiet = [sig for s in range(1800, 2400) for sig in e.tick(START + s)]
    assert sorted(sig.rule for sig in quiet) == ["acme", "source:test"]
    assert {sig.kind for sig in quiet} == {"silence"}


def test_stream_detectors_see_posts_no_rule_matched() -> None:
    e = engine(
        RuleConfig(name="acme", keywords=["acme"]),
        new_cashtag=NewCashtagConfig(warmup=0, min_mentions=5, min_authors=5),
    )
    fired = []
    for i in range(10):
        post = make_post(i, "buying $ZORK now", author=f"a{i}")
        fired += e.process(post, START + i).signals
    assert [sig.rule for sig in fired] == ["cashtag:$ZORK"]


def test_reload_keeps_the_state_of_unchanged_rules_and_resets_changed_ones() -> None:
    acme = RuleConfig(name="acme", keywords=["acme"])
    globex = RuleConfig(name="globex", keywords=["globex"])
    e = engine(acme, globex)
    feed(e, START, 600, "acme and globex")
    before = e.detectors("acme")["volume_spike"]
    e.load_rules([acme, globex.model_copy(update={"volume_spike": VolumeSpikeConfig(threshold=6.0)})])
    assert e.detectors("acme")["volume_spike"] is before
    assert e.detectors("globex")["volume_spike"] is not before
    assert e.detectors("globex")["volume_spike"].closed == 0  # type: ignore[attr-defined]
    e.load_rules([acme])
    assert e.detectors("globex") == {}


def test_snapshot_round_trip_restores_every_rule_and_stream_detector() -> None:
    rules = [RuleConfig(name="acme", keywords=["acme"])]
    e = engine(*rules)
    feed(e, START, 900, "acme news")
    other = engine(*rules)
    assert other.restore(e.snapshot()) == 1
    assert other.detectors("acme")["volume_spike"].mean == e.detectors("acme")["volume_spike"].mean  # type: ignore[attr-defined]
    assert other.detectors("acme")["silence"].watch.rate.n == e.detectors("acme")["silence"].watch.rate.n  # type: ignore[attr-defined]
    assert other.restore('{"version": 1}') == 0  # an old snapshot is ignored, not misread


def test_rule_overrides_merge_over_engine_defaults() -> None:
    config = EngineConfig(volume_spike=VolumeSpikeConfig(threshold=4.5, bucket=30))
    rule = RuleConfig(name="a", keywords=["a"], volume_spike=VolumeSpikeConfig(bucket=10))
    settings = resolve_settings("volume_spike", config, rule)
    assert settings == VolumeSpikeConfig(threshold=4.5, bucket=10)
    disabled = RuleConfig(name="b", keywords=["b"], volume_spike=VolumeSpikeConfig(enabled=False))
    assert resolve_settings("volume_spike", config, disabled) is None


def test_sensitivity_preset_moves_the_main_knob_unless_the_rule_set_it() -> None:
    config = EngineConfig()
    high = RuleConfig(name="a", keywords=["a"], sensitivity="high")
    assert resolve_settings("volume_spike", config, high).threshold == 3.0  # type: ignore[union-attr]
    assert resolve_settings("campaign", config, high).min_accounts == 8  # type: ignore[union-attr]
    pinned = RuleConfig(
        name="b", keywords=["b"], sensitivity="low", volume_spike=VolumeSpikeConfig(threshold=3.5)
    )
    assert resolve_settings("volume_spike", config, pinned).threshold == 3.5  # type: ignore[union-attr]
    assert resolve_settings("sentiment", config, pinned).threshold == 5.0  # type: ignore[union-attr]
