"""Volume spike: a rule's post count over a short sliding window against a learned baseline.

Counts go into fixed-size time buckets (memory per rule is `window_buckets` buckets, whatever the
traffic). When a bucket closes, its count updates an exponentially weighted mean and variance. A
closing bucket that was itself anomalous is clipped to the alarm threshold first, so a spike does not
teach the baseline that spikes are normal (Huginn's peak detector keeps them, and goes blind after a
few). The window's observed count is compared with the expected count for the time it covers, with a
Poisson floor on the variance so that quiet rules do not alarm on a handful of posts.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from harvester.config.schema import VolumeSpikeConfig
from harvester.models import Post, Severity, Signal

KIND = "volume_spike"
_MAX_AUTHORS_PER_BUCKET = 2000
_MAX_CATCH_UP_BUCKETS = 10_000


@dataclass(slots=True)
class _Bucket:
    index: int
    count: int = 0
    sentiment_sum: float = 0.0
    sentiment_n: int = 0
    authors: set[str] = field(default_factory=set)
    # (engagement, uid) min-heap of the most engaged posts, for the alert's examples
    examples: list[tuple[int, str]] = field(default_factory=list)

    def add(self, post: Post, sentiment: float | None, keep_examples: int) -> None:
        self.count += 1
        if sentiment is not None:
            self.sentiment_sum += sentiment
            self.sentiment_n += 1
        if len(self.authors) < _MAX_AUTHORS_PER_BUCKET:
            self.authors.add(post.author)
        item = (post.engagement, post.uid)
        if len(self.examples) < keep_examples:
            heapq.heappush(self.examples, item)
        elif item > self.examples[0]:
            heapq.heapreplace(self.examples, item)


def poisson_tail(observed: int, expected: float) -> float:
    """P(X >= observed) for X ~ Poisson(expected), summed in log space (stable for large counts)."""
    if observed <= 0:
        return 1.0
    if expected <= 0:
        return 0.0
    log_lambda = math.log(expected)
    total = 0.0
    k = observed
    term = math.exp(k * log_lambda - expected - math.lgamma(k + 1))
    while term > 1e-300 and (term > total * 1e-12 or k < expected):
        total += term
        k += 1
        term *= expected / k
    return min(total, 1.0)


def gaussian_tail(z: float) -> float:
    """P(Z >= z) for a standard normal Z: turns a sigma threshold into a tail probability."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def _at(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


class VolumeSpikeDetector:
    def __init__(self, rule: str, config: VolumeSpikeConfig, examples: int = 3) -> None:
        self.rule = rule
        self.config = config
        self.examples = examples
        self.alpha = 1.0 - 0.5 ** (1.0 / config.half_life_buckets)
        self.mean = 0.0
        self.var = 0.0
        self.closed = 0  # buckets that have updated the baseline
        self.buckets: list[_Bucket] = []  # the window, oldest first
        self.window_count = 0  # sum of the window's bucket counts, kept up to date
        self.cooldown_until = float("-inf")
        # After a restore, the time the daemon was down is unknown traffic, not zero traffic.
        self._resumed = False
        # The first bucket after a start is seen only from the middle: its count is too low to learn.
        self._partial_bucket: int | None = None

    # -- time ------------------------------------------------------------------------------------
    def _index(self, ts: float) -> int:
        return math.floor(ts / self.config.bucket)

    def _learn(self, count: int) -> None:
        if self.closed >= self.config.warmup_buckets:
            ceiling = self.mean + self.config.threshold * math.sqrt(max(self.var, self.mean, 1.0))
            count = min(count, int(ceiling))
        # Bias-corrected start: a plain average of the first buckets, then the exponential weights.
        # (With the small alpha of a long half-life, an EWMA seeded from one bucket stays near that
        # one bucket's count for many minutes.)
        alpha = max(self.alpha, 1.0 / (self.closed + 1))
        delta = count - self.mean
        self.mean += alpha * delta
        self.var = (1.0 - alpha) * (self.var + alpha * delta * delta)
        self.closed += 1

    def advance(self, ts: float) -> None:
        """Close every bucket that ended before `ts` (empty ones count as zero)."""
        index = self._index(ts)
        if not self.buckets:
            self.buckets.append(_Bucket(index))
            self.window_count = 0
            self._partial_bucket = index
            return
        current = self.buckets[-1].index
        if index <= current:
            return
        gap = index - current - 1
        if self._resumed and gap > 0:
            # The daemon was down: neither the bucket it stopped in nor the missed ones are known,
            # and the new one is seen only from the middle.
            self.buckets = []
            self._partial_bucket = index
        else:
            if current != self._partial_bucket:
                self._learn(self.buckets[-1].count)
            for _ in range(min(gap, _MAX_CATCH_UP_BUCKETS)):
                self._learn(0)
        self._resumed = False
        self.buckets.append(_Bucket(index))
        self.buckets = [b for b in self.buckets if b.index > index - self.config.window_buckets]
        self.window_count = sum(b.count for b in self.buckets)

    # -- observation -----------------------------------------------------------------------------
    def observe(self, ts: float, post: Post, sentiment: float | None) -> Signal | None:
        self.advance(ts)
        self.buckets[-1].add(post, sentiment, self.examples)
        self.window_count += 1
        return self.evaluate(ts)

    def evaluate(self, ts: float) -> Signal | None:
        cfg = self.config
        if self.closed < cfg.warmup_buckets or ts < self.cooldown_until or not self.buckets:
            return None
        observed = self.window_count
        if observed < cfg.min_count:
            return None
        current = self.buckets[-1].index
        first = current - cfg.window_buckets + 1
        elapsed_in_current = (ts - current * cfg.bucket) / cfg.bucket
        span = (cfg.window_buckets - 1) + min(max(elapsed_in_current, 0.05), 1.0)
        expected = self.mean * span
        if observed < cfg.min_ratio * expected:
            return None
        spread = math.sqrt(max(self.var, self.mean, 0.25) * span)
        z = (observed - expected) / spread
        if z < cfg.threshold:
            return None
        # For low counts the normal approximation is too optimistic: 9 posts where 2.5 are usual is
        # "z = 4" but happens by chance about once in a thousand windows. Require the Poisson tail to
        # be as unlikely as the sigma threshold promises.
        if poisson_tail(observed, expected) > gaussian_tail(cfg.threshold):
            return None
        self.cooldown_until = ts + cfg.cooldown
        return self._signal(ts, first, observed, expected, z)

    def _severity(self, z: float) -> Severity:
        if z >= 3 * self.config.threshold:
            return Severity.HIGH
        if z >= 1.5 * self.config.threshold:
            return Severity.MEDIUM
        return Severity.LOW

    def _signal(self, ts: float, first_index: int, observed: int, expected: float, z: float) -> Signal:
        window_start = _at(first_index * self.config.bucket)
        sentiment_n = sum(b.sentiment_n for b in self.buckets)
        sentiment = sum(b.sentiment_sum for b in self.buckets) / sentiment_n if sentiment_n else None
        authors: set[str] = set()
        for bucket in self.buckets:
            authors |= bucket.authors
        top = heapq.nlargest(self.examples, (e for b in self.buckets for e in b.examples))
        window_s = self.config.window_buckets * self.config.bucket
        summary = (
            f"{observed} posts in {window_s:g}s for rule {self.rule!r}, "
            f"{observed / max(expected, 1e-9):.1f}x the usual {expected:.1f} (z={z:.1f})"
        )
        if sentiment is not None:
            summary += f", mean sentiment {sentiment:+.2f}"
        evidence: dict[str, Any] = {
            "observed": observed,
            "expected": round(expected, 3),
            "z": round(z, 2),
            "window_s": window_s,
            "distinct_authors": len(authors),
            "mean_sentiment": round(sentiment, 3) if sentiment is not None else None,
            "example_uids": [uid for _, uid in top],
        }
        return Signal(
            id=Signal.make_id(self.rule, KIND, window_start),
            rule=self.rule,
            kind=KIND,
            severity=self._severity(z),
            at=_at(ts),
            window_start=window_start,
            window_end=_at(ts),
            observed=float(observed),
            baseline=round(expected, 3),
            score=round(z, 2),
            summary=summary,
            evidence=evidence,
        )

    # -- persistence -----------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """The baseline and the window's counts; evidence details (authors, examples) are not kept."""
        return {
            "mean": self.mean,
            "var": self.var,
            "closed": self.closed,
            "cooldown_until": self.cooldown_until if math.isfinite(self.cooldown_until) else None,
            "buckets": [[b.index, b.count] for b in self.buckets],
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.mean = float(state["mean"])
        self.var = float(state["var"])
        self.closed = int(state["closed"])
        until = state.get("cooldown_until")
        self.cooldown_until = float(until) if until is not None else float("-inf")
        self.buckets = [_Bucket(int(index), int(count)) for index, count in state["buckets"]]
        self.window_count = sum(b.count for b in self.buckets)
        self._resumed = True
