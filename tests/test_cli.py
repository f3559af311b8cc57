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
    figures = run_bench(posts=4000).as_json()
    for key in ("posts_per_s", "vader_only_posts_per_s", "ratio", "p50_ms", "p99_ms", "peak_rss_mb"):
        assert isinstance(figures[key], float | int) and figures[key] > 0, key
    assert figures["posts"] == figures["stored"] == 4000
    assert figures["p99_ms"] >= figures["p50_ms"]
