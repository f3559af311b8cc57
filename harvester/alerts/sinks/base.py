"""The contract every alert sink implements.

A sink is a config class (subclass of `SinkConfig`) plus a `Sink` subclass registered by name in
`harvester.plugins.SINKS`. `send(alert)` delivers one alert or raises `SinkError` (with `retry_after`
when the server said when to come back, `permanent=True` when retrying cannot help). The outbox
dispatcher owns retries, backoff and dead-lettering; a sink only makes one attempt.

The dispatcher passes a `harvester.alerts.notification.Notification`, an `Alert` that also carries
the rest of its routing group and the example posts; `harvester.alerts.format.build_message` turns
either into the content every built-in sink shows. `alert.key` is the idempotency key: a sink whose
platform accepts one sends it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from harvester.config.schema import SinkConfig
from harvester.models import Alert


class Sink(ABC):
    config_class: ClassVar[type[SinkConfig]]

    def __init__(self, config: SinkConfig) -> None:
        self.config = config
        self.name = config.instance_name

    async def start(self) -> None:
        """Open sessions or connections. Called once before the first `send`."""

    async def close(self) -> None:
        """Release what `start` opened."""

    @abstractmethod
    async def send(self, alert: Alert) -> None:
        """Deliver one alert, or raise `SinkError`."""
