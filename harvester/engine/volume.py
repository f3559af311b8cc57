"""Volume spike: a rule's post count over a short sliding window against a learned baseline.

Counts go into fixed-size time buckets (memory per rule is `window_buckets` buckets, whatever the
traffic). When a bucket closes, its count updates an exponentially weighted mean and variance. A
closing bucket that was itself anomalous is clipped to the alarm threshold first, so a spike does not
teach the baseline that spikes are normal (Huginn's peak detector keeps them, and goes blind after a
few). The window's observed count is compared with the expected count for the time it covers, with a
Poisson floor on the variance so that quiet rules do not alarm on a handful of posts.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from harvester.config.detectors import VolumeSpikeConfig
from harvester.engine.detectors.base import MIN_COOLDOWN_S, Observation, RuleDetector
from harvester.engine.detectors.batch import facts_of
from harvester.engine.detectors.evidence import DistinctCount, Tally, top_examples, top_terms
from harvester.engine.windows import BucketWindow, EwmaBaseline, bucket_runs
from harvester.models import Severity, Signal

KIND = "volume_spike"


@dataclass(slots=True)
class _Bucket:
    index: int
    count: int = 0
    sentiment_sum: float = 0.0
    sentiment_n: int = 0
    authors: DistinctCount = field(default_factory=DistinctCount)
    evidence: Tally = field(default_factory=Tally)  # the most engaged posts, and a sample for terms

    def add(self, obs: Observation, keep_examples: int) -> None:
        self.add_many((obs,), keep_examples)

    def add_many(self, batch: Sequence[Observation], keep_examples: int) -> None:
        facts = facts_of(batch)  # summed once for the rule's window detectors
        self.count += len(batch)
        self.sentiment_n += facts.scored
        self.sentiment_sum += facts.total
        self.authors.add_names(facts.authors)
        self.evidence.add_many(batch, keep_examples)


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


class VolumeSpikeDetector(RuleDetector):
    kind = KIND
    batched = True

    def __init__(
        self, rule: str, config: VolumeSpikeConfig, examples: int = 3, lateness: float = 0.0
    ) -> None:
        super().__init__(rule)
        self.config = config
        self.examples = examples
        self.window: BucketWindow[_Bucket] = BucketWindow(
            config.bucket, config.window_buckets, _Bucket, lateness
        )
        self.baseline = EwmaBaseline(config.half_life_buckets)
        # The baseline's (mean, var) as they were before each closed bucket still in the window was
        # learned, oldest first: the window is judged, and a closing bucket clipped, against what came
        # before the window. Judged against a baseline that had learned the window's own first
        # buckets, a surge that ramps up over a few buckets raised its own bar, most of all early on,
        # when each learned bucket weighs a fifth or more: the README demo at night, 2 posts a
        # bucket rising to 14, never reached 4 sigma.
        self._before: deque[tuple[float, float]] = deque(maxlen=config.window_buckets - 1)
        self.window_count = 0  # sum of the window's bucket counts, kept up to date
        self.cooldown_until = float("-inf")
        # After a restore, the time the daemon was down is unknown traffic, not zero traffic.
        self._resumed = False

    @property
    def mean(self) -> float:
        """The usual count per bucket the window is judged against (learned before the window)."""
        return self._before[0][0] if self._before else self.baseline.mean

    @property
    def var(self) -> float:
        return self._before[0][1] if self._before else self.baseline.var

    @property
    def closed(self) -> int:
        """Buckets that have taught the baseline."""
        return self.baseline.n

    @property
    def buckets(self) -> list[_Bucket]:
        return self.window.buckets

    # -- time ------------------------------------------------------------------------------------
    def _learn(self, count: int) -> None:
        base = self.baseline
        ceiling = None
        if base.n >= self.config.warmup_buckets:
            mean = self.mean
            ceiling = mean + self.config.threshold * math.sqrt(max(self.var, mean, 1.0))
        self._before.append((base.mean, base.var))  # (a one-bucket window keeps none)
        base.learn(count, clip_above=ceiling)

    def advance(self, ts: float) -> list[Signal]:
        if self._resumed or not self.window.still_current(ts):
            self.close_buckets(ts)
        return []

    def close_buckets(self, ts: float) -> None:
        """Close every bucket that ended before `ts` (empty ones count as zero)."""
        window = self.window
        if self._resumed and window.buckets and window.index_of(ts) > window.buckets[-1].index + 1:
            # The daemon was down: neither the bucket it stopped in nor the missed ones are known,
            # and the new one is seen only from the middle.
            window.start(window.index_of(ts))
            window.newest = ts
            self.window_count = 0
            self._before.clear()  # the window starts afresh: judged against the whole baseline
        else:
            closed = window.advance(ts)
            if closed:
                for bucket in closed:
                    if bucket.index != window.partial_index:
                        self._learn(bucket.count)
                self.window_count = sum(b.count for b in window.buckets)
        self._resumed = False

    # -- observation -----------------------------------------------------------------------------
    def observe(self, obs: Observation) -> list[Signal]:
        signal = self._observe(obs)
        return [signal] if signal is not None else []

    def _observe(self, obs: Observation) -> Signal | None:
        ts = obs.ts
        window = self.window
        current = window.buckets[-1] if window.buckets else None
        # Hot path (every matched post of every rule): most posts fall in the current bucket.
        if current is not None and current.index == int(ts // window.width) and not self._resumed:
            bucket: _Bucket | None = current
            window.newest = max(window.newest, ts)
        else:
            self.close_buckets(ts)
            bucket = window.bucket_for(ts)
        if bucket is None:
            return None  # later than the allowed lateness: counted in window.late
        bucket.add(obs, self.examples)
        self.window_count += 1
        return self.evaluate(ts)

    def observe_many(self, batch: Sequence[Observation]) -> list[Signal]:
        window = self.window
        signals: list[Signal] = []
        # The batch in runs of one bucket (nearly always one run). A run in the current bucket or a
        # newer one, or the first posts ever (which start the window), is folded in at once; a late
        # run, or the first after a restore, goes one by one. (The first batches went one by one
        # too: with 1,000 rules, a fifth of the window detectors' time in a newly started engine.)
        for index, run in bucket_runs(batch, window.width):
            current = window.buckets[-1] if window.buckets else None
            if not self._resumed and (current is None or index > current.index):
                self.close_buckets(run[0].ts)
                current = window.buckets[-1]
            if current is None or self._resumed or index != current.index:
                signals += super().observe_many(run)
                continue
            window.newest = max(window.newest, run[-1].ts)
            current.add_many(run, self.examples)
            self.window_count += len(run)
        signal = self.evaluate(batch[-1].ts)
        if signal is not None:
            signals.append(signal)
        return signals

    def evaluate(self, ts: float) -> Signal | None:
        cfg = self.config
        observed = self.window_count
        # Cheap exits first: most posts of most rules are nowhere near a spike.
        if observed < cfg.min_count or observed < cfg.min_ratio * self.mean * (cfg.window_buckets - 0.95):
            return None
        if self.closed < cfg.warmup_buckets or ts < self.cooldown_until or not self.buckets:
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
        self.cooldown_until = ts + max(cfg.cooldown, MIN_COOLDOWN_S)
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
        authors = DistinctCount.union(b.authors for b in self.buckets)
        tallies = [b.evidence for b in self.buckets]
        window_s = self.config.window_buckets * self.config.bucket
        # A rule that is nearly always quiet has no meaningful ratio ("10000000000x the usual 0.0").
        against = (
            f"{observed / expected:.1f}x the usual {expected:.1f}"
            if expected >= 0.1
            else f"where {expected:.1f} are usual"
        )
        summary = f"{observed} posts in {window_s:g}s for rule {self.rule!r}, {against} (z={z:.1f})"
        if sentiment is not None:
            summary += f", mean sentiment {sentiment:+.2f}"
        evidence: dict[str, Any] = {
            "observed": observed,
            "expected": round(expected, 3),
            "z": round(z, 2),
            "window_s": window_s,
            "distinct_authors": authors,
            "mean_sentiment": round(sentiment, 3) if sentiment is not None else None,
            "top_terms": top_terms(tallies),
            "example_uids": top_examples(tallies, self.examples),
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
            "baseline": self.baseline.snapshot(),
            "cooldown_until": self.cooldown_until if math.isfinite(self.cooldown_until) else None,
            "buckets": [[b.index, b.count] for b in self.buckets],
            "before": [list(state) for state in self._before],
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.baseline.restore(state["baseline"])
        until = state.get("cooldown_until")
        self.cooldown_until = float(until) if until is not None else float("-inf")
        self.window.buckets = [_Bucket(int(index), int(count)) for index, count in state["buckets"]]
        self.window_count = sum(b.count for b in self.buckets)
        self._before.clear()
        self._before.extend((float(mean), float(var)) for mean, var in state.get("before", []))
        self._resumed = True
