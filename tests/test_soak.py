"""The soak benchmark command runs the real pipeline and reports memory (figures, not assertions on them)."""

from __future__ import annotations

import os
from pathlib import Path

from harvester.soak import Sample, SoakRun, children_rss_bytes, rss_bytes, run_soak


def test_rss_figures_come_from_proc() -> None:
    assert rss_bytes() > 10 * 2**20  # this very interpreter, with harvester imported
    assert rss_bytes(2**22 + 12345) == 0  # no such process
    assert children_rss_bytes() >= 0
    assert os.path.exists("/proc/self/statm")


def test_summary_takes_growth_from_the_10_percent_sample() -> None:
    run = SoakRun(posts=1000, interval=100)
    run.samples = [Sample(100 * i, float(i), (100 + i) * 2**20, 5 * 2**20) for i in range(1, 11)]
    lines = run.summary()
    assert "RSS at 10% (100)  101.0 MB" in lines[1] and "at the end 110.0 MB" in lines[1]
    assert "daemon +9.0 MB" in lines[2]


def test_a_small_soak_run(tmp_path: Path) -> None:
    run = run_soak(3000, 1000, "all", 3, tmp_path, rate=500)
    assert [s.posts >= 1000 * (i + 1) for i, s in enumerate(run.samples)] == [True] * len(run.samples)
    assert run.samples and run.samples[-1].posts == 3000
    assert all(s.rss > 0 for s in run.samples)
    assert (tmp_path / "harvester.db").exists()


def test_summary_shows_the_heap_and_the_entries_held_at_10_percent_and_at_the_end() -> None:
    run = SoakRun(posts=1000, interval=100)
    run.samples = [
        Sample(100 * i, float(i), 100 * 2**20, 0, heap=(50 + i) * 2**20, structures={"dedup": 10 * i})
        for i in range(1, 11)
    ]
    lines = run.summary()
    assert "Python heap           51.0 MB at 10%, 60.0 MB at the end (+9.0 MB)" in lines
    assert lines[-1].split() == ["dedup", "10", "->", "100"]
    plain = SoakRun(posts=1000, interval=100)
    plain.samples = [Sample(100 * i, float(i), 100 * 2**20, 0) for i in range(1, 11)]
    assert not [line for line in plain.summary() if "heap" in line or "entries" in line]


def test_a_small_soak_run_with_the_heap_traced(tmp_path: Path) -> None:
    run = run_soak(2000, 1000, "none", 5, tmp_path, rate=500, heap=True)
    assert len(run.samples) == 2
    assert all(s.heap is not None and s.heap > 0 for s in run.samples)
    last = run.samples[-1].structures
    assert 0 < last["dedup"] <= 2000 and last["viral_followed"] >= 0 and last["clusters"] > 0
    assert any("Python heap" in line for line in run.summary())
