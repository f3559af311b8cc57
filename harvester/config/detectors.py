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
