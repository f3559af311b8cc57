"""A name -> plugin registry shared by sources and sinks.

A plugin module registers its config class and its factory under a name; the config loader validates
each `sources[i]` / `sinks[i]` entry against the class registered for its `type`, and the app builds the
plugin from the validated config. Adding a plugin touches one module, its test and the example config.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

P = TypeVar("P")


@dataclass(frozen=True, slots=True)
class Plugin(Generic[P]):
    name: str
    config_class: type[BaseModel]
    factory: Callable[[Any], P]


class Registry(Generic[P]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._plugins: dict[str, Plugin[P]] = {}

    def register(self, name: str, config_class: type[BaseModel], factory: Callable[[Any], P]) -> None:
        if name in self._plugins:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._plugins[name] = Plugin(name, config_class, factory)

    def get(self, name: str) -> Plugin[P]:
        return self._plugins[name]

    def __contains__(self, name: object) -> bool:
        return name in self._plugins

    def names(self) -> list[str]:
        return sorted(self._plugins)

    def unregister(self, name: str) -> None:
        """Used by tests that register throwaway plugins."""
        self._plugins.pop(name, None)
