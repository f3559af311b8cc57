"""The `log` sink: alerts as structured log lines (stdout; journald under systemd). Never fails."""

from __future__ import annotations

from typing import Literal

import structlog

from harvester.alerts.notification import as_notification
from harvester.alerts.sinks.base import Sink
from harvester.config.schema import SinkConfig
from harvester.models import Alert
from harvester.plugins import SINKS

log = structlog.get_logger("harvester.alert")


class LogSinkConfig(SinkConfig):
    type: Literal["log"] = "log"


class LogSink(Sink):
    config_class = LogSinkConfig

    async def send(self, alert: Alert) -> None:
        note = as_notification(alert)
        signal = note.signal
        log.warning(
            f"ALERT [{signal.severity.value}] {signal.summary}",
            rule=signal.rule,
            kind=signal.kind,
            severity=signal.severity.value,
            signal_id=signal.id,
            key=note.key,
            grouped=len(note.signals),
            examples=[f"@{e.author}: {e.text[:80]}" for e in note.examples]
            or signal.evidence.get("example_uids", []),
        )


SINKS.register("log", LogSinkConfig, LogSink)
