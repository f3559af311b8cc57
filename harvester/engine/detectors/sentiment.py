"""Sentiment drop and surge: a rule's mean VADER compound over a short window against its baseline.

Per bucket we keep the count, sum and sum of squares of the compound scores, which is all the mean
and its standard error need; memory per rule is `window_buckets` buckets whatever the traffic (plus
bounded authors, term counts and example posts for the evidence).

The baseline is two EWMAs over closed buckets: the per-post mean and the per-post variance. A bucket
with few posts is pooled with the next ones until the pool holds `min_posts / window_buckets` posts,
and only then learned: a handful of posts says little about the usual mean, and `EwmaBaseline` starts
from zero, so feeding it fractional weights would bias its first average toward zero. Empty buckets
teach nothing (silence has no sentiment) and neither does the first, partial bucket after a start.

The test: shift = window mean - baseline mean, z = |shift| / (sigma / sqrt(n)) with sigma the larger
of the learned per-post spread, the window's own spread and a floor. It fires when z is past the
threshold AND |shift| >= `min_shift`: at high volume the standard error is tiny and `min_shift` keeps
ordinary drift quiet; at low volume z keeps a few grumpy posts quiet.

"The window" is judged by its suffixes (the newest bucket once it is half through, the newest two,
... all of them), each needing `min_posts` posts. A collapse that started a minute ago is diluted by
four minutes of normal posts in a five-bucket mean and would take more than two minutes to move it
by `min_shift`; judged on the buckets it occupies, it shows within seconds. Of the suffixes that
pass, the signal reports the one with the largest shift, the view least diluted by the calm before.

`threshold` is what one look at one sample would need. The detector looks at several suffixes after
every post (a busy rule's every 8th post or second, whichever comes first: see `Throttle`), and a
growing sample watched post by post crosses a fixed boundary far more often than one look does: on
simulated VADER-like traffic at 0.2-2 posts/s, z >= 4 on every look gave about 0.2 false alarms a
day. So the z required is Bonferroni-corrected for the looks a window gets (the suffixes times
`SEQUENTIAL_LOOKS`): 4.0 becomes 4.7 with the defaults, about 0.02 false alarms a day on the same
traffic, for a few seconds more delay.

A pool that is itself anomalous is clipped to the alarm boundary before it is learned, and does not
teach the spread, so a long collapse does not quickly become the new normal.

One cooldown per kind; within it, only an escalation to a higher severity is signalled (the first
signal of an event sees its first seconds mixed with the calm before, and understates it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any, Final

from harvester.config.detectors import SentimentShiftConfig
from harvester.engine.detectors.base import MIN_COOLDOWN_S, Observation, RuleDetector, Throttle, at
from harvester.engine.detectors.batch import facts_of
from harvester.engine.detectors.evidence import DistinctCount, Tally, top_examples, top_terms
from harvester.engine.windows import BucketWindow, EwmaBaseline, bucket_runs
from harvester.models import Severity, Signal

DROP: Final = "sentiment_drop"
SURGE: Final = "sentiment_surge"

# Per-post spread floor (VADER compound). Real streams spread around 0.4; a rule whose history is
# constant (all neutral, e.g. a language VADER does not read) would otherwise make any wobble "z = inf".
SPREAD_FLOOR = 0.25
# A drop to a window mean this negative is serious whatever the baseline was.
VERY_NEGATIVE = -0.4
# Effectively independent looks per suffix while a window fills, for the Bonferroni correction
# (calibrated on simulated traffic: 60 days of iid VADER-like scores at 0.2-2 posts/s).
SEQUENTIAL_LOOKS = 5


def corrected_z(threshold: float, looks: int) -> float:
    """The z that keeps `looks` looks as unlikely to cross by chance as one look at `threshold`."""
    tail = 0.5 * math.erfc(threshold / math.sqrt(2.0))
    return -NormalDist().inv_cdf(tail / max(looks, 1))


@dataclass(slots=True)
class _Bucket:
    index: int
    n: int = 0
    total: float = 0.0
    squares: float = 0.0
    negative_posts: int = 0
    positive_posts: int = 0
    authors: DistinctCount = field(default_factory=DistinctCount)
    negative: Tally = field(default_factory=Tally)
    positive: Tally = field(default_factory=Tally)


@dataclass(slots=True)
class _Suffix:
    """The window's buckets from `first_index` to the newest, summed."""

    first_index: int
    n: int
    total: float
    squares: float

    @property
    def mean(self) -> float:
        return self.total / self.n

    @property
    def variance(self) -> float:
        if self.n < 2:
            return 0.0
        return max(self.squares - self.total * self.total / self.n, 0.0) / (self.n - 1)


@dataclass(slots=True)
class _Finding:
    kind: str
    suffix: _Suffix
    shift: float
    z: float
    sigma: float


class SentimentShiftDetector(RuleDetector):
    """Signals of kind `sentiment_drop`, and `sentiment_surge` when the config asks for surges."""

    kind = DROP
    batched = True

    def __init__(self, rule: str, config: SentimentShiftConfig, examples: int = 3) -> None:
        super().__init__(rule)
        self.config = config
        self.examples = examples
        self.cooldown = max(config.cooldown, MIN_COOLDOWN_S)
        self.z_required = corrected_z(config.threshold, config.window_buckets * SEQUENTIAL_LOOKS)
        # Posts a pool needs before it is learned (a bucket with this many has full weight).
        self.full_pool = max(1, math.ceil(config.min_posts / config.window_buckets))
        self.level = EwmaBaseline(config.half_life_buckets)  # per-post mean
        self.spread = EwmaBaseline(config.half_life_buckets)  # per-post variance (its `mean`)
        self.posts_learned = 0
        self.warmed_up = False
        self.cooldown_until: dict[str, float] = {DROP: -math.inf, SURGE: -math.inf}
        # (id, severity) of the signal that started or last escalated the current cooldown, per kind.
        self.last_signal: dict[str, tuple[str, Severity] | None] = {DROP: None, SURGE: None}
        self.throttle = Throttle()
        self._reset_window()

    def _reset_window(self) -> None:
        # Posts up to one bucket late still land in their own bucket (replays are not perfectly ordered).
        self.window: BucketWindow[_Bucket] = BucketWindow(
            self.config.bucket, self.config.window_buckets, _Bucket, lateness=self.config.bucket
        )
        # Sums of the closed buckets still in the window, newest first, one entry per non-empty bucket:
        # each suffix minus the current bucket. Rebuilt only when the window rolls or a late post lands,
        # so judging every suffix after each post is a short loop over tuples.
        self._closed: list[tuple[int, int, float, float]] = []
        self._pool_n = 0
        self._pool_total = 0.0
        self._pool_squares = 0.0

    # -- the baseline ------------------------------------------------------------------------------

    @property
    def baseline_mean(self) -> float:
        return self.level.mean

    @property
    def baseline_sigma(self) -> float:
        """The learned per-post spread, floored."""
        return max(math.sqrt(max(self.spread.mean, 0.0)), SPREAD_FLOOR)

    def _update_warm(self) -> None:
        cfg = self.config
        self.warmed_up = self.level.n >= cfg.warmup_buckets and self.posts_learned >= cfg.min_posts

    def _learn(self, closed: list[_Bucket]) -> None:
        for bucket in closed:
            if bucket.n == 0 or bucket.index == self.window.partial_index:
                continue
            self._pool_n += bucket.n
            self._pool_total += bucket.total
            self._pool_squares += bucket.squares
            if self._pool_n >= self.full_pool:
                self._learn_pool()

    def _learn_pool(self) -> None:
        n, total, squares = self._pool_n, self._pool_total, self._pool_squares
        self._pool_n, self._pool_total, self._pool_squares = 0, 0.0, 0.0
        mean = total / n
        anomalous = False
        clip_above = clip_below = None
        if self.warmed_up:
            # The alarm boundary for a sample of this size: anything beyond it is learned as the
            # boundary, so a collapse pulls the baseline only slowly toward itself.
            bound = max(self.config.min_shift, self.z_required * self.baseline_sigma / math.sqrt(n))
            clip_above, clip_below = self.level.mean + bound, self.level.mean - bound
            anomalous = not clip_below <= mean <= clip_above
        self.level.learn(mean, clip_above=clip_above, clip_below=clip_below)
        if n >= 2 and not anomalous:
            self.spread.learn(max(squares - total * total / n, 0.0) / (n - 1))
        self.posts_learned += n
        self._update_warm()

    # -- time and posts ----------------------------------------------------------------------------

    def _roll(self, ts: float) -> bool:
        closed = self.window.advance(ts)
        if not closed:
            return False
        self._learn(closed)
        self._sum_closed()
        return True

    def _sum_closed(self) -> None:
        sums = []
        n, total, squares = 0, 0.0, 0.0
        for bucket in reversed(self.window.buckets[:-1]):
            if bucket.n:
                n += bucket.n
                total += bucket.total
                squares += bucket.squares
                sums.append((bucket.index, n, total, squares))
        self._closed = sums

    def advance(self, ts: float) -> list[Signal]:
        if self.window.still_current(ts):
            return []
        if self._roll(ts):
            return self._evaluate(ts)  # old buckets left the window: its suffixes changed
        return []

    def observe(self, obs: Observation) -> list[Signal]:
        if obs.sentiment is None:  # unscored posts say nothing about sentiment; time still moves
            return self.advance(obs.ts)
        self._roll(obs.ts)
        bucket = self.window.bucket_for(obs.ts)
        if bucket is None:  # later than the allowed lateness
            return []
        self._fold(bucket, (obs,))
        if bucket is not self.window.buckets[-1]:
            self._sum_closed()  # a late post changed a closed bucket
        return self._evaluate(obs.ts) if self.warmed_up and self.throttle.due(obs.ts) else []

    def observe_many(self, batch: Sequence[Observation]) -> list[Signal]:
        window = self.window
        signals: list[Signal] = []
        scored_posts = 0
        # The same sums as `observe` post by post, a run of one bucket at a time (nearly always
        # the whole batch), and one judgement at the end. A late run goes one by one.
        for index, run in bucket_runs(batch, self.config.bucket):
            self._roll(run[0].ts)
            current = window.buckets[-1]
            if index != current.index:
                signals += super().observe_many(run)
                continue
            window.newest = max(window.newest, run[-1].ts)
            scored_posts += self._fold(current, run)
        if scored_posts and self.warmed_up and self.throttle.due(batch[-1].ts, scored_posts):
            signals += self._evaluate(batch[-1].ts)
        return signals

    def _fold(self, bucket: _Bucket, run: Sequence[Observation]) -> int:
        """Add a run's scored posts to `bucket`; returns how many there were."""
        facts = facts_of(run)  # summed once for the rule's window detectors
        n = facts.scored
        if not n:
            return 0
        bucket.n += n
        bucket.total += facts.total
        bucket.squares += facts.squares
        bucket.authors.add_names(facts.scored_authors)
        # Evidence by side: a drop is explained by its negative posts, a surge by its positive ones.
        if facts.negative:
            bucket.negative_posts += len(facts.negative)
            bucket.negative.add_many(facts.negative, self.examples)
        if facts.positive:
            bucket.positive_posts += len(facts.positive)
            bucket.positive.add_many(facts.positive, self.examples)
        return n

    # -- the test ----------------------------------------------------------------------------------

    def _evaluate(self, ts: float) -> list[Signal]:
        if not self.warmed_up or not self.window.buckets:
            return []
        base = self.level.mean
        min_posts, min_shift = self.config.min_posts, self.config.min_shift
        current = self.window.buckets[-1]
        cn, ct, cs = current.n, current.total, current.squares
        best: dict[str, _Finding] = {}
        # The current bucket alone once it is half through (before that, at high volume, its first
        # few dozen posts of every minute would be a fresh small sample to be fooled by), then with
        # each closed bucket behind it.
        young = ts - current.index * self.config.bucket < self.config.bucket / 2
        if not young and cn >= min_posts and abs(ct - base * cn) >= min_shift * cn:
            self._consider(best, _Suffix(current.index, cn, ct, cs), base)
        for first, closed_n, closed_total, closed_squares in self._closed:
            n, total = closed_n + cn, closed_total + ct
            # Cheap gates first: nearly every evaluation of normal traffic stops here.
            if n >= min_posts and abs(total - base * n) >= min_shift * n:
                self._consider(best, _Suffix(first, n, total, closed_squares + cs), base)
        return [signal for f in best.values() if (signal := self._fire(ts, f)) is not None]

    def _consider(self, best: dict[str, _Finding], suffix: _Suffix, base: float) -> None:
        """Keep, per kind, the significant suffix with the largest shift."""
        finding = self._judge(suffix, base)
        if finding is not None:
            held = best.get(finding.kind)
            if held is None or abs(finding.shift) > abs(held.shift):
                best[finding.kind] = finding

    def _judge(self, suffix: _Suffix, base: float) -> _Finding | None:
        shift = suffix.mean - base
        kind = DROP if shift < 0 else SURGE
        if kind == SURGE and not self.config.surge:
            return None
        # The window's own spread counts too: a split crowd (half furious, half delighted) has a far
        # less certain mean than the usual spread suggests.
        sigma = max(self.baseline_sigma, math.sqrt(suffix.variance))
        z = abs(shift) / (sigma / math.sqrt(suffix.n))
        if z < self.z_required:
            return None
        return _Finding(kind, suffix, shift, z, sigma)

    def _fire(self, ts: float, finding: _Finding) -> Signal | None:
        """Apply the cooldown: one signal per cooldown, except an escalation to a higher severity.

        The first signal of an event comes from its first seconds, mixed with the normal posts just
        before it, so it tends to understate it; without escalation a collapse first seen as "low"
        would stay "low" for the whole cooldown.
        """
        kind = finding.kind
        severity = self._severity(finding)
        cooling = ts < self.cooldown_until[kind]
        previous = self.last_signal[kind]
        if cooling and (previous is None or severity.rank <= previous[1].rank):
            return None
        if not cooling:
            self.cooldown_until[kind] = ts + self.cooldown
            previous = None
        signal = self._signal(ts, finding, severity, escalates=previous)
        self.last_signal[kind] = (signal.id, severity)
        return signal

    # -- the signal --------------------------------------------------------------------------------

    def _severity(self, finding: _Finding) -> Severity:
        size = abs(finding.shift)
        min_shift = self.config.min_shift
        if size >= 3 * min_shift or (finding.kind == DROP and finding.suffix.mean <= VERY_NEGATIVE):
            return Severity.HIGH
        if size >= 2 * min_shift:
            return Severity.MEDIUM
        return Severity.LOW

    def _signal(
        self, ts: float, finding: _Finding, severity: Severity, escalates: tuple[str, Severity] | None
    ) -> Signal:
        suffix = finding.suffix
        width = self.config.bucket
        buckets = [b for b in self.window.buckets if b.index >= suffix.first_index]
        drop = finding.kind == DROP
        tallies = [b.negative if drop else b.positive for b in buckets]
        side_posts = sum(b.negative_posts if drop else b.positive_posts for b in buckets)
        authors = DistinctCount.union(b.authors for b in buckets)
        window_start = at(suffix.first_index * width)
        window_s = ts - suffix.first_index * width
        mean, base = suffix.mean, self.level.mean
        direction = "down" if drop else "up"
        side = "negative" if drop else "positive"
        summary = (
            f"mean sentiment {mean:+.2f} over {suffix.n} posts in the last {window_s:.0f}s for rule "
            f"{self.rule!r}, {direction} from the usual {base:+.2f} "
            f"(shift {finding.shift:+.2f}, z={finding.z:.1f}; {side_posts / suffix.n:.0%} {side})"
        )
        evidence: dict[str, Any] = {
            "observed": round(mean, 3),
            "baseline": round(base, 3),
            "shift": round(finding.shift, 3),
            "z": round(finding.z, 2),
            "z_required": round(self.z_required, 2),
            "posts": suffix.n,
            "window_s": round(window_s, 1),
            "per_post_sigma": round(finding.sigma, 3),
            "baseline_sigma": round(self.baseline_sigma, 3),
            f"{side}_share": round(side_posts / suffix.n, 3),
            "distinct_authors": authors,
            "top_terms": top_terms(tallies),
            "example_uids": top_examples(tallies, self.examples),
        }
        signal_id = Signal.make_id(self.rule, finding.kind, window_start)
        if escalates is not None:
            # Often the same window as the signal it escalates: its own id keeps the outbox from
            # taking it for a repeat, and stays deterministic (window and severity).
            signal_id = Signal.make_id(self.rule, f"{finding.kind}/{severity}", window_start)
            evidence["escalates"] = escalates[0]
            summary += f"; escalated from {escalates[1]}"
        return Signal(
            id=signal_id,
            rule=self.rule,
            kind=finding.kind,
            severity=severity,
            at=at(ts),
            window_start=window_start,
            window_end=at(ts),
            observed=round(mean, 4),
            baseline=round(base, 4),
            score=round(finding.z, 2),
            summary=summary,
            evidence=evidence,
        )

    # -- persistence -------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The learned baseline and the cooldowns. The window is not kept: after a restart the time
        the daemon was down is unknown traffic, so the window starts again (its first bucket partial)."""
        return {
            "level": self.level.snapshot(),
            "spread": self.spread.snapshot(),
            "posts_learned": self.posts_learned,
            "cooldown_until": {k: v if math.isfinite(v) else None for k, v in self.cooldown_until.items()},
            "last_signal": {
                k: None if v is None else [v[0], v[1].value] for k, v in self.last_signal.items()
            },
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.level.restore(state["level"])
        self.spread.restore(state["spread"])
        self.posts_learned = int(state["posts_learned"])
        self._update_warm()
        saved = state.get("cooldown_until") or {}
        for kind in self.cooldown_until:
            until = saved.get(kind)
            self.cooldown_until[kind] = float(until) if until is not None else -math.inf
        last = state.get("last_signal") or {}
        for kind in self.last_signal:
            saved_last = last.get(kind)
            self.last_signal[kind] = None if saved_last is None else (saved_last[0], Severity(saved_last[1]))
        self._reset_window()
