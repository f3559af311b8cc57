"""Config of alert routing: routes, inhibition rules, silences and per-sink rate limits.

Matchers are `{label: pattern}` mappings over a signal's labels (`rule`, `kind`, `severity`, plus the
labels `alerts.labels` attaches to a rule). A pattern is a shell glob (`acme-*`), matched against the
whole value; a label the signal does not have never matches.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, PositiveInt, field_validator, model_validator

from harvester.config.base import NAME_PATTERN, Strict
from harvester.config.durations import Duration

SeverityName = Literal["info", "low", "medium", "high", "critical"]
LabelName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]
Matchers = dict[LabelName, str]


class RateLimitConfig(Strict):
    """A token bucket per sink: `count` messages per `per`, bursts of up to `burst` (default `count`)."""

    count: PositiveInt
    per: Duration = 60.0
    burst: PositiveInt | None = None

    @field_validator("per")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be longer than 0s")
        return value

    @property
    def capacity(self) -> int:
        return self.burst or self.count

    @property
    def refill_per_second(self) -> float:
        return self.count / self.per


class RouteConfig(Strict):
    """Signals that match go to `sinks`, grouped by the values of `group_by`.

    Routes are tried in order; the first that matches wins unless it says `continue: true`. Unset timing
    keys take the `alerts.*` defaults.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str | None = Field(default=None, pattern=NAME_PATTERN)
    match: Matchers = {}
    min_severity: SeverityName = "info"
    sinks: list[str] = Field(min_length=1)
    group_by: list[LabelName] | None = None
    group_wait: Duration | None = None
    group_interval: Duration | None = None
    repeat_interval: Duration | None = None
    continue_: bool = Field(default=False, alias="continue")


class InhibitConfig(Strict):
    """While a signal matching `source` is active (`for` after it fired), signals matching `target` with
    the same values of the `equal` labels are muted; with `only_lower`, only those of lower severity."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    source: Matchers = Field(min_length=1)
    target: Matchers = {}
    equal: list[LabelName] = ["rule"]
    for_: Duration = Field(default=1800.0, alias="for")
    only_lower: bool = True


class SilenceEntryConfig(Strict):
    """A silence declared in the config: signals matching `match` between `starts_at` and `ends_at`
    (both optional: from now, forever) are stored but not alerted."""

    match: Matchers = Field(min_length=1)
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    comment: str = ""

    @model_validator(mode="after")
    def _ordered(self) -> SilenceEntryConfig:
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be later than starts_at")
        return self


def default_inhibit() -> list[InhibitConfig]:
    # A crisis is the rule's loudest signal: its spike, sentiment and campaign alerts say less and arrive
    # around the same time, so while it is active they would only add noise.
    return [InhibitConfig.model_validate({"source": {"kind": "crisis"}, "equal": ["rule"], "for": 1800.0})]
