"""Detector settings: the engine's defaults, which each rule may override."""

from __future__ import annotations

from pydantic import Field, PositiveInt

from harvester.config.base import Strict
from harvester.config.durations import Duration


class VolumeSpikeConfig(Strict):
    """Volume against a learned baseline: counts per bucket, an EWMA of past buckets, a z-score gate."""

    enabled: bool = True
    bucket: Duration = Field(default=60.0, gt=0)
    window_buckets: PositiveInt = 5
    warmup_buckets: PositiveInt = 10
    min_count: PositiveInt = 10
    threshold: float = Field(default=4.0, gt=0)
    min_ratio: float = Field(default=2.0, ge=1.0)
    half_life_buckets: float = Field(default=30.0, gt=0)
    cooldown: Duration = 900.0


class SentimentShiftConfig(Strict):
    """A rule's mean sentiment over a short window against its learned baseline."""

    enabled: bool = True
    bucket: Duration = Field(default=60.0, gt=0)
    window_buckets: PositiveInt = 5  # the recent window compared with the baseline
    half_life_buckets: float = Field(default=60.0, gt=0)  # the baseline's memory
    warmup_buckets: PositiveInt = 10
    min_posts: PositiveInt = 20  # no verdict on fewer scored posts in the window
    threshold: float = Field(default=4.0, gt=0)  # standard errors of the window mean
    min_shift: float = Field(default=0.25, gt=0, le=2)  # and at least this change of mean compound
    surge: bool = True  # also signal sharp positive shifts
    cooldown: Duration = 900.0


class ViralConfig(Strict):
    """One post whose engagement grows fast, from successive observations or references to it."""

    enabled: bool = True
    min_engagement: PositiveInt = 500  # likes + reposts + replies (+ score) before it can be viral
    min_velocity: float = Field(default=2.0, gt=0)  # engagement gained per second between observations
    min_references: PositiveInt = 25  # or: reposts/replies/quotes of it seen in the stream within `track`
    track: Duration = 21_600.0  # how long a post is followed after it is first seen
    max_tracked: PositiveInt = 2000  # bounded memory per rule; least recently seen posts go first
    cooldown: Duration = 3600.0  # per post


class CampaignConfig(Strict):
    """Near-duplicate texts from many distinct accounts within minutes."""

    enabled: bool = True
    window: Duration = 600.0
    min_accounts: PositiveInt = 15
    max_distance: int = Field(default=6, ge=0, le=32)  # SimHash bits that may differ (of 64)
    min_chars: PositiveInt = 30  # shorter texts are too alike by chance ("gm", "lol")
    max_clusters: PositiveInt = 5000  # bounded memory per rule
    cooldown: Duration = 1800.0


class CrisisConfig(Strict):
    """Composite: a volume spike, negative sentiment and crisis vocabulary together -> critical."""

    enabled: bool = True
    within: Duration = 900.0  # a volume spike for the rule within this long
    max_sentiment: float = Field(default=-0.25, ge=-1, le=1)  # window mean compound at most this
    min_crisis_share: float = Field(default=0.2, gt=0, le=1)  # share of window posts with a crisis term
    crisis_terms: list[str] = [
        "outage", "down", "refund", "lawsuit", "sue", "recall", "hacked", "hack", "breach", "leak",
        "scam", "fraud", "boycott", "cancelled", "canceled", "delayed", "stranded", "broken", "lost",
        "stolen", "bankrupt", "layoffs", "investigation", "fine", "fined", "injured", "unsafe",
    ]  # fmt: skip
    cooldown: Duration = 3600.0


class SilenceConfig(Strict):
    """Traffic that is normally there goes quiet: one signal per gap (for rules and for sources)."""

    enabled: bool = True
    min_rate: float = Field(default=0.05, gt=0)  # posts/s the baseline must show to expect traffic
    gap_factor: float = Field(default=20.0, gt=1)  # silent after this many expected inter-arrival times
    min_gap: Duration = 300.0
    half_life: Duration = 3600.0  # memory of the usual rate


class NewCashtagConfig(Strict):
    """A cashtag not seen before rising fast (over the whole stream, not per rule)."""

    enabled: bool = True
    window: Duration = 900.0
    min_mentions: PositiveInt = 20
    min_authors: PositiveInt = 10
    known_after: PositiveInt = 50  # a cashtag with this many mentions in the past is no longer new
    warmup: Duration = 3600.0  # learn which tags are usual before calling any of them new
    max_tracked: PositiveInt = 50_000  # bounded memory: least recently seen tags are forgotten first
    cooldown: Duration = 21_600.0
