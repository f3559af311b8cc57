"""The `alertmanager` sink: POST `/api/v2/alerts`, one Alertmanager alert per signal of the group.

Teams that already run Alertmanager then get its routing, grouping, silences and receivers. Labels:
`alertname` (`harvester_<kind>`), `rule`, `kind`, `severity`, the group's labels and the sink's
`labels`; annotations carry the summary, the figures and the dashboard link. `endsAt` is `startsAt` +
`resolve_after`: our signals are events, so the alert resolves by itself.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from pydantic import Field, SecretStr

from harvester.alerts.format import build_message, dashboard_link, plain_text
from harvester.alerts.notification import Notification, as_notification
from harvester.alerts.sinks.http import HttpSink, HttpSinkConfig
from harvester.config.durations import Duration
from harvester.models import Alert, Signal
from harvester.plugins import SINKS


class AlertmanagerSinkConfig(HttpSinkConfig):
    type: Literal["alertmanager"] = "alertmanager"
    base_url: str = "http://127.0.0.1:9093"
    labels: dict[str, str] = {}
    resolve_after: Duration = Field(default=3600.0, gt=0)
    bearer_token: SecretStr | None = None


def _number(value: float) -> str:
    return f"{value:g}"


def alerts_body(note: Notification, extra: dict[str, str], resolve_after: float) -> list[dict[str, Any]]:
    lead_text = plain_text(build_message(note))
    out = []
    for signal in note.signals or (note.signal,):
        out.append(
            _one(note, signal, extra, resolve_after, lead_text if signal.id == note.signal.id else None)
        )
    return out


def _one(
    note: Notification, signal: Signal, extra: dict[str, str], resolve_after: float, description: str | None
) -> dict[str, Any]:
    # Alertmanager treats an empty label value as no label; a group_by label the signal lacks is "".
    labels = {k: v for k, v in {**extra, **note.group_labels}.items() if v}
    labels.update(
        alertname=f"harvester_{signal.kind}",
        rule=signal.rule,
        kind=signal.kind,
        severity=signal.severity.value,
    )
    annotations = {
        "summary": signal.summary,
        "observed": _number(signal.observed),
        "baseline": _number(signal.baseline),
        "score": _number(signal.score),
        "signal_id": signal.id,
    }
    if description:
        annotations["description"] = description
    link = dashboard_link(note.dashboard_url, signal.rule)
    body: dict[str, Any] = {
        "labels": labels,
        "annotations": annotations,
        "startsAt": signal.window_start.isoformat(),
        "endsAt": (signal.at + timedelta(seconds=resolve_after)).isoformat(),
    }
    if link:
        body["generatorURL"] = link
        annotations["dashboard"] = link
    return body


class AlertmanagerSink(HttpSink):
    config_class = AlertmanagerSinkConfig
    config: AlertmanagerSinkConfig

    async def send(self, alert: Alert) -> None:
        body = alerts_body(as_notification(alert), self.config.labels, self.config.resolve_after)
        headers = {}
        if self.config.bearer_token is not None:
            headers["Authorization"] = f"Bearer {self.config.bearer_token.get_secret_value()}"
        await self.post(f"{self.config.base_url.rstrip('/')}/api/v2/alerts", json_body=body, headers=headers)


SINKS.register("alertmanager", AlertmanagerSinkConfig, AlertmanagerSink)
