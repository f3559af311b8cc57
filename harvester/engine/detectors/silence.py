"""Silence: traffic that is normally there goes quiet. One signal per gap.

The usual rate is learned per minute with a robust EWMA. A gap is "silent" once no post has arrived
for `gap_factor` expected inter-arrival times (and at least `min_gap`), but only when the learned rate
says traffic is expected at all (`min_rate`). The next post ends the gap; the next gap can fire again.
The same watch serves rules (a `RuleDetector`) and sources (one watch per source in a
`StreamDetector`), because a dead collector and a topic that stopped being discussed look alike here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harvester.config.detectors import SilenceConfig
from harvester.engine.detectors.base import Observation, RuleDetector, StreamDetector, at
from harvester.engine.windows import BucketWindow, EwmaBaseline
from harvester.models import Post, Severity, Signal

KIND = "silence"
MINUTE = 60.0


@dataclass(slots=True)
class _Minute:
    index: int
    count: int = 0


class GapWatch:
    """The usual rate of one stream of posts, and whether it has gone quiet."""

    def __init__(self, name: str, config: SilenceConfig) -> None:
        self.name = name
        self.config = config
        self.minutes: BucketWindow[_Minute] = BucketWindow(MINUTE, 1, _Minute)
        self.rate = EwmaBaseline(half_life=max(config.half_life / MINUTE, 1.0))
        self.last_post = -math.inf
        self.signalled_gap = False

    def _learn_until(self, ts: float) -> None:
        for minute in self.minutes.advance(ts):
            if minute.index != self.minutes.partial_index:
                self.rate.learn(minute.count)

    def seen(self, ts: float, posts: int = 1) -> None:
        """`posts` posts arrived, the newest at `ts` (several: a batch, all in the minute of `ts`)."""
        minutes = self.minutes
        current = minutes.buckets[-1] if minutes.buckets else None
        if current is not None and current.index == int(ts // MINUTE):  # hot path: same minute
            current.count += posts
            minutes.newest = max(minutes.newest, ts)
            self.last_post = max(self.last_post, ts)
            self.signalled_gap = False
            return
        self._learn_until(ts)
        bucket = self.minutes.bucket_for(ts)
        if bucket is not None:
            bucket.count += posts
        self.last_post = max(self.last_post, ts)
        self.signalled_gap = False

    def expected_per_s(self) -> float:
        return self.rate.mean / MINUTE

    def check(self, ts: float) -> Signal | None:
        """Close minutes up to `ts`; return a signal if a gap has just become unusual."""
        if (
            (self.signalled_gap or ts - self.last_post < self.config.min_gap)
            and math.isfinite(self.last_post)
            and self.minutes.still_current(ts)
        ):
            return None  # the usual case, every second: no minute to learn, no gap to report
        warm = self.rate.n >= 10  # ten minutes of history before silence can mean anything
        per_s = self.expected_per_s()
        # Judge against the rate before the gap started dragging the baseline down.
        self._learn_until(ts)
        if not math.isfinite(self.last_post):
            # Restored after a restart: measure the gap from now, so a source that is dead from the
            # start is still noticed, without counting the downtime against it.
            if self.rate.n:
                self.last_post = ts
            return None
        if self.signalled_gap or not warm or per_s < self.config.min_rate:
            return None
        gap = ts - self.last_post
        limit = max(self.config.min_gap, self.config.gap_factor / per_s)
        if gap < limit:
            return None
        self.signalled_gap = True
        start = at(self.last_post)
        return Signal(
            id=Signal.make_id(self.name, KIND, start),
            rule=self.name,
            kind=KIND,
            severity=Severity.MEDIUM if gap < 4 * limit else Severity.HIGH,
            at=at(ts),
            window_start=start,
            window_end=at(ts),
            observed=0.0,
            baseline=round(per_s * gap, 2),
            score=round(gap / limit, 2),
            summary=(
                f"{self.name!r} has been silent for {gap / 60:.0f} min; "
                f"it usually sees {per_s * 60:.1f} posts a minute"
            ),
            evidence={
                "silent_s": round(gap, 1),
                "usual_posts_per_min": round(per_s * 60, 2),
                "expected_posts_in_gap": round(per_s * gap, 1),
                "last_post_at": start.isoformat(),
            },
        )

    def snapshot(self) -> dict[str, Any]:
        return {
            "rate": self.rate.snapshot(),
            "last_post": self.last_post if math.isfinite(self.last_post) else None,
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.rate.restore(state["rate"])
        # The time the daemon was down is unknown, not silent: the gap is measured from the first
        # moment after the restart (see `check`).
        self.last_post = -math.inf


class SilenceDetector(RuleDetector):
    kind = KIND
    batched = True

    def __init__(self, rule: str, config: SilenceConfig) -> None:
        super().__init__(rule)
        self.watch = GapWatch(rule, config)

    def observe(self, obs: Observation) -> list[Signal]:
        self.watch.seen(obs.ts)
        return []

    def observe_many(self, batch: Sequence[Observation]) -> list[Signal]:
        last = batch[-1].ts
        if int(batch[0].ts // MINUTE) == int(last // MINUTE):
            self.watch.seen(last, len(batch))
        else:
            for obs in batch:
                self.watch.seen(obs.ts)
        return []

    def advance(self, ts: float) -> list[Signal]:
        signal = self.watch.check(ts)
        return [signal] if signal is not None else []

    def snapshot(self) -> dict[str, Any]:
        return self.watch.snapshot()

    def restore(self, state: dict[str, Any]) -> None:
        self.watch.restore(state)


class SourceSilenceDetector(StreamDetector):
    """One gap watch per source: a collector that stops delivering is noticed even with no rule."""

    kind = KIND

    def __init__(self, config: SilenceConfig) -> None:
        self.config = config
        self.watches: dict[str, GapWatch] = {}

    def observe(self, ts: float, post: Post, rules: tuple[str, ...]) -> list[Signal]:
        watch = self.watches.get(post.source)
        if watch is None:
            watch = self.watches[post.source] = GapWatch(f"source:{post.source}", self.config)
        watch.seen(ts)
        return []

    def advance(self, ts: float) -> list[Signal]:
        signals = [watch.check(ts) for watch in self.watches.values()]
        return [s for s in signals if s is not None]

    def snapshot(self) -> dict[str, Any]:
        return {source: watch.snapshot() for source, watch in self.watches.items()}

    def restore(self, state: dict[str, Any]) -> None:
        for source, watch_state in state.items():
            watch = self.watches[source] = GapWatch(f"source:{source}", self.config)
            watch.restore(watch_state)
