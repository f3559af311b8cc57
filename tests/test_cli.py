"""The command line: replay backtests, version, help, the benchmark, and a replay source in the daemon."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from harvester.app import App
from harvester.bench import run_bench
from harvester.config.loader import load_config

START = datetime(2026, 2, 1, 9, 0, tzinfo=UTC)
SPIKE_AT = START + timedelta(minutes=10)

CONFIG = """
state_dir: {state}
engine:
  volume_spike:
    {{bucket: 10s, window_buckets: 3, warmup_buckets: 6, min_count: 10, threshold: 5, cooldown: 5m}}
  # The burst below is one sentence from many accounts, which is also a campaign, a sentiment drop
  # and a crisis: these tests follow the volume spike alone through the commands.
  sentiment: {{enabled: false}}
  campaign: {{enabled: false}}
  crisis: {{enabled: false}}
sources:
  - type: replay
    name: history
    path: {path}
rules:
  - name: acme
    keywords: [acme air]
alerts:
  sinks:
    - type: log
"""


def write_history(path: Path) -> None:
    """Ten quiet minutes (one Acme post every 5 s, chatter between), then a one-minute burst, and
    one malformed line."""
    lines = []
    n = 0
    for second in range(0, 660):
        at = START + timedelta(seconds=second)
        burst = at >= SPIKE_AT
        if second % 5 == 0 or burst:
            for _ in range(8 if burst else 1):
                n += 1
                text = "acme air cancelled my flight, worst service" if burst else "flying acme air today"
                lines.append({"id": n, "text": text, "created_at": at.isoformat(), "author": f"u{n % 97}"})
        n += 1
        lines.append({"id": n, "text": "nice weather", "created_at": at.timestamp(), "author": "x"})
    rows = [json.dumps(line) for line in lines]
    rows.insert(100, "{not json")
    path.write_text("\n".join(rows) + "\n")


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harvester", *args], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
def history(tmp_path: Path) -> tuple[Path, Path]:
    data = tmp_path / "history.jsonl"
    write_history(data)
    config = tmp_path / "h.yaml"
    config.write_text(CONFIG.format(state=tmp_path / "state", path=data))
    return data, config


def test_replay_backtest_prints_each_signal_in_event_time(history: tuple[Path, Path]) -> None:
    data, config = history
    done = run_cli("replay", str(data), "--config", str(config), "--json")
    assert done.returncode == 0, done.stderr
    signals = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(signals) == 1
    first = signals[0]
    assert first["rule"] == "acme" and first["kind"] == "volume_spike"
    delay = (datetime.fromisoformat(first["at"]) - SPIKE_AT).total_seconds()
    assert 0 <= delay <= 15
    assert "1 malformed" in done.stderr and "signals" in done.stderr

    text = run_cli("replay", str(data), "--config", str(config))
    assert text.returncode == 0
    assert text.stdout.count("volume_spike") == 1 and "acme" in text.stdout


def test_replay_rejects_a_bad_speed_and_a_missing_file(history: tuple[Path, Path]) -> None:
    data, config = history
    assert run_cli("replay", str(data), "--config", str(config), "--speed", "fast").returncode == 2
    assert run_cli("replay", str(data) + ".nope", "--config", str(config)).returncode == 66


def write_events(path: Path, *events: dict[str, str]) -> Path:
    path.write_text("".join(json.dumps(event) + "\n" for event in events))
    return path


BURST = {"name": "acme-burst", "onset": SPIKE_AT.isoformat(), "rule": "acme"}
QUIET = {
    "name": "quiet-spell",
    "onset": (START + timedelta(minutes=2)).isoformat(),
    "end": (START + timedelta(minutes=4)).isoformat(),
    "rule": "acme",
}
REPLAYED_DAYS = 659 / 86400  # the first post is at START, the last 659 s later


def test_replay_with_onsets_prints_one_evaluation_object(history: tuple[Path, Path], tmp_path: Path) -> None:
    data, config = history
    events = write_events(tmp_path / "events.jsonl", BURST, QUIET)
    done = run_cli("replay", str(data), "--config", str(config), "--onsets", str(events), "--json")
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.splitlines()
    document = json.loads(line)
    burst, quiet = document["events"]
    assert burst["name"] == "acme-burst" and burst["onset"] == SPIKE_AT.isoformat()
    assert 0 <= burst["delay_s"] <= 15
    assert burst["first_signal"] == (SPIKE_AT + timedelta(seconds=burst["delay_s"])).isoformat()
    assert quiet["first_signal"] is None and quiet["delay_s"] is None
    assert document["false_alarms"] == 0 and document["false_alarms_per_day"] == 0
    assert document["replayed_days"] == pytest.approx(REPLAYED_DAYS, rel=1e-3)
    assert "baseline" not in document

    # Unlabelled, the same burst is a false alarm, counted per day of replayed event time.
    unlabelled = write_events(tmp_path / "quiet.jsonl", QUIET)
    done = run_cli("replay", str(data), "--config", str(config), "--onsets", str(unlabelled), "--json")
    document = json.loads(done.stdout)
    assert document["false_alarms"] == 1
    assert document["false_alarms_per_day"] == pytest.approx(1 / REPLAYED_DAYS, rel=1e-3)

    text = run_cli("replay", str(data), "--config", str(config), "--onsets", str(events))
    assert text.returncode == 0
    rows = text.stdout.splitlines()
    assert rows[0].split() == ["event", "onset", "rule", "first", "signal", "delay"]
    assert rows[1].startswith("acme-burst") and "acme/volume_spike" in rows[1]
    assert rows[2].startswith("quiet-spell") and rows[2].endswith("missed")
    assert "detected       1 of 2" in text.stdout and "false alarms   0 (0.0/day)" in text.stdout


def test_replay_compare_runs_the_peak_baseline_beside_the_engine(
    history: tuple[Path, Path], tmp_path: Path
) -> None:
    data, config = history
    events = write_events(tmp_path / "events.jsonl", BURST, QUIET)
    args = ("replay", str(data), "--config", str(config), "--onsets", str(events), "--compare")
    done = run_cli(*args, "--json")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    ours, theirs = document["events"][0], document["baseline"]["events"][0]
    assert ours["signal_kind"] == "volume_spike"  # the baseline's signals stay out of harvester's own
    assert theirs["signal_kind"] == "peak_baseline" and 0 <= theirs["delay_s"] <= 15
    baseline = document["baseline"]
    assert {"events", "false_alarms", "false_alarms_per_day", "replayed_days"} <= set(baseline)
    assert baseline["events"][1]["first_signal"] is None and baseline["false_alarms"] == 0
    assert baseline["replayed_days"] == document["replayed_days"]

    text = run_cli(*args, "--baseline-sigma", "2.5")
    assert text.returncode == 0, text.stderr
    header = text.stdout.splitlines()[0]
    assert "harvester" in header and "mean+2.5sigma peak" in header
    assert any(line.startswith("false alarms") for line in text.stdout.splitlines())


def test_replay_onsets_errors(history: tuple[Path, Path], tmp_path: Path) -> None:
    data, config = history
    bad = tmp_path / "events.csv"
    bad.write_text("name,onset\nburst,not a time\n")
    done = run_cli("replay", str(data), "--config", str(config), "--onsets", str(bad))
    assert done.returncode == 65 and done.stdout == ""
    assert done.stderr.strip() == (
        "replay: events.csv line 2: onset must be an ISO 8601 time such as 2026-03-01T12:00:00Z, "
        "got 'not a time'"
    )
    assert (
        run_cli("replay", str(data), "--config", str(config), "--onsets", str(bad) + ".nope").returncode == 66
    )
    no_events = run_cli("replay", str(data), "--config", str(config), "--compare")
    assert no_events.returncode == 2 and "--compare needs --onsets" in no_events.stderr
    bad_window = run_cli(
        "replay", str(data), "--config", str(config), "--onsets", str(bad), "--early", "soon"
    )
    assert bad_window.returncode == 2


def test_version_and_help() -> None:
    assert run_cli("version").stdout.startswith("harvester ")
    for command in ("run", "check-config", "replay", "bench"):
        done = run_cli(command, "--help")
        assert done.returncode == 0 and "usage: harvester " + command in done.stdout


async def test_daemon_with_a_replay_source_runs_in_event_time(history: tuple[Path, Path]) -> None:
    _, config = history
    loaded = load_config(config, env={})
    app = App(loaded, exit_when_sources_finish=True)
    await app.run()
    assert app.processor is not None and app.processor.event_clock is not None
    assert app.router is not None and app.router.signals == 1
    db = loaded.config.db_path
    with sqlite3.connect(db) as conn:
        (posts,) = conn.execute("SELECT count(*) FROM posts").fetchone()
        (signal_at,) = conn.execute("SELECT at FROM signals").fetchone()
        (cursor,) = conn.execute("SELECT cursor FROM cursors WHERE source = 'history'").fetchone()
    assert posts == sum(1 for line in (history[0]).read_text().splitlines() if line.startswith('{"id"'))
    assert int(cursor) == history[0].stat().st_size  # the whole file is covered, malformed line included
    assert 0 <= signal_at - SPIKE_AT.timestamp() <= 15
    assert app.health.sources["history"].malformed == 1

    again = App(loaded, exit_when_sources_finish=True)  # a second run resumes at the end: nothing new
    await again.run()
    assert again.processor is not None and again.processor.processed == 0


def test_bench_prints_the_documented_figures() -> None:
    bench = run_bench(posts=4000, engine_posts=400, rule_posts=1500)
    figures = bench.as_json()
    for key in ("posts_per_s", "vader_only_posts_per_s", "ratio", "p50_ms", "p99_ms", "peak_rss_mb"):
        assert isinstance(figures[key], float | int) and figures[key] > 0, key
    assert figures["posts"] == figures["stored"] == 4000
    assert figures["p99_ms"] >= figures["p50_ms"]
    assert figures["engine_posts"] == 400
    engine = figures["engine_rules"]
    assert list(engine) == ["1", "100", "1000"]
    for n, rules in engine.items():
        assert rules["posts_per_s"] > 0 and rules["vader_posts_per_s"] > 0 and rules["ratio"] > 0, n
        expected = rules["posts_per_s"] / rules["vader_posts_per_s"]  # timed alternately, same chunks
        assert rules["ratio"] == pytest.approx(expected, rel=0.01, abs=0.002), n
    assert engine["1"]["keywords"] == 0 and engine["1"]["rules_per_post"] == 1
    assert engine["1000"]["keywords"] >= 9000 and engine["1000"]["cashtags"] >= 1000
    daemon = figures["pipeline_rules"]
    assert list(daemon) == ["1", "100", "1000"]
    for n, run in daemon.items():
        assert run["posts"] == 1500 and run["posts_per_s"] > 0 and run["vader_posts_per_s"] > 0, n
        assert run["ratio"] == pytest.approx(run["posts_per_s"] / run["vader_posts_per_s"], abs=0.002)
    text = bench.as_text()
    assert "400 consecutive posts of the 4,000" in text and "1000 rules" in text and "ratio" in text
    assert "daemon by rule set" in text


def test_bench_rules_are_realistic_about_what_matches() -> None:
    from statistics import median

    from harvester.bench_rules import generated_rules, stream_vocabulary
    from harvester.config.schema import EngineConfig
    from harvester.engine import Engine
    from harvester.sources.synthetic_text import StreamGenerator

    origin = START.timestamp()
    stream = StreamGenerator(seed=3, source="bench", rate=1000, origin=origin)
    posts = []
    for seq in range(1, 1501):
        at = START + timedelta(seconds=seq / 1000)
        posts.append(stream.post(seq, at.timestamp(), at, at))
    texts = [post.text for post in posts]

    rules = generated_rules(1000, texts)
    assert len(rules) == 1000 and len({rule.name for rule in rules}) == 1000
    assert rules[0].match_all and generated_rules(100, texts) == rules[:100]
    keywords = [keyword for rule in rules for keyword in rule.keywords]
    assert 9000 <= len(keywords) <= 11000 and sum(len(rule.cashtags) for rule in rules) >= 1000
    vocabulary = set(stream_vocabulary(texts))
    from_stream = [keyword for keyword in keywords if keyword in vocabulary]
    assert 300 <= len(from_stream) <= 2000  # some keywords really occur; most name other things

    engine = Engine(rules, EngineConfig())
    per_post = [len(engine.match(post)) - 1 for post in posts[:600]]  # not counting all-traffic
    assert 1 <= median(per_post) <= 6  # a handful of rules per post...
    assert max(per_post) < 100  # ...and never anything like all of them
    assert sum(1 for n in per_post if n > 0) > len(per_post) / 2
