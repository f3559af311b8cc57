"""The configuration schema. Unknown keys are errors everywhere (`extra="forbid"`).

Source and sink entries are validated by the config class their plugin registered under its `type`
(see `harvester.config.loader`); here they are typed by their common base classes.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, field_validator, model_validator

from harvester.config.durations import Duration
from harvester.queues import FullPolicy

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PluginConfig(Strict):
    """Common keys of every source and sink entry."""

    type: str
    name: str | None = Field(default=None, pattern=NAME_PATTERN)

    @property
    def instance_name(self) -> str:
        return self.name or self.type


class SourceConfig(PluginConfig):
    pass


class SinkConfig(PluginConfig):
    min_severity: Literal["info", "low", "medium", "high", "critical"] = "info"


class LogConfig(Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class InboxConfig(Strict):
    capacity: PositiveInt = 10_000
    when_full: FullPolicy = FullPolicy.BLOCK


class DedupConfig(Strict):
    capacity: PositiveInt = 200_000
    ttl: Duration = 86_400.0


class StoreConfig(Strict):
    path: Path | None = None  # default: <state_dir>/harvester.db
    posts: Literal["all", "matched", "none"] = "all"
    post_retention: Duration = 7 * 86_400.0
    batch_max_posts: PositiveInt = 500
    batch_max_delay: Duration = 0.1
    prune_interval: Duration = 600.0
    snapshot_interval: Duration = 60.0


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


class EngineConfig(Strict):
    # auto: event time when every source replays recorded or simulated time, wall time otherwise.
    clock: Literal["auto", "wall", "event"] = "auto"
    # Processes scoring sentiment beside the event loop; "auto" = 1 on a machine with 2+ cores, else 0
    # (0 scores inline on the event loop's thread).
    sentiment_workers: Literal["auto"] | Annotated[int, Field(ge=0, le=16)] = "auto"
    volume_spike: VolumeSpikeConfig = VolumeSpikeConfig()
    example_posts: PositiveInt = 3


class RuleConfig(Strict):
    """One thing the user cares about. A post matches when any pattern matches and no exclusion does."""

    name: str = Field(pattern=NAME_PATTERN)
    keywords: list[str] = []
    cashtags: list[str] = []
    regex: list[str] = []
    exclude: list[str] = []
    sources: list[str] = []
    langs: list[str] = []
    match_all: bool = False
    volume_spike: VolumeSpikeConfig | None = None

    @field_validator("keywords", "exclude")
    @classmethod
    def _non_empty_words(cls, values: list[str]) -> list[str]:
        for word in values:
            if not word.strip():
                raise ValueError("keywords cannot be empty strings")
        return values

    @field_validator("cashtags")
    @classmethod
    def _cashtag_form(cls, values: list[str]) -> list[str]:
        out = []
        for tag in values:
            bare = tag.removeprefix("$")
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9.]{0,9}", bare):
                raise ValueError(f"expected a cashtag such as $BTC, got {tag!r}")
            out.append(bare.upper())
        return out

    @field_validator("regex")
    @classmethod
    def _compiles(cls, values: list[str]) -> list[str]:
        for pattern in values:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None
        return values

    @model_validator(mode="after")
    def _has_something_to_match(self) -> RuleConfig:
        if not (self.keywords or self.cashtags or self.regex or self.match_all):
            raise ValueError("a rule needs keywords, cashtags or regex (or match_all: true)")
        return self


class AlertsConfig(Strict):
    sinks: list[SinkConfig] = []
    cooldown: Duration = 600.0
    max_attempts: PositiveInt = 12
    retry_base: Duration = 2.0
    retry_cap: Duration = 300.0


class Config(Strict):
    state_dir: Path = Path("var")
    log: LogConfig = LogConfig()
    inbox: InboxConfig = InboxConfig()
    dedup: DedupConfig = DedupConfig()
    store: StoreConfig = StoreConfig()
    engine: EngineConfig = EngineConfig()
    sources: list[SourceConfig] = []
    rules: list[RuleConfig] = []
    rules_file: Path | None = None
    alerts: AlertsConfig = AlertsConfig()
    stats_interval: Duration = 10.0
    shutdown_timeout: Duration = Field(default=10.0, gt=0)

    @property
    def db_path(self) -> Path:
        return self.store.path or self.state_dir / "harvester.db"

    @model_validator(mode="after")
    def _unique_names(self) -> Config:
        for what, names in (
            ("sources", [s.instance_name for s in self.sources]),
            ("rules", [r.name for r in self.rules]),
            ("alerts.sinks", [s.instance_name for s in self.alerts.sinks]),
        ):
            seen: set[str] = set()
            for name in names:
                if name in seen:
                    raise ValueError(f"{what}: the name {name!r} is used twice; give each entry its own name")
                seen.add(name)
        return self
