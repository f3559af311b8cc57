"""The comparison baseline: a mean + 3 sigma peak detector, as in Huginn's PeakDetectorAgent.

This is the common open-source way to alarm on volume, and what harvester's own volume detector is
measured against in `harvester replay --compare`; it is not used by the daemon. Its definition, kept
deliberately plain so the comparison is fair to it and not to a straw man:

* a rule's matched posts are counted in fixed buckets (the width of the rule's `volume_spike.bucket`);
* the baseline is the plain mean and population standard deviation of the last `window_buckets`
  closed buckets (empty buckets count as zero); nothing is learned about time of day or week;
* it alarms when the newest count exceeds mean + `sigmas` x sigma. The newest count is that of the open
  bucket, checked on every post, so the alarm comes the moment the count crosses the line and not
  when the bucket closes (the most favourable reading of "the newest value" for detection delay);
* past spikes stay in the window and raise mean and sigma for as long as they are in it, so a second
  spike soon after a first one is harder to see (harvester's detector clips them instead);
* no alarm before `warmup_buckets` buckets were seen, nor during `cooldown` after one (Huginn's
  minimum peak spacing), and at most one per bucket.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from harvester.config.schema import RuleConfig, VolumeSpikeConfig
from harvester.models import Severity, Signal

KIND = "peak_baseline"
DEFAULT_WINDOW = 3600.0  # seconds of buckets the mean and sigma are taken over
DEFAULT_SIGMAS = 3.0


def _at(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


class PeakDetector:
    """One rule's counts and the mean + k sigma test on them. Pure: the caller passes event time."""

    def __init__(
        self,
        rule: str,
        *,
        bucket: float,
        window_buckets: int,
        sigmas: float = DEFAULT_SIGMAS,
        warmup_buckets: int = 4,
        cooldown: float = 0.0,
    ) -> None:
        if bucket <= 0 or window_buckets < 2 or warmup_buckets < 1:
            raise ValueError("bucket must be positive, window_buckets at least 2, warmup_buckets at least 1")
        self.rule = rule
        self.bucket = bucket
        self.sigmas = sigmas
        self.warmup_buckets = min(warmup_buckets, window_buckets)
        self.cooldown = cooldown
        self.window: deque[int] = deque(maxlen=window_buckets)  # closed buckets, oldest first
        self.index: int | None = None  # the open bucket
        self.count = 0  # posts in the open bucket
        self.mean = 0.0
        self.sigma = 0.0
        self.cooldown_until = -math.inf
        self._fired_in: int | None = None

    @property
    def threshold(self) -> float | None:
        """The count the open bucket must exceed to alarm; None while warming up."""
        if len(self.window) < self.warmup_buckets:
            return None
        return self.mean + self.sigmas * self.sigma

    def advance(self, ts: float) -> None:
        """Close every bucket that ended at or before `ts`; buckets with no posts close as zeros."""
        index = math.floor(ts / self.bucket)
        if self.index is None:
            self.index = index
            return
        if index <= self.index:
            return
        self.window.append(self.count)
        # A long silence fills the window with zeros; more than a window of them changes nothing.
        for _ in range(min(index - self.index - 1, self.window.maxlen or 0)):
            self.window.append(0)
        self.index, self.count = index, 0
        self._update_stats()

    def _update_stats(self) -> None:
        # Once per closed bucket, not per post: the window only changes here.
        n = len(self.window)
        self.mean = sum(self.window) / n
        self.sigma = math.sqrt(sum((c - self.mean) ** 2 for c in self.window) / n)

    def add(self, ts: float, count: int = 1) -> Signal | None:
        """Count `count` posts at `ts`; a signal when the open bucket just crossed the threshold."""
        self.advance(ts)
        self.count += count
        threshold = self.threshold
        if (
            threshold is None
            or self.count <= threshold
            or ts < self.cooldown_until
            or self._fired_in == self.index
        ):
            return None
        self._fired_in = self.index
        self.cooldown_until = ts + self.cooldown
        return self._signal(ts, threshold)

    def _signal(self, ts: float, threshold: float) -> Signal:
        assert self.index is not None
        bucket_start = self.index * self.bucket
        window_start = bucket_start - len(self.window) * self.bucket
        excess = self.count - self.mean
        # Standard deviations above the mean; with a flat window (sigma 0) the excess itself.
        score = excess / self.sigma if self.sigma > 0 else excess
        return Signal(
            id=Signal.make_id(self.rule, KIND, _at(bucket_start)),
            rule=self.rule,
            kind=KIND,
            severity=Severity.MEDIUM,
            at=_at(ts),
            window_start=_at(window_start),
            window_end=_at(bucket_start + self.bucket),
            observed=float(self.count),
            baseline=self.mean,
            score=score,
            summary=(
                f"{self.count} posts in the current {self.bucket:g}s bucket > mean {self.mean:.1f} + "
                f"{self.sigmas:g} sigma ({threshold:.1f}) of the last {len(self.window)} buckets"
            ),
            evidence={"sigma": self.sigma, "threshold": threshold, "window_buckets": len(self.window)},
        )


class PeakBaseline:
    """A `PeakDetector` per rule, fed with the names of the rules each post matched."""

    def __init__(self, detectors: Iterable[PeakDetector]) -> None:
        self.detectors = {detector.rule: detector for detector in detectors}

    @classmethod
    def for_rules(
        cls,
        rules: Sequence[RuleConfig],
        defaults: VolumeSpikeConfig,
        *,
        window: float = DEFAULT_WINDOW,
        sigmas: float = DEFAULT_SIGMAS,
        cooldown: float | None = None,
    ) -> PeakBaseline:
        """One detector per rule with volume alarms enabled, on the same buckets, warm-up and (unless
        `cooldown` is given) cooldown as harvester's volume detector for that rule, so the two start
        learning together and repeat themselves as often."""
        detectors = []
        for rule in rules:
            spike = rule.volume_spike or defaults
            if not spike.enabled:
                continue  # the user asked for no volume alarms on this rule
            detectors.append(
                PeakDetector(
                    rule.name,
                    bucket=spike.bucket,
                    window_buckets=max(2, round(window / spike.bucket)),
                    sigmas=sigmas,
                    warmup_buckets=spike.warmup_buckets,
                    cooldown=spike.cooldown if cooldown is None else cooldown,
                )
            )
        return cls(detectors)

    def observe(self, rules: Iterable[str], ts: float) -> list[Signal]:
        """One post at `ts` that matched `rules`: count it for each; the signals it raised."""
        signals = []
        for name in rules:
            detector = self.detectors.get(name)
            if detector is not None:
                signal = detector.add(ts)
                if signal is not None:
                    signals.append(signal)
        return signals
