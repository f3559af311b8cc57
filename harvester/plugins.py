"""The registries of sources and sinks, and the import of every built-in plugin module.

Each plugin module calls `SOURCES.register(...)` / `SINKS.register(...)` at import; importing them all
here is the one place that has to know the list.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from harvester.registry import Registry

if TYPE_CHECKING:
    from harvester.alerts.sinks.base import Sink
    from harvester.sources.base import Source

SOURCES: Registry[Source] = Registry("source")
SINKS: Registry[Sink] = Registry("sink")

BUILTIN_PLUGIN_MODULES = (
    "harvester.sources.synthetic",
    "harvester.sources.replay",
    "harvester.sources.twitter",
    "harvester.sources.reddit",
    "harvester.sources.discord",
    "harvester.alerts.sinks.log",
    "harvester.alerts.sinks.webhook",
    "harvester.alerts.sinks.slack",
    "harvester.alerts.sinks.discord",
    "harvester.alerts.sinks.telegram",
    "harvester.alerts.sinks.email",
    "harvester.alerts.sinks.alertmanager",
    "harvester.alerts.sinks.apprise",
)


def load_builtin_plugins() -> None:
    for module in BUILTIN_PLUGIN_MODULES:
        importlib.import_module(module)


load_builtin_plugins()
