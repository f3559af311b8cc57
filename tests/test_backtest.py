"""Backtesting against labelled events: the events file, the onset evaluation, and the peak baseline."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from harvester.backtest import run_backtest
from harvester.config.schema import Config, EngineConfig, RuleConfig, VolumeSpikeConfig
from harvester.engine.peak_baseline import KIND as PEAK_KIND
from harvester.engine.peak_baseline import PeakBaseline, PeakDetector
from harvester.evaluate import evaluate, format_comparison, format_delay, format_report
from harvester.models import Severity, Signal
from harvester.onsets import EventsFileError, LabelledEvent, read_events

T0 = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
HOUR = 3600.0


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def signal(rule: str, minutes: float, kind: str = "volume_spike") -> Signal:
    when = at(minutes)
    return Signal(
        id=Signal.make_id(rule, kind, when),
        rule=rule,
        kind=kind,
        severity=Severity.MEDIUM,
        at=when,
        window_start=when - timedelta(minutes=5),
        window_end=when,
        observed=50.0,
        baseline=5.0,
        score=9.0,
        summary="test",
    )


def event(name: str, onset: float, rule: str | None = "acme", end: float | None = None) -> LabelledEvent:
    return LabelledEvent(
        name=name, onset=at(onset), end=at(end if end is not None else onset + 60), rule=rule
    )


# --------------------------------------------------------------------------------------------------
# Evaluation


def test_delay_is_from_onset_to_the_first_signal_of_the_events_rule() -> None:
    signals = [signal("acme", 102), signal("acme", 101.5), signal("acme", 130)]  # not in time order
    result = evaluate(signals, [event("outage", 100)], replayed_seconds=86400)
    (outcome,) = result.outcomes
    assert outcome.first_signal is not None and outcome.first_signal.at == at(101.5)
    assert outcome.delay_s == 90.0
    assert result.false_alarms == () and result.false_alarms_per_day == 0.0


def test_an_event_without_a_signal_in_its_window_is_missed() -> None:
    result = evaluate([signal("acme", 10)], [event("outage", 100)], replayed_seconds=86400)
    (outcome,) = result.outcomes
    assert outcome.first_signal is None and outcome.delay_s is None
    assert result.detected == 0 and len(result.false_alarms) == 1
    assert result.as_json()["events"][0]["first_signal"] is None


def test_a_signal_shortly_before_the_onset_is_early_detection_with_a_negative_delay() -> None:
    early = evaluate([signal("acme", 95)], [event("outage", 100)], replayed_seconds=86400, early=900)
    assert early.outcomes[0].delay_s == -300.0 and early.false_alarms == ()

    too_early = evaluate([signal("acme", 80)], [event("outage", 100)], replayed_seconds=86400, early=900)
    assert too_early.outcomes[0].first_signal is None
    assert [s.at for s in too_early.false_alarms] == [at(80)]

    no_margin = evaluate([signal("acme", 99)], [event("outage", 100)], replayed_seconds=86400, early=0)
    assert no_margin.outcomes[0].first_signal is None and len(no_margin.false_alarms) == 1


def test_only_the_events_rule_detects_it_but_any_signal_in_a_window_is_not_a_false_alarm() -> None:
    signals = [signal("globex", 101), signal("acme", 105)]
    result = evaluate(signals, [event("outage", 100, rule="acme")], replayed_seconds=86400)
    assert result.outcomes[0].delay_s == 300.0  # the globex signal at +60 s does not count for acme
    assert result.false_alarms == ()  # ...nor is it a false alarm: it is inside an event window

    anyone = evaluate(signals, [event("outage", 100, rule=None)], replayed_seconds=86400)
    first = anyone.outcomes[0].first_signal
    assert first is not None and first.rule == "globex" and anyone.outcomes[0].delay_s == 60.0


def test_the_window_ends_at_the_events_end_inclusive() -> None:
    events = [event("outage", 100, end=110)]
    on_the_end = evaluate([signal("acme", 110)], events, replayed_seconds=86400)
    assert on_the_end.outcomes[0].delay_s == 600.0

    after = evaluate([signal("acme", 111)], events, replayed_seconds=86400)
    assert after.outcomes[0].first_signal is None and len(after.false_alarms) == 1


def test_false_alarms_are_counted_per_day_of_replayed_event_time() -> None:
    signals = [signal("acme", 10), signal("globex", 20), signal("acme", 101), signal("hooli", 500)]
    result = evaluate(signals, [event("outage", 100)], replayed_seconds=12 * HOUR)
    assert len(result.false_alarms) == 3
    assert result.replayed_days == 0.5
    assert result.false_alarms_per_day == 6.0
    assert result.false_alarms_by_rule() == {"acme": 1, "globex": 1, "hooli": 1}
    document = result.as_json()
    assert document["false_alarms"] == 3 and document["false_alarms_per_day"] == 6.0
    assert document["replayed_days"] == 0.5
    json.dumps(document)  # serializable as is

    instant = evaluate(signals, [], replayed_seconds=0)
    assert instant.false_alarms_per_day is None  # no time replayed: no finite rate
    assert evaluate([], [], replayed_seconds=0).false_alarms_per_day == 0.0


def test_each_event_takes_its_own_first_signal_and_overlapping_windows_share_one() -> None:
    events = [event("first", 100), event("second", 120, rule="globex"), event("overlap", 101)]
    signals = [signal("acme", 102), signal("globex", 125)]
    result = evaluate(signals, events, replayed_seconds=86400)
    assert [o.delay_s for o in result.outcomes] == [120.0, 300.0, 60.0]
    assert result.detected == 3 and result.median_delay_s == 120.0


def test_the_json_document_has_the_documented_shape() -> None:
    result = evaluate(
        [signal("acme", 101)], [event("outage", 100), event("ghost", 300)], replayed_seconds=86400
    )
    document = result.as_json()
    assert set(document) >= {"events", "false_alarms", "false_alarms_per_day", "replayed_days"}
    assert document["events"][0]["name"] == "outage"
    assert document["events"][0]["onset"] == at(100).isoformat()
    assert document["events"][0]["first_signal"] == at(101).isoformat()
    assert document["events"][0]["delay_s"] == 60.0
    assert document["events"][1]["first_signal"] is None and document["events"][1]["delay_s"] is None


def test_delays_are_short_and_signed_in_text() -> None:
    assert format_delay(42) == "+42s"
    assert format_delay(-190) == "-3m10s"
    assert format_delay(3900) == "+1h05m"
    assert format_delay(0) == "+0s"
    assert format_delay(None) == "missed"


def test_the_text_report_is_an_aligned_table_with_totals() -> None:
    events = [event("outage", 100), event("a-much-longer-name", 300, rule=None)]
    result = evaluate([signal("acme", 101), signal("hooli", 500)], events, replayed_seconds=86400)
    lines = format_report(result).splitlines()
    header, first, second = lines[:3]
    assert header.index("onset") == first.index("2026-") == second.index("2026-")
    assert "+1m00s" in first and second.endswith("missed") and "(any)" in second
    text = "\n".join(lines)
    assert "detected       1 of 2" in text and "1 (1.0/day)" in text and "hooli 1" in text

    baseline = evaluate([signal("acme", 99)], events, replayed_seconds=86400)
    side_by_side = format_comparison(result, baseline, "peak").splitlines()
    assert "harvester" in side_by_side[0] and "peak" in side_by_side[0]
    assert "+1m00s" in side_by_side[1] and "-1m00s" in side_by_side[1]
    assert any(line.startswith("false alarms") and "1 (1.0/day)" in line for line in side_by_side)


# --------------------------------------------------------------------------------------------------
# The events file


def test_events_are_read_from_csv_with_defaults_for_rule_and_end(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text(
        "name,onset,rule,end,notes\n"
        "outage,2026-03-02T01:40:00Z,acme,,from the incident log\n"
        "\n"
        "pump,2026-03-02T05:00:00+01:00,,2026-03-02T04:30:00Z,\n"
    )
    outage, pump = read_events(path, default_window=1800)
    assert outage == LabelledEvent("outage", at(100), at(130), "acme")
    assert pump.rule is None and pump.onset == at(240) and pump.end == at(270)


def test_events_are_read_from_jsonl_also_without_the_extension(tmp_path: Path) -> None:
    lines = [
        {"name": "outage", "onset": "2026-03-02T01:40:00", "rule": "acme"},
        {"name": "pump", "onset": "2026-03-02T04:00:00Z", "end": "2026-03-02T06:00:00Z", "extra": 1},
    ]
    for name in ("events.jsonl", "events.txt"):
        path = tmp_path / name
        path.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
        outage, pump = read_events(path)
        assert outage.onset == at(100) and outage.end == at(160)  # naive is UTC; default window 1 h
        assert pump.rule is None and pump.end == at(360)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("e.csv", "name,rule\nx,acme\n", "e.csv: the CSV header lacks onset (found: name, rule)"),
        ("e.csv", "", "e.csv: the CSV header lacks name, onset (found: nothing)"),
        ("e.csv", "name,onset\n", "e.csv: no events in the file"),
        ("e.csv", "name,onset\nx,yesterday\n", "e.csv line 2: onset must be an ISO 8601 time"),
        ("e.csv", "name,onset\nx,2026-03-02T01:00:00Z,acme\n", "e.csv line 2: expected 2 cells, got 3"),
        ("e.csv", "name,onset\n,2026-03-02T01:00:00Z\n", "e.csv line 2: missing name"),
        (
            "e.csv",
            "name,onset,end\nx,2026-03-02T01:00:00Z,2026-03-02T00:00:00Z\n",
            "e.csv line 2: end 2026-03-02T00:00:00+00:00 is not after onset",
        ),
        (
            "e.jsonl",
            '{"name": "x", "onset": "2026-03-02T01:00:00Z"}\n{oops\n',
            "e.jsonl line 2: invalid JSON",
        ),
        ("e.jsonl", '["x", "2026-03-02T01:00:00Z"]\n', "e.jsonl line 1: expected a JSON object"),
        ("e.jsonl", '{"name": "x"}\n', "e.jsonl line 1: missing onset"),
        (
            "e.jsonl",
            '{"name": "x", "onset": 1772409600}\n',
            "e.jsonl line 1: onset must be text, got 1772409600",
        ),
        ("e.jsonl", '{"name": "x", "onset": "2026-03-02", "rule": ["a"]}\n', "rule must be text"),
    ],
)
def test_a_malformed_events_file_is_one_clear_error(
    tmp_path: Path, name: str, content: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(EventsFileError) as caught:
        read_events(path)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_an_events_file_that_is_not_utf8_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_bytes(b"name,onset\n\xff,2026-03-02T01:00:00Z\n")
    with pytest.raises(EventsFileError, match="not UTF-8"):
        read_events(path)


# --------------------------------------------------------------------------------------------------
# The peak baseline (mean + 3 sigma, as in Huginn)

NOISE = [4, 6, 5, 5, 3, 7, 5, 4, 6, 5]  # mean 5, sigma 1.1: mean + 3 sigma = 8.3


def feed(detector: PeakDetector, counts: list[int], start: int = 0) -> list[tuple[int, int]]:
    """Feed bucket `start + i` with `counts[i]` posts, one at a time; return (bucket, nth post) alarms."""
    alarms = []
    for i, count in enumerate(counts):
        for n in range(count):
            ts = (start + i) * detector.bucket + n * detector.bucket / (count + 1)
            if detector.add(ts) is not None:
                alarms.append((start + i, n + 1))
    return alarms


def detector(**kwargs: float) -> PeakDetector:
    settings: dict[str, float] = {"bucket": 60, "window_buckets": 20, "warmup_buckets": 10, "cooldown": 0}
    settings.update(kwargs)
    return PeakDetector(
        "acme",
        bucket=settings["bucket"],
        window_buckets=int(settings["window_buckets"]),
        warmup_buckets=int(settings["warmup_buckets"]),
        cooldown=settings["cooldown"],
    )


def test_the_peak_baseline_fires_as_the_count_crosses_mean_plus_3_sigma() -> None:
    peak = detector()
    assert feed(peak, NOISE * 2) == []
    peak.advance(20 * 60)  # close bucket 19: the window is now exactly NOISE twice
    assert peak.threshold == pytest.approx(5 + 3 * 1.095, abs=0.01)
    assert feed(peak, [30], start=20) == [(20, 9)]  # on the 9th post: the first count above 8.3


def test_the_peak_baseline_signal_carries_its_evidence() -> None:
    peak = detector()
    feed(peak, NOISE * 2)
    for n in range(8):
        assert peak.add(20 * 60 + n) is None
    fired = peak.add(20 * 60 + 8)
    assert fired is not None
    assert fired.kind == PEAK_KIND and fired.rule == "acme" and fired.observed == 9.0
    assert fired.baseline == pytest.approx(5.0) and fired.at == datetime.fromtimestamp(20 * 60 + 8, UTC)
    assert fired.window_end == datetime.fromtimestamp(21 * 60, UTC)
    assert fired.evidence["window_buckets"] == 20


def test_the_peak_baseline_stays_quiet_on_flat_noise() -> None:
    peak = detector(window_buckets=60)
    assert feed(peak, NOISE * 30) == []


def test_past_spikes_stay_in_the_window_and_hide_the_next_one() -> None:
    after_a_spike = detector()
    feed(after_a_spike, NOISE * 2)
    assert feed(after_a_spike, [30], start=20) == [(20, 9)]
    feed(after_a_spike, NOISE[:5], start=21)
    # The first spike now makes up the window's mean and sigma: 20 posts, far above the noise, pass.
    assert after_a_spike.threshold is not None and after_a_spike.threshold > 20
    assert feed(after_a_spike, [20], start=26) == []

    without = detector()  # the same history without the first spike sees the second one
    feed(without, NOISE * 2 + [5] + NOISE[:5])
    assert [bucket for bucket, _ in feed(without, [20], start=26)] == [26]

    # Once the first spike has left the window (20 buckets), the same count alarms again.
    assert feed(after_a_spike, NOISE * 2, start=27) == []
    assert feed(after_a_spike, [20], start=47) == [(47, 9)]


def test_the_peak_baseline_warms_up_and_then_keeps_its_cooldown() -> None:
    peak = detector(cooldown=600)
    assert feed(peak, [5, 5, 5, 30]) == []  # three buckets are not enough to judge
    feed(peak, NOISE * 2, start=4)
    assert feed(peak, [30], start=24) == [(24, 9)]  # one alarm per bucket, however far it goes
    assert feed(peak, [5, 60], start=25) == []  # 60 s later: still in the 10-minute cooldown
    feed(peak, NOISE, start=27)
    peak.advance(37 * 60)
    assert peak.threshold is not None and peak.threshold < 60  # so 60 above was held back by the cooldown
    assert feed(peak, [200], start=37) == [(37, math.floor(peak.threshold) + 1)]  # after the cooldown


def test_a_silence_closes_empty_buckets_and_a_flat_window_alarms_on_any_excess() -> None:
    peak = detector()
    feed(peak, NOISE * 2)
    peak.advance(10_000 * 60)  # a long gap: the window is all zeros, not 10,000 buckets of work
    assert list(peak.window) == [0] * 20 and peak.threshold == 0.0
    assert peak.add(10_000 * 60 + 1) is not None  # Huginn's rule: sigma 0, any count above the mean


def test_peak_baseline_uses_each_rules_bucket_and_skips_rules_without_volume_alarms() -> None:
    rules = [
        RuleConfig(name="acme", keywords=["acme"]),
        RuleConfig(name="btc", cashtags=["BTC"], volume_spike=VolumeSpikeConfig(bucket=10, cooldown=30)),
        RuleConfig(name="all", match_all=True, volume_spike=VolumeSpikeConfig(enabled=False)),
    ]
    baseline = PeakBaseline.for_rules(rules, VolumeSpikeConfig(bucket=60, warmup_buckets=7), window=HOUR)
    assert set(baseline.detectors) == {"acme", "btc"}
    acme, btc = baseline.detectors["acme"], baseline.detectors["btc"]
    assert (acme.bucket, acme.window.maxlen, acme.warmup_buckets, acme.cooldown) == (60, 60, 7, 900)
    assert (btc.bucket, btc.window.maxlen, btc.warmup_buckets, btc.cooldown) == (10, 360, 10, 30)
    assert PeakBaseline.for_rules(rules, VolumeSpikeConfig(), cooldown=5).detectors["acme"].cooldown == 5
    assert baseline.observe(["acme", "all", "unknown"], 0.0) == []
    assert acme.count == 1 and btc.count == 0


def test_peak_detector_rejects_settings_that_cannot_work() -> None:
    with pytest.raises(ValueError, match="window_buckets"):
        PeakDetector("acme", bucket=60, window_buckets=1)


# --------------------------------------------------------------------------------------------------
# The backtest feeds both detectors the same posts


def test_backtest_keeps_the_baselines_signals_apart(tmp_path: Path) -> None:
    start = datetime(2026, 2, 1, 9, 0, tzinfo=UTC)
    lines = []
    for second in range(0, 900):
        for k in range(6 if second >= 840 else (1 if second % 5 == 0 else 0)):
            lines.append(
                {"id": f"{second}-{k}", "text": "acme air again", "created_at": second + start.timestamp()}
            )
        lines.append(
            {"id": f"{second}-x", "text": "nothing to see", "created_at": second + start.timestamp()}
        )
    path = tmp_path / "posts.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    spike = VolumeSpikeConfig(bucket=10, window_buckets=3, warmup_buckets=6, min_count=10, threshold=5)
    config = Config(
        rules=[RuleConfig(name="acme", keywords=["acme air"])],
        engine=EngineConfig(clock="event", volume_spike=spike),
    )
    baseline = PeakBaseline.for_rules(config.rules, spike)
    seen: list[Signal] = []
    result = run_backtest(path, config, on_signal=seen.append, baseline=baseline)
    assert result.baseline_signals and all(s.kind == PEAK_KIND for s in result.baseline_signals)
    assert all(s.kind != PEAK_KIND for s in result.signals) and seen == result.signals
    assert result.baseline_signals[0].at >= start + timedelta(seconds=840)
    assert baseline.detectors["acme"].count > 0  # fed with the posts the engine matched
    plain = run_backtest(path, config)
    assert plain.baseline_signals == [] and [s.id for s in plain.signals] == [s.id for s in result.signals]
