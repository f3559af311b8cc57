"""`harvester replay FILE`: run the rules and detectors over a file in event time and list every signal.

This is how users tune rules: no store, no sinks, no wall clock; the posts' own timestamps drive the
windows, so a day of data replays in seconds and gives the same signals every time. Given a
`PeakBaseline`, the same posts also feed that comparison detector (with the rules the engine matched),
and its signals are kept apart from the engine's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from harvester.config.schema import Config
from harvester.engine import Engine
from harvester.engine.peak_baseline import PeakBaseline
from harvester.models import Post, Signal
from harvester.wire.replay import read_posts

REPLAY_CHUNK = 256  # posts per `Engine.process_many` call when replaying as fast as possible


@dataclass
class BacktestResult:
    posts: int = 0
    duplicates: int = 0
    malformed: int = 0
    matched: int = 0
    signals: list[Signal] = field(default_factory=list)
    baseline_signals: list[Signal] = field(default_factory=list)
    first_event: float | None = None
    last_event: float | None = None

    @property
    def replayed_seconds(self) -> float:
        if self.first_event is None or self.last_event is None:
            return 0.0
        return max(0.0, self.last_event - self.first_event)


def _paced(
    posts: Iterator[tuple[str, Post | None, str | None]], speed: float | None, sleep: Callable[[float], None]
) -> Iterator[tuple[str, Post | None, str | None]]:
    previous: float | None = None
    for item in posts:
        post = item[1]
        if speed is not None and post is not None:
            ts = post.created_at.timestamp()
            if previous is not None and ts > previous:
                sleep(min((ts - previous) / speed, 60.0))
            previous = ts if previous is None else max(previous, ts)
        yield item


def run_backtest(
    path: Path,
    config: Config,
    *,
    speed: float | None = None,
    on_signal: Callable[[Signal], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    baseline: PeakBaseline | None = None,
) -> BacktestResult:
    engine = Engine(config.rules, config.engine)
    result = BacktestResult()
    seen: set[str] = set()
    event_now = float("-inf")
    # As fast as possible, posts go to the engine a chunk at a time (`Engine.process_many`: the same
    # verdicts, cheaper); paced, one at a time, so that signals come out as the replay reaches them.
    chunk = 1 if speed is not None else REPLAY_CHUNK
    waiting: list[tuple[Post, float]] = []

    def signalled(signals: Iterable[Signal]) -> None:
        for signal in signals:
            result.signals.append(signal)
            if on_signal is not None:
                on_signal(signal)

    def run(batch: list[tuple[Post, float]]) -> None:
        for (_, now), verdict in zip(batch, engine.process_many(batch), strict=True):
            if verdict.rules:
                result.matched += 1
            signalled(verdict.signals)
            if baseline is not None and verdict.rules:
                # `verdict.rules` is what `engine.match(post)` returned: both detectors count the same posts.
                result.baseline_signals += baseline.observe(verdict.rules, now)

    for _cursor, post, error in _paced(read_posts(path, default_source="replay"), speed, sleep):
        if post is None:
            if error is not None:
                result.malformed += 1
            continue
        if post.uid in seen:
            result.duplicates += 1
            continue
        seen.add(post.uid)
        ts = post.created_at.timestamp()
        event_now = max(event_now, ts)
        result.first_event = ts if result.first_event is None else min(result.first_event, ts)
        result.last_event = event_now
        result.posts += 1
        waiting.append((post, event_now))
        if len(waiting) >= chunk:
            run(waiting)
            waiting = []
    if waiting:
        run(waiting)
    signalled(engine.flush())  # the last posts' batches (see `harvester.engine.engine.BATCH_SECONDS`)
    return result
