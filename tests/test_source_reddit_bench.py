"""A small-N smoke run of the reddit benchmark command (the 1M-item run is a command, not a test)."""

from __future__ import annotations

import io

import pytest

from harvester.sources.reddit_bench import run_bench

pytestmark = [
    pytest.mark.filterwarnings("ignore:BasicAuth is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:The 'auth' parameter is deprecated:DeprecationWarning"),
]


async def test_bench_reports_rss_every_n_items() -> None:
    out = io.StringIO()
    rows = await run_bench(600, every=200, inproc=True, out=out)
    assert [row.items for row in rows] == [200, 400, 600]
    assert all(row.rss_mb > 0 for row in rows)
    assert rows[-1].requests >= 6  # 600 items at most 100 per page, two streams
    text = out.getvalue()
    assert text.count("rss") == 3
    assert "RSS growth after the first 200 items" in text and "source state connected" in text
