"""Event-time windows with bounded memory, and the robust baseline detectors learn from them.

`BucketWindow` keeps the last `size` fixed-width buckets (a sliding window made of tumbling ones):
memory per rule is `size` buckets whatever the traffic. A post older than the current bucket still
lands in its own bucket if that bucket is in the window and no more than `lateness` seconds older
than the newest time seen; later than that it is counted in `late` and dropped. When time moves
past a bucket, the bucket is *closed* and handed to the caller once, in order, empty ones included,
so baselines learn quiet periods as zeros.

`SessionWindow` groups events separated by less than `gap` seconds (a burst), for detectors that
care about runs of activity rather than clock-aligned buckets.

`EwmaBaseline` is an exponentially weighted mean and variance with a bias-corrected start (a plain
average of the first values) and optional clipping of anomalous values before they are learned,
so a spike does not become the new normal.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

_MAX_CATCH_UP = 10_000  # empty buckets learned at most after a long quiet gap


class Bucket(Protocol):
    index: int


B = TypeVar("B", bound=Bucket)


class Timed(Protocol):
    @property
    def ts(self) -> float: ...


T = TypeVar("T", bound=Timed)


def bucket_runs(batch: Sequence[T], width: float) -> list[tuple[int, Sequence[T]]]:
    """A batch in time order, cut into runs of one `width`-wide bucket each: (bucket index, items).
    Nearly always one run: a batch covers a second or two."""
    index = math.floor(batch[0].ts / width)
    if math.floor(batch[-1].ts / width) == index:
        return [(index, batch)]
    runs: list[tuple[int, Sequence[T]]] = []
    start = 0
    for position, item in enumerate(batch):
        item_index = math.floor(item.ts / width)
        if item_index != index:
            runs.append((index, batch[start:position]))
            start, index = position, item_index
    runs.append((index, batch[start:]))
    return runs


class BucketWindow(Generic[B]):
    def __init__(
        self, width: float, size: int, new_bucket: Callable[[int], B], lateness: float = 0.0
    ) -> None:
        if width <= 0 or size < 1:
            raise ValueError("a window needs a positive width and at least one bucket")
        self.width = width
        self.size = size
        self.lateness = lateness
        self.new_bucket = new_bucket
        self.buckets: list[B] = []  # oldest first, at most `size`
        self.newest = -math.inf
        self.late = 0
        # Set when the window (re)starts: that first bucket is seen only from its middle.
        self.partial_index: int | None = None

    def index_of(self, ts: float) -> int:
        return math.floor(ts / self.width)

    @property
    def current(self) -> B | None:
        return self.buckets[-1] if self.buckets else None

    def start(self, index: int) -> None:
        """(Re)start the window at `index`, e.g. after a restore with a gap of unknown traffic."""
        self.buckets = [self.new_bucket(index)]
        self.partial_index = index

    def advance(self, ts: float) -> list[B]:
        """Move time to `ts`; return each bucket that closed (oldest first, empty ones included)."""
        self.newest = max(self.newest, ts)
        index = self.index_of(ts)
        if not self.buckets:
            self.start(index)
            return []
        current = self.buckets[-1].index
        if index <= current:
            return []
        skipped = [self.new_bucket(i) for i in range(current + 1, min(index, current + 1 + _MAX_CATCH_UP))]
        closed = [self.buckets[-1], *skipped]
        # Quiet buckets stay in the window (as zeros) so a late post for one of them still lands.
        floor = index - self.size
        self.buckets = [b for b in (*self.buckets, *skipped) if b.index > floor]
        self.buckets.append(self.new_bucket(index))
        return closed

    def still_current(self, ts: float) -> bool:
        """Whether `ts` is still in the newest bucket, so that moving time there closes nothing.
        (The engine lets every rule's time pass every second; for most rules this is all it does.)"""
        buckets = self.buckets
        if not buckets or math.floor(ts / self.width) > buckets[-1].index:
            return False
        self.newest = max(self.newest, ts)
        return True

    def bucket_for(self, ts: float) -> B | None:
        """The bucket an event at `ts` belongs in, or None if it is too late (counted in `late`).

        Call `advance` first for events that may be newer than the current bucket.
        """
        index = self.index_of(ts)
        current = self.buckets[-1]
        if index >= current.index:
            return current
        if self.newest - ts > self.lateness:
            self.late += 1
            return None
        for bucket in reversed(self.buckets):
            if bucket.index == index:
                return bucket
        self.late += 1
        return None

    def span(self, ts: float) -> float:
        """How many buckets' worth of time the window covers at `ts` (the current one partly)."""
        if not self.buckets:
            return 0.0
        current = self.buckets[-1].index
        elapsed = (ts - current * self.width) / self.width
        covered = min(self.size, current - self.buckets[0].index + 1)
        return (covered - 1) + min(max(elapsed, 0.05), 1.0)


@dataclass
class SessionWindow:
    """Consecutive events less than `gap` apart form one session."""

    gap: float
    first: float = math.nan
    last: float = math.nan
    count: int = 0

    def add(self, ts: float) -> bool:
        """Add an event; returns True if it started a new session."""
        if self.count and ts - self.last <= self.gap:
            self.last = max(self.last, ts)
            self.count += 1
            return False
        self.first = self.last = ts
        self.count = 1
        return True

    @property
    def duration(self) -> float:
        return 0.0 if not self.count else self.last - self.first


class EwmaBaseline:
    """Mean and variance of a series, exponentially weighted, robust to the anomalies it detects."""

    def __init__(self, half_life: float) -> None:
        self.alpha = 1.0 - 0.5 ** (1.0 / half_life)
        self.mean = 0.0
        self.var = 0.0
        self.n = 0

    @property
    def std(self) -> float:
        return math.sqrt(max(self.var, 0.0))

    def learn(
        self,
        value: float,
        weight: float = 1.0,
        clip_above: float | None = None,
        clip_below: float | None = None,
    ) -> None:
        """Fold one value in; `clip_*` bound it first (pass mean +/- k*std once warmed up)."""
        if clip_above is not None:
            value = min(value, clip_above)
        if clip_below is not None:
            value = max(value, clip_below)
        # Bias-corrected start: with a long half-life, an EWMA seeded from one value stays near it
        # for a long time; averaging the first values plainly avoids that.
        alpha = max(self.alpha, 1.0 / (self.n + 1)) * min(max(weight, 0.0), 1.0)
        if alpha <= 0.0:
            return
        delta = value - self.mean
        self.mean += alpha * delta
        self.var = (1.0 - alpha) * (self.var + alpha * delta * delta)
        self.n += 1

    def snapshot(self) -> dict[str, Any]:
        return {"mean": self.mean, "var": self.var, "n": self.n}

    def restore(self, state: dict[str, Any]) -> None:
        self.mean = float(state["mean"])
        self.var = float(state["var"])
        self.n = int(state["n"])
