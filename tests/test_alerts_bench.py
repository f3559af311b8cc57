"""The alert latency benchmark runs end to end (the figures themselves are not asserted)."""

from __future__ import annotations

from harvester.alerts.bench import measure


async def test_bench_measures_every_signal() -> None:
    figures = await measure(5)
    assert figures["signals"] == 5
    assert 0 < figures["p50_ms"] <= figures["p99_ms"] <= figures["max_ms"]
