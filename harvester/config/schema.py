"""The configuration schema. Unknown keys are errors everywhere (`extra="forbid"`).

Source and sink entries are validated by the config class their plugin registered under its `type`
(see `harvester.config.loader`); here they are typed by their common base classes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, PositiveInt, field_validator, model_validator

from harvester.config.alerts import (
    InhibitConfig,
    RateLimitConfig,
    RouteConfig,
    SilenceEntryConfig,
    default_inhibit,
)
from harvester.config.base import NAME_PATTERN, Strict
from harvester.config.detectors import (
    CampaignConfig,
    CrisisConfig,
    NewCashtagConfig,
    SentimentShiftConfig,
    SilenceConfig,
    ViralConfig,
    VolumeSpikeConfig,
)
from harvester.config.durations import Duration
from harvester.config.rules import RuleConfig
from harvester.config.web import WebConfig
from harvester.queues import FullPolicy

# The schema's public face: rules and detector settings live in their own modules.
__all__ = [
    "NAME_PATTERN",
    "AlertsConfig",
    "CampaignConfig",
    "Config",
    "CrisisConfig",
    "DedupConfig",
    "EngineConfig",
    "InboxConfig",
    "LogConfig",
    "NewCashtagConfig",
    "PluginConfig",
    "RuleConfig",
    "SentimentShiftConfig",
    "SilenceConfig",
    "SinkConfig",
    "SourceConfig",
    "StoreConfig",
    "Strict",
    "ViralConfig",
    "VolumeSpikeConfig",
    "WebConfig",
]


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
    rate_limit: RateLimitConfig | None = None


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


class EngineConfig(Strict):
    # auto: event time when every source replays recorded or simulated time, wall time otherwise.
    clock: Literal["auto", "wall", "event"] = "auto"
    # Processes scoring sentiment beside the event loop; "auto" = 1 on a machine with 2+ cores, else 0
    # (0 scores inline on the event loop's thread).
    sentiment_workers: Literal["auto"] | Annotated[int, Field(ge=0, le=16)] = "auto"
    # Default settings of each detector; a rule can override them (see RuleConfig).
    volume_spike: VolumeSpikeConfig = VolumeSpikeConfig()
    sentiment: SentimentShiftConfig = SentimentShiftConfig()
    viral: ViralConfig = ViralConfig()
    campaign: CampaignConfig = CampaignConfig()
    crisis: CrisisConfig = CrisisConfig()
    silence: SilenceConfig = SilenceConfig()
    # Over the whole stream rather than per rule:
    new_cashtag: NewCashtagConfig = NewCashtagConfig()
    source_silence: SilenceConfig = SilenceConfig()
    lateness: Duration = 60.0  # how late (in event time) a post may arrive and still count in its window
    example_posts: PositiveInt = 3
    # A TSV of extra sentiment words (word, score on VADER's -4..+4 scale, why), on top of the built-in
    # trading and brand-crisis lexicon.
    lexicon_file: Path | None = None

    @field_validator("lexicon_file")
    @classmethod
    def _lexicon_readable(cls, path: Path | None) -> Path | None:
        if path is not None:
            from harvester.engine.sentiment import read_lexicon_file  # noqa: PLC0415 - config must not import the engine at load

            read_lexicon_file(path)  # raises ValueError naming the file and line: a one-line config error
        return path


class AlertsConfig(Strict):
    """Routing (see `harvester.config.alerts`) and delivery of alerts."""

    sinks: list[SinkConfig] = []
    # No routes: every signal goes to every sink whose min_severity it reaches, grouped by rule.
    routes: list[RouteConfig] = []
    group_by: list[str] = ["rule"]
    group_wait: Duration = 5.0
    group_interval: Duration = 60.0
    # After a rule and kind alerted through a group, further such signals are stored, not alerted, for
    # this long (a route's `repeat_interval` overrides it).
    cooldown: Duration = 600.0
    inhibit: list[InhibitConfig] = Field(default_factory=default_inhibit)
    silences: list[SilenceEntryConfig] = []
    # Extra labels per rule name, for routes, silences and Alertmanager: {acme: {team: brand}}.
    labels: dict[str, dict[str, str]] = {}
    dashboard_url: str | None = None
    max_attempts: PositiveInt = 12
    max_age: Duration = 86_400.0
    retry_base: Duration = 2.0
    retry_cap: Duration = 300.0
    poll_interval: Duration = Field(default=5.0, gt=0)

    @model_validator(mode="after")
    def _routes_name_sinks(self) -> AlertsConfig:
        known = {s.instance_name for s in self.sinks}
        for index, route in enumerate(self.routes):
            for name in route.sinks:
                if name not in known:
                    names = ", ".join(sorted(known)) or "none"
                    raise ValueError(f"routes[{index}].sinks: no sink is named {name!r} (sinks: {names})")
        return self


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
    web: WebConfig = WebConfig()
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
