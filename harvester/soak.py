"""Soak benchmark: millions of synthetic posts through the real pipeline, printing memory as it goes.

    python -m harvester.soak --posts 3000000 [--interval 100000] [--store all|matched|none] [--heap]

The daemon's own `App` runs with a synthetic source at pace "max" (as fast as the pipeline takes
posts), the brand and ticker rules of `harvester bench`, the store, the router and a log sink: every
stage that holds state per post, rule, author or window. Every `--interval` posts it prints the
resident set size (RSS) of the daemon process and of its sentiment workers, from /proc. At the end it
prints the growth between the sample at 10% of the run and the last one: the warm-up (imports, the
VADER lexicon, SQLite's page cache, the dedup set filling to its capacity) is over by then, so what is
left is what a long run would keep accumulating. With it come the sizes of the structures that hold
state per post (entries, not bytes: counting them is cheap), so a growth can be told apart from a
structure still filling to its cap. `--heap` also traces the Python heap (tracemalloc: several times
slower) and prints the bytes Python holds beside RSS, which does not shrink when objects are freed.
A benchmark, not a test: it prints, never asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harvester.alerts.sinks.log import LogSinkConfig
from harvester.app import App, Hooks
from harvester.bench import bench_rules
from harvester.config.loader import LoadedConfig
from harvester.config.schema import AlertsConfig, Config, DedupConfig, EngineConfig, LogConfig, StoreConfig
from harvester.logging import configure_logging
from harvester.sources.synthetic import SyntheticConfig, SyntheticScenarios

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes(pid: int | str = "self") -> int:
    """Resident set size of one process, from /proc/PID/statm (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/statm") as statm:
            return int(statm.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def children_rss_bytes() -> int:
    """The summed RSS of this process's direct children (the sentiment worker processes)."""
    me = str(os.getpid())
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me:  # after the command name: state, then the parent pid
            total += rss_bytes(entry)
    return total


def structures(app: App) -> dict[str, int]:
    """Entries held by the stages that keep state per post, author or cluster (summed over rules).

    Read by attribute name with defaults, so a stage that changes its insides costs a missing figure,
    never a failed run."""
    sizes: dict[str, int] = {}

    def add(name: str, value: int) -> None:
        sizes[name] = sizes.get(name, 0) + value

    processor = app.processor
    if processor is not None:
        add("dedup", len(processor.seen))
    engine = getattr(app, "engine", None)
    if engine is None:
        return sizes
    index: Any = engine.near_duplicates
    if index is not None:
        add("clusters", len(index.clusters))
        add("cluster_posts", sum(len(getattr(c, "recent", ())) for c in index.clusters.values()))
        add("cluster_members", len(getattr(index, "seed_of", ())))  # fingerprints clusters are found under
    for name in engine.rules:
        for kind, detector in engine.detectors(name).items():
            held: Any = detector
            if kind == "viral":
                add("viral_followed", len(held.posts))
                add("viral_candidates", len(getattr(held, "candidates", ())))
            elif kind == "campaign":
                add("campaign_views", len(held.clusters))
                add("campaign_authors", sum(len(c.authors) for c in held.clusters.values()))
                fired = getattr(held, "campaigns", {}).values()
                add("campaign_fired_accounts", sum(len(c.authors) for c in fired))
    for stream in engine.stream:
        mentions: Any = getattr(stream, "mentions", None)
        if mentions is not None:
            add("cashtags", len(mentions))
    return sizes


@dataclass
class Sample:
    posts: int
    seconds: float
    rss: int
    workers_rss: int
    heap: int | None = None  # bytes traced by tracemalloc (with --heap)
    structures: dict[str, int] = field(default_factory=dict)


@dataclass
class SoakRun:
    posts: int
    interval: int
    samples: list[Sample] = field(default_factory=list)

    def line(self, sample: Sample) -> str:
        rate = sample.posts / sample.seconds if sample.seconds > 0 else 0.0
        heap = "" if sample.heap is None else f"  heap {sample.heap / 2**20:7.1f} MB"
        return (
            f"{sample.posts:>10,} posts  {sample.seconds:8.1f} s  {rate:8,.0f} posts/s  "
            f"RSS {sample.rss / 2**20:7.1f} MB  workers {sample.workers_rss / 2**20:7.1f} MB{heap}"
        )

    def summary(self) -> list[str]:
        if len(self.samples) < 2:
            return ["too few samples for a growth figure: use more posts or a smaller --interval"]
        last = self.samples[-1]
        tenth = min(self.samples, key=lambda s: abs(s.posts - last.posts / 10))
        growth = (last.rss - tenth.rss) / 2**20
        workers = (last.workers_rss - tenth.workers_rss) / 2**20
        peak = max(s.rss for s in self.samples) / 2**20
        lines = [
            f"posts processed       {last.posts:,} in {last.seconds:.0f} s "
            f"({last.posts / max(last.seconds, 1e-9):,.0f} posts/s)",
            f"RSS at 10% ({tenth.posts:,})  {tenth.rss / 2**20:.1f} MB; "
            f"at the end {last.rss / 2**20:.1f} MB; peak {peak:.1f} MB",
            f"growth 10% -> 100%    daemon {growth:+.1f} MB, sentiment workers {workers:+.1f} MB",
        ]
        if tenth.heap is not None and last.heap is not None:
            lines.append(
                f"Python heap           {tenth.heap / 2**20:.1f} MB at 10%, "
                f"{last.heap / 2**20:.1f} MB at the end ({(last.heap - tenth.heap) / 2**20:+.1f} MB)"
            )
        if last.structures:
            lines.append("entries held          at 10% -> at the end")
            lines += [
                f"  {name:<20}{tenth.structures.get(name, 0):>10,} -> {count:>10,}"
                for name, count in last.structures.items()
            ]
        return lines


def soak_config(state_dir: Path, posts: int, store_posts: str, seed: int, rate: float = 2000) -> Config:
    return Config(
        state_dir=state_dir,
        log=LogConfig(level="warning"),
        dedup=DedupConfig(),
        store=StoreConfig.model_validate({"posts": store_posts}),
        engine=EngineConfig(clock="event"),
        sources=[
            SyntheticConfig(
                name="soak",
                rate=rate,
                seed=seed,
                pace="max",
                limit=posts,
                scenarios=SyntheticScenarios(first_after=30, every=120, duration=60),
            )
        ],
        rules=[rule for rule in bench_rules() if not rule.match_all],
        alerts=AlertsConfig(sinks=[LogSinkConfig()]),
        stats_interval=3600,
    )


def run_soak(
    posts: int,
    interval: int,
    store_posts: str,
    seed: int,
    state_dir: Path,
    *,
    rate: float = 2000,
    heap: bool = False,
) -> SoakRun:
    configure_logging("warning", "console", stream=sys.stderr)
    run = SoakRun(posts, interval)
    config = soak_config(state_dir, posts, store_posts, seed, rate)
    started = time.perf_counter()
    processed = 0

    def on_processed(_enqueued: float, _signalled: bool) -> None:
        # Exactly every `interval` posts, from inside the pipeline (the last post included).
        nonlocal processed
        processed += 1
        if processed % interval == 0 or processed == posts:
            traced = tracemalloc.get_traced_memory()[0] if heap else None
            sample = Sample(
                processed,
                time.perf_counter() - started,
                rss_bytes(),
                children_rss_bytes(),
                traced,
                structures(app),
            )
            run.samples.append(sample)
            print(run.line(sample), flush=True)

    hooks = Hooks(on_processed=on_processed)
    app = App(LoadedConfig(config, None), hooks=hooks, exit_when_sources_finish=True)
    if heap:
        tracemalloc.start(1)
    try:
        asyncio.run(app.run())
    finally:
        if heap:
            tracemalloc.stop()
    print(f"done: {processed:,} posts in {time.perf_counter() - started:.1f} s", flush=True)
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harvester.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=3_000_000, help="posts to push (default 3000000)")
    parser.add_argument("--interval", type=int, default=None, help="posts between samples (default posts/50)")
    parser.add_argument("--store", choices=["all", "matched", "none"], default="all", help="store.posts")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument(
        "--rate",
        type=float,
        default=2000,
        help="posts per second of the stream's own (event) time, default 2000; posts are pushed as fast "
        "as the pipeline takes them whatever the rate, but windows (10 min for campaigns) hold "
        "rate x window posts, so the rate sets how much state a full window holds",
    )
    parser.add_argument("--state-dir", type=Path, default=None, help="default: a temporary directory")
    parser.add_argument(
        "--heap", action="store_true", help="also trace the Python heap (tracemalloc; several times slower)"
    )
    args = parser.parse_args(argv)
    interval = args.interval or max(1000, args.posts // 50)
    print(
        f"soak: {args.posts:,} synthetic posts at {args.rate:g}/s of event time, store.posts={args.store}, "
        f"a sample every {interval:,}"
    )
    with tempfile.TemporaryDirectory(prefix="harvester-soak-") as tmp:
        state_dir = args.state_dir or Path(tmp)
        run = run_soak(args.posts, interval, args.store, args.seed, state_dir, rate=args.rate, heap=args.heap)
    for line in run.summary():
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
