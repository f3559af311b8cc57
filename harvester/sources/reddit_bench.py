"""Long-run memory benchmark of the `reddit` source: push N items through the real collector and print RSS.

    python -m harvester.sources.reddit_bench --items 1000000

What runs: the real `RedditSource` and the real asyncpraw, over real HTTP on 127.0.0.1, against the
fake Reddit (`harvester.sources.reddit_fake`) in endless mode started as a child process (so the RSS
printed is the collector's alone; `--inproc` runs the fake in this process instead). Both streams run
(submissions and comments, 100 items per page), and a rule matching about 1% of the items keeps the
engagement tracker full and re-fetching. Time inside the source is a manual clock that the injected
sleep advances, so poll intervals and budget spacing cost no wall time: the figures measure memory
and the collector's own cost, not Reddit's pacing. Emitted posts go through a bounded queue to a
consumer that drops them, like the daemon's inbox.

It prints RSS every `--every` items (default 100,000) and, at the end, the growth since the first
report; the target is under 20 MB. A benchmark prints figures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import random
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from harvester.clock import ManualClock
from harvester.config.schema import RuleConfig
from harvester.health import SourceHealth
from harvester.sources.base import Envelope, SourceContext
from harvester.sources.reddit import RedditConfig, RedditSource
from harvester.sources.reddit_fake import FakeReddit

GROWTH_LIMIT_MB = 20.0


@dataclass(frozen=True, slots=True)
class Row:
    items: int
    rss_mb: float
    seconds: float
    requests: int
    tracked: int


def rss_mb() -> float:
    """Resident set size now (not the peak), from /proc; 0 where /proc is missing."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


async def _start_fake(inproc: bool) -> tuple[str, asyncio.subprocess.Process | None, FakeReddit | None]:
    if inproc:
        fake = FakeReddit(endless=True, log_size=1)
        await fake.start()
        return fake.url, None, fake
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "harvester.sources.reddit_fake", "--endless", "--port", "0",
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 30)
    return f"http://127.0.0.1:{int(line)}", process, None


async def run_bench(
    items: int, *, every: int = 100_000, inproc: bool = False, out: TextIO | None = None
) -> list[Row]:
    out = out or sys.stdout
    url, process, fake = await _start_fake(inproc)
    clock = ManualClock()

    async def sleep(seconds: float) -> None:
        clock.advance(seconds)
        await asyncio.sleep(0)

    inbox: asyncio.Queue[Envelope] = asyncio.Queue(maxsize=10_000)
    counted = 0
    rows: list[Row] = []
    done = asyncio.Event()
    config = RedditConfig.model_validate(
        {
            "client_id": "test-id",
            "client_secret": "test-secret",
            "subreddits": ["bench"],
            "oauth_url": url,
            "reddit_url": url,
            "poll_interval": 1,
            "max_requests_per_minute": 600,
            "engagement": {"interval": 10, "duration": 600, "max_tracked": 1000},
            # Recycle the client every ~2,500 requests of bench time, so a leak per session would show.
            "session_max_age": 250,
        }
    )
    source = RedditSource(config)
    health = SourceHealth(name="reddit", type="reddit")
    ctx = SourceContext(
        name="reddit",
        put=_putter(inbox),
        health=health,
        clock=clock,
        sleep=sleep,
        rng=random.Random(1),
        rules=[RuleConfig(name="sevens", regex=[r"77$"])],
    )
    started = time.perf_counter()

    async def consume() -> None:
        nonlocal counted
        while True:
            envelope = await inbox.get()
            if envelope.cursor is not None and envelope.post is not None:  # stream items, not re-fetches
                counted += 1
                if counted % every == 0 or counted == items:
                    gc.collect()
                    streams = health.extra.get("streams", {})
                    engagement = streams.get("engagement", {}) if isinstance(streams, dict) else {}
                    tracked = engagement.get("tracked", 0)
                    ratelimit = health.extra.get("ratelimit", {})
                    requests = ratelimit.get("requests", 0) if isinstance(ratelimit, dict) else 0
                    row = Row(counted, rss_mb(), time.perf_counter() - started, int(requests), int(tracked))
                    rows.append(row)
                    base = rows[0].rss_mb
                    print(
                        f"items {row.items:>9,}  rss {row.rss_mb:7.1f} MB"
                        f"  growth since first {row.rss_mb - base:+6.1f} MB"
                        f"  {row.seconds:7.1f} s  {row.items / max(row.seconds, 1e-9):8.0f} items/s"
                        f"  requests {row.requests:,}  tracked {row.tracked}",
                        file=out, flush=True,
                    )
                if counted >= items:
                    done.set()

    consumer = asyncio.create_task(consume())
    task = asyncio.create_task(source.run(ctx))
    try:
        waiter = asyncio.create_task(done.wait())
        finished, _ = await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if task in finished:
            task.result()  # a crash: show it
    finally:
        for pending in (task, consumer):
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pending
        if fake is not None:
            await fake.stop()
        if process is not None:
            process.terminate()
            await process.wait()
    if rows:
        growth = rows[-1].rss_mb - rows[0].rss_mb
        peak_growth = max(r.rss_mb for r in rows) - rows[0].rss_mb
        verdict = "OK" if peak_growth < GROWTH_LIMIT_MB else "OVER"
        print(
            f"RSS growth after the first {rows[0].items:,} items: {growth:+.1f} MB at the end, "
            f"{peak_growth:+.1f} MB at most (target < {GROWTH_LIMIT_MB:.0f} MB: {verdict}); "
            f"malformed {health.malformed}, source state {health.state.value}, "
            f"client sessions opened {source.sessions_opened}, re-fetches {_refetches(health)}",
            file=out, flush=True,
        )
    return rows


def _refetches(health: SourceHealth) -> object:
    streams = health.extra.get("streams")
    engagement = streams.get("engagement", {}) if isinstance(streams, dict) else {}
    return engagement.get("refetches", 0)


def _putter(queue: asyncio.Queue[Envelope]) -> Callable[[Envelope], Awaitable[bool]]:
    async def put(envelope: Envelope) -> bool:
        await queue.put(envelope)
        return True

    return put


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--every", type=int, default=100_000, help="print RSS every this many items")
    parser.add_argument("--inproc", action="store_true", help="run the fake Reddit in this process")
    args = parser.parse_args(argv)
    python = sys.version.split()[0]
    print(f"reddit collector benchmark: {args.items:,} items, pid {os.getpid()}, python {python}")
    asyncio.run(run_bench(args.items, every=args.every, inproc=args.inproc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
