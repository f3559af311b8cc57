"""Configuration: schema, duration parsing and the loader."""

from harvester.config.durations import Duration, parse_duration
from harvester.config.loader import LoadedConfig, load_config, parse_config
from harvester.config.schema import (
    Config,
    PluginConfig,
    RuleConfig,
    SinkConfig,
    SourceConfig,
    VolumeSpikeConfig,
)

__all__ = [
    "Config",
    "Duration",
    "LoadedConfig",
    "PluginConfig",
    "RuleConfig",
    "SinkConfig",
    "SourceConfig",
    "VolumeSpikeConfig",
    "load_config",
    "parse_config",
    "parse_duration",
]
