"""Signals and notifications for the sink and router tests, including hostile text."""

from __future__ import annotations

from datetime import timedelta

from harvester.alerts.notification import ExamplePost, Notification
from harvester.models import Severity, Signal
from tests.helpers import T0

# Markup, HTML, mentions and every MarkdownV2 special character, in one line.
HOSTILE = "*bold* _it_ [x](http://evil) <!channel> <@U123> @everyone @here <b>&amp;</b> ~`>#+-=|{}.!\\ end"


def make_signal(
    n: int = 1,
    rule: str = "acme",
    kind: str = "volume_spike",
    severity: Severity = Severity.HIGH,
    summary: str | None = None,
    examples: list[str] | None = None,
) -> Signal:
    start = T0 + timedelta(minutes=n)
    return Signal(
        id=Signal.make_id(rule, kind, start),
        rule=rule,
        kind=kind,
        severity=severity,
        at=start + timedelta(seconds=30),
        window_start=start,
        window_end=start + timedelta(seconds=30),
        observed=50,
        baseline=5.5,
        score=9.25,
        summary=summary or f"{kind} {n} for {rule}",
        evidence={"example_uids": examples or [], "top_terms": [["outage", 12], ["refund", 4]]},
    )


def hostile_notification(sink: str = "sink", dashboard: str | None = "http://127.0.0.1:8080") -> Notification:
    lead = make_signal(1, rule="acme", kind="crisis", severity=Severity.CRITICAL, summary=HOSTILE)
    other = make_signal(2, rule="acme", summary="spike " + HOSTILE)
    return Notification(
        key=f"{lead.id}:{sink}",
        sink=sink,
        signal=lead,
        created_at=T0,
        signals=(lead, other),
        group_labels={"rule": "acme"},
        examples=(
            ExamplePost("x:1", "@everyone", HOSTILE, "https://example.com/p/1?a=(b)", "x"),
            ExamplePost("x:2", "bob_<b>", "plain text", "javascript:alert(1)", "x"),
        ),
        dashboard_url=dashboard,
    )
