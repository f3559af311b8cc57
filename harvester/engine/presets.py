"""A rule's settings for one detector: the engine's defaults, the rule's own overrides, and its
sensitivity preset.

Only the keys a rule writes override the engine's defaults (so `volume_spike: {bucket: 30s}` keeps
the engine's threshold). A `sensitivity` preset sets the detector's main knob unless the rule set
that knob itself. Commercial tools offer 1.5 / 2 / 3 sigma presets against a short window; our
baselines are robust and gated by a Poisson tail, and we would rather be late by seconds than
wrong, so the presets are stricter.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from harvester.config.schema import EngineConfig, RuleConfig

# kind -> the knob a preset moves -> its value per preset
PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "volume_spike": ("threshold", {"high": 3.0, "medium": 4.0, "low": 5.0}),
    "sentiment": ("threshold", {"high": 3.0, "medium": 4.0, "low": 5.0}),
    "campaign": ("min_accounts", {"high": 8, "medium": 15, "low": 30}),
    "viral": ("min_velocity", {"high": 1.0, "medium": 2.0, "low": 5.0}),
}


def resolve_settings(kind: str, engine: EngineConfig, rule: RuleConfig) -> BaseModel | None:
    """The settings `rule` runs detector `kind` with, or None if the detector is disabled for it."""
    settings: BaseModel = getattr(engine, kind)
    override: BaseModel | None = getattr(rule, kind, None)
    explicit: set[str] = set(override.model_fields_set) if override is not None else set()
    if override is not None:
        settings = settings.model_copy(update={key: getattr(override, key) for key in explicit})
    preset = getattr(rule, "sensitivity", None)
    if preset is not None and kind in PRESETS:
        knob, values = PRESETS[kind]
        if knob not in explicit:
            settings = settings.model_copy(update={knob: values[preset]})
    return settings if getattr(settings, "enabled", True) else None
