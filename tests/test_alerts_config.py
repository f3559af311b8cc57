"""Alert config through the real loader: every sink type, routes, inhibition, silences, rate limits,
one-line errors with the key path, and secrets kept out of the error text."""

from __future__ import annotations

import pytest

import harvester.alerts.sinks.alertmanager
import harvester.alerts.sinks.apprise
import harvester.alerts.sinks.discord
import harvester.alerts.sinks.email
import harvester.alerts.sinks.slack
import harvester.alerts.sinks.telegram
import harvester.alerts.sinks.webhook  # noqa: F401 - importing a sink module registers it
from harvester.config.loader import parse_config
from harvester.errors import ConfigError

ENV = {
    "HOOK_SECRET": "hook-secret-value",
    "SLACK_URL": "https://hooks.slack.com/services/T/B/slack-secret",
    "DISCORD_URL": "https://discord.com/api/webhooks/1/discord-secret",
    "TG_TOKEN": "123:tg-secret",
    "SMTP_PASSWORD": "smtp-secret",
    "NTFY_URL": "ntfys://ntfy.sh/topic-secret",
}

FULL = """
alerts:
  group_wait: 10s
  group_interval: 2m
  cooldown: 15m
  max_age: 12h
  dashboard_url: http://127.0.0.1:8080
  labels:
    acme: {team: brand}
  sinks:
    - {type: log, name: console}
    - {type: webhook, name: hook, url: "http://127.0.0.1:9000/in", secret: "${HOOK_SECRET}"}
    - {type: slack, name: brand-slack, url: "${SLACK_URL}", rate_limit: {count: 20, per: 1m, burst: 5}}
    - {type: discord, url: "${DISCORD_URL}"}
    - {type: telegram, bot_token: "${TG_TOKEN}", chat_id: -100123, min_severity: high}
    - type: email
      host: smtp.example.com
      username: bot
      password: "${SMTP_PASSWORD}"
      from: bot@example.com
      to: [oncall@example.com]
    - {type: alertmanager, base_url: "http://127.0.0.1:9093", labels: {source: harvester}}
    - {type: apprise, urls: ["${NTFY_URL}"]}
  routes:
    - {match: {team: brand}, sinks: [brand-slack], continue: true}
    - {match: {rule: "ticker-*"}, min_severity: high, group_by: [rule, kind], sinks: [telegram]}
    - {sinks: [console, hook, discord, email, alertmanager, apprise]}
  inhibit:
    - {source: {kind: crisis}, equal: [rule], for: 30m}
  silences:
    - {match: {rule: "acme-*"}, ends_at: "2026-03-02T18:00:00Z", comment: launch}
"""


def test_every_sink_type_routes_and_silences_load() -> None:
    loaded = parse_config(FULL, "h.yaml", ENV)
    alerts = loaded.config.alerts
    assert [s.type for s in alerts.sinks] == [
        "log", "webhook", "slack", "discord", "telegram", "email", "alertmanager", "apprise",
    ]  # fmt: skip
    assert alerts.routes[0].continue_ and alerts.routes[1].group_by == ["rule", "kind"]
    assert alerts.inhibit[0].for_ == 1800 and alerts.group_wait == 10 and alerts.max_age == 43200
    assert alerts.sinks[2].rate_limit is not None and alerts.sinks[2].rate_limit.capacity == 5
    assert set(ENV.values()) <= loaded.secrets  # all redacted by the log processor
    assert "slack-secret" not in repr(alerts.sinks[2])


def test_the_default_inhibition_is_a_crisis_muting_its_rule() -> None:
    alerts = parse_config("alerts: {sinks: [{type: log}]}", "h.yaml", {}).config.alerts
    assert [(i.source, i.equal, i.for_) for i in alerts.inhibit] == [({"kind": "crisis"}, ["rule"], 1800.0)]


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("alerts: {sinks: [{type: log}], routes: [{sinks: [pager]}]}", "no sink is named 'pager'"),
        ("alerts: {sinks: [{type: log, rate_limit: {count: 0}}]}", "alerts.sinks[0].rate_limit.count"),
        ("alerts: {sinks: [{type: telegram, chat_id: 1}]}", "alerts.sinks[0].bot_token: required key"),
        ("alerts: {silences: [{match: {}}]}", "alerts.silences[0].match"),
        ("alerts: {inhibit: [{source: {kind: crisis}, for: soon}]}", "alerts.inhibit[0].for"),
        ("alerts: {routes: [{sinks: [], match: {rule: x}}]}", "alerts.routes[0].sinks"),
        (
            "alerts: {sinks: [{type: email, host: h, from: a@b, to: [c@d], username: u}]}",
            "username and password go together",
        ),
    ],
)
def test_mistakes_are_one_line_errors_with_the_key_path(yaml_text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(yaml_text, "h.yaml", {})
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_secret_in_a_bad_value_is_not_echoed() -> None:
    text = "alerts: {sinks: [{type: email, host: h, from: a@b, to: [c@d], port: '${SMTP_PASSWORD}'}]}"
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "h.yaml", ENV)
    assert "smtp-secret" not in str(caught.value)
