"""Crisis: a volume spike, negative sentiment and crisis vocabulary together -> one critical signal.

Each part alone is common (a product launch spikes, a rainy Monday is grumpy, "down" is an everyday
word); together they are the pattern of an outage, a recall or a breach, which is why the composite is
the one signal that goes out as critical.

The detector keeps its own short window over the last `within` seconds (fine buckets: counts, scored
posts, sentiment sum, posts with a crisis term, the crisis terms' counts, bounded authors and examples).
The engine hands it every other signal of its rule through `note_signal`; a `volume_spike` is
remembered for `within` seconds. While one is remembered, the window is judged from the newest
bucket back to where the spike's window began, by suffixes (the newest bucket once it is half
through, the newest two, ...), each needing `MIN_POSTS` posts: mean sentiment <= `max_sentiment`
and crisis-term share >= `min_crisis_share`. Judging the whole quarter-hour at once would let the
calm before the surge dilute it: a 10x crisis needs nearly two minutes to outweigh fifteen calm
ones, and even from the spike's own window start (4-5 minutes back) about forty seconds; its
newest buckets show it at once. The condition is checked when a post arrives, when a spike is
noted and when buckets close, and after posts (every 8th post or second, whichever comes first: see
`Throttle`); the signal reports the longest suffix that meets it (the crisis as far back as it is
visible). After a signal the cooldown holds. With no spike remembered, a post
costs a few counter updates and no check.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from harvester.config.detectors import CrisisConfig
from harvester.engine.detectors.base import (
    MIN_COOLDOWN_S,
    Observation,
    RuleDetector,
    Throttle,
    at,
    shared_vocabulary,
)
from harvester.engine.detectors.batch import facts_of
from harvester.engine.detectors.evidence import DistinctCount, Tally, top_examples, top_terms
from harvester.engine.windows import BucketWindow, bucket_runs
from harvester.models import Severity, Signal

KIND: Final = "crisis"
SPIKE_KIND: Final = "volume_spike"
# The `within` window is cut into this many buckets: fine enough to start judging close to where
# the spike's window began, few enough that memory per rule stays small.
WINDOW_BUCKETS = 30
# No verdict on a handful of posts, whatever the volume detector said: some crisis terms are everyday
# words ("down", "fine", "lost"), and ten posts of a cheerful launch can hold two of them by chance.
MIN_POSTS = 20


@dataclass(slots=True)
class _Bucket:
    index: int
    posts: int = 0
    scored: int = 0
    sentiment_sum: float = 0.0
    crisis_posts: int = 0
    crisis_terms: dict[str, int] = field(default_factory=dict)  # only configured terms: bounded
    authors: DistinctCount = field(default_factory=DistinctCount)
    evidence: Tally = field(default_factory=Tally)  # the posts with a crisis term


@dataclass(frozen=True, slots=True)
class _Totals:
    """Sums over a run of buckets starting at bucket `first`."""

    first: int
    posts: int
    scored: int
    sentiment_sum: float
    crisis_posts: int


@dataclass(frozen=True, slots=True)
class _Spike:
    at: float
    window_start: float
    observed: float
    baseline: float
    score: float
    signal_id: str


class CrisisDetector(RuleDetector):
    kind = KIND
    batched = True

    def __init__(self, rule: str, config: CrisisConfig, examples: int = 3) -> None:
        super().__init__(rule)
        self.config = config
        self.examples = examples
        self.cooldown = max(config.cooldown, MIN_COOLDOWN_S)
        self.crisis_terms = shared_vocabulary(frozenset(term.lower() for term in config.crisis_terms))
        self.throttle = Throttle()
        self.width = config.within / WINDOW_BUCKETS
        self.spike: _Spike | None = None
        self.cooldown_until = -math.inf
        self._reset_window()

    def _reset_window(self) -> None:
        self.window: BucketWindow[_Bucket] = BucketWindow(
            self.width, WINDOW_BUCKETS, _Bucket, lateness=self.width
        )
        # Where judging starts: the bucket of the remembered spike's window start (none: nothing is).
        self._span_first: float = math.inf
        # Cumulative sums of the closed buckets in the span, newest first, as plain tuples (first index,
        # posts, scored, sentiment sum, crisis posts): each suffix minus the current bucket. Rebuilt
        # when the window rolls, a spike is noted or a late post lands.
        self._closed: list[tuple[int, int, int, float, int]] = []

    # -- the judged span ---------------------------------------------------------------------------

    def _live_spike(self, ts: float) -> _Spike | None:
        """The remembered spike if it is recent enough to count; an older one is forgotten."""
        spike = self.spike
        if spike is not None and ts - spike.at > self.config.within:
            self.spike = spike = None
            self._span_first = math.inf
            self._closed = []
        return spike

    def _sum_closed(self) -> None:
        sums = []
        posts = scored = crisis_posts = 0
        sentiment_sum = 0.0
        for bucket in reversed(self.window.buckets[:-1]):
            if bucket.index < self._span_first:
                break
            if bucket.posts:
                posts += bucket.posts
                scored += bucket.scored
                sentiment_sum += bucket.sentiment_sum
                crisis_posts += bucket.crisis_posts
                sums.append((bucket.index, posts, scored, sentiment_sum, crisis_posts))
        self._closed = sums

    def _roll(self, ts: float) -> bool:
        if self.window.advance(ts):
            self._live_spike(ts)
            self._sum_closed()
            return True
        return False

    # -- inputs ------------------------------------------------------------------------------------

    def observe(self, obs: Observation) -> list[Signal]:
        ts = obs.ts
        self._roll(ts)
        bucket = self.window.bucket_for(ts)
        if bucket is None:
            return []
        self._fold(bucket, (obs,))
        if self.spike is None:
            return []
        if bucket is not self.window.buckets[-1]:
            self._sum_closed()  # a late post changed a closed bucket
        return self._check(ts) if self.throttle.due(ts) else []

    def observe_many(self, batch: Sequence[Observation]) -> list[Signal]:
        window = self.window
        signals: list[Signal] = []
        # As `observe`, post by post, but a run of one bucket at a time (nearly always the whole
        # batch) and one check at the end. A late run goes one by one.
        for index, run in bucket_runs(batch, self.width):
            self._roll(run[0].ts)
            current = window.buckets[-1]
            if index != current.index:
                signals += super().observe_many(run)
                continue
            window.newest = max(window.newest, run[-1].ts)
            self._fold(current, run)
        if self.spike is not None and self.throttle.due(batch[-1].ts, len(batch)):
            signals += self._check(batch[-1].ts)
        return signals

    def _fold(self, bucket: _Bucket, run: Sequence[Observation]) -> None:
        facts = facts_of(run)  # summed once for the rule's window detectors
        with_terms: list[Observation] = []
        vocabulary = self.crisis_terms
        counts = bucket.crisis_terms
        for obs in run:
            found = obs.found(vocabulary)  # worked out once per post for every rule it matched
            if found:
                with_terms.append(obs)
                for term in found:
                    counts[term] = counts.get(term, 0) + 1
        bucket.posts += len(run)
        bucket.scored += facts.scored
        bucket.sentiment_sum += facts.total
        bucket.authors.add_names(facts.authors)
        if with_terms:
            bucket.crisis_posts += len(with_terms)
            bucket.evidence.add_many(with_terms, self.examples)

    def note_signal(self, signal: Signal) -> list[Signal]:
        """Another detector's signal for this rule; a volume spike arms the composite."""
        if signal.kind != SPIKE_KIND or signal.rule != self.rule:
            return []
        ts = signal.at.timestamp()
        self._roll(ts)
        start = min(signal.window_start.timestamp(), ts)
        self.spike = _Spike(ts, start, signal.observed, signal.baseline, signal.score, signal.id)
        self._span_first = self.window.index_of(start)
        self._sum_closed()
        return self._check(ts)

    def advance(self, ts: float) -> list[Signal]:
        if self.window.still_current(ts):
            return []
        if self._roll(ts) and self.spike is not None:
            return self._check(ts)
        return []

    # -- the verdict -------------------------------------------------------------------------------

    def _check(self, ts: float) -> list[Signal]:
        spike = self._live_spike(ts)
        if spike is None or ts < self.cooldown_until:
            return []
        current = self.window.buckets[-1]
        if current.index < self._span_first:
            return []
        max_sentiment, min_share = self.config.max_sentiment, self.config.min_crisis_share
        cp, cs, csum, cc = current.posts, current.scored, current.sentiment_sum, current.crisis_posts
        suffixes = list(reversed(self._closed))
        # The newest bucket alone only once it is half through: the first few posts of every bucket
        # would otherwise be a fresh small sample to be fooled by.
        if ts - current.index * self.width >= self.width / 2:
            suffixes.append((current.index, 0, 0, 0.0, 0))
        met: _Totals | None = None
        # Longest suffix first: the first one that meets the condition is the one to report.
        for first, closed_posts, closed_scored, closed_sum, closed_crisis in suffixes:
            posts, scored = closed_posts + cp, closed_scored + cs
            sentiment_sum, crisis_posts = closed_sum + csum, closed_crisis + cc
            if (
                posts >= MIN_POSTS
                and scored
                and sentiment_sum <= max_sentiment * scored
                and crisis_posts >= min_share * posts
            ):
                met = _Totals(first, posts, scored, sentiment_sum, crisis_posts)
                break
        if met is None:
            return []
        self.cooldown_until = ts + self.cooldown
        return [self._signal(ts, spike, met)]

    def _signal(self, ts: float, spike: _Spike, met: _Totals) -> Signal:
        mean = met.sentiment_sum / met.scored
        share = met.crisis_posts / met.posts
        span = [b for b in self.window.buckets if b.index >= met.first]
        start_ts = max(met.first * self.width, spike.window_start)
        window_start = at(start_ts)
        found: dict[str, int] = {}
        for bucket in span:
            for term, n in bucket.crisis_terms.items():
                found[term] = found.get(term, 0) + n
        authors = DistinctCount.union(b.authors for b in span)
        terms = sorted(found.items(), key=lambda item: (-item[1], item[0]))
        tallies = [b.evidence for b in span]
        named = ", ".join(f"{term} {n}" for term, n in terms[:5])
        summary = (
            f"crisis for rule {self.rule!r}: {spike.observed:g} posts against the usual "
            f"{spike.baseline:g} (z={spike.score:.1f}), mean sentiment {mean:+.2f}, "
            f"{share:.0%} of {met.posts} posts mention crisis terms ({named})"
        )
        evidence: dict[str, Any] = {
            "spike_observed": spike.observed,
            "spike_baseline": spike.baseline,
            "spike_score": spike.score,
            "spike_signal_id": spike.signal_id,
            "spike_at": at(spike.at).isoformat(),
            "mean_sentiment": round(mean, 3),
            "max_sentiment": self.config.max_sentiment,
            "crisis_share": round(share, 3),
            "min_crisis_share": self.config.min_crisis_share,
            "posts": met.posts,
            "crisis_posts": met.crisis_posts,
            "window_s": round(ts - start_ts, 1),
            "crisis_terms": [[term, n] for term, n in terms],
            "distinct_authors": authors,
            "top_terms": top_terms(tallies),
            "example_uids": top_examples(tallies, self.examples),
        }
        return Signal(
            id=Signal.make_id(self.rule, KIND, window_start),
            rule=self.rule,
            kind=KIND,
            severity=Severity.CRITICAL,
            at=at(ts),
            window_start=window_start,
            window_end=at(ts),
            observed=spike.observed,
            baseline=spike.baseline,
            score=spike.score,
            summary=summary,
            evidence=evidence,
        )

    # -- persistence -------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The cooldown and the remembered spike. The window is not kept: the downtime is unknown."""
        spike = self.spike
        return {
            "cooldown_until": self.cooldown_until if math.isfinite(self.cooldown_until) else None,
            "spike": None
            if spike is None
            else {
                "at": spike.at,
                "window_start": spike.window_start,
                "observed": spike.observed,
                "baseline": spike.baseline,
                "score": spike.score,
                "signal_id": spike.signal_id,
            },
        }

    def restore(self, state: dict[str, Any]) -> None:
        until = state.get("cooldown_until")
        self.cooldown_until = float(until) if until is not None else -math.inf
        self._reset_window()
        saved = state.get("spike")
        self.spike = None
        if saved is not None:
            self.spike = _Spike(
                float(saved["at"]),
                float(saved["window_start"]),
                float(saved["observed"]),
                float(saved["baseline"]),
                float(saved["score"]),
                str(saved["signal_id"]),
            )
            self._span_first = self.window.index_of(self.spike.window_start)
