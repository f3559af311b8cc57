"""The `slack` sink: an incoming webhook with a Block Kit message.

Layout: a coloured attachment (severity colour) holding a header (the title), the summary, the figures
as fields (observed vs baseline, score, start), top terms, the example posts with links, and a button
to the dashboard. `text` is the notification fallback. Every piece of post or rule text goes through
`escape_slack`, so `<!channel>` or `<@U…>` in a post is shown, not executed.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import SecretStr

from harvester.alerts.format import Message, build_message, escape_slack, slack_link
from harvester.alerts.sinks.http import HttpSink, HttpSinkConfig
from harvester.models import Alert
from harvester.plugins import SINKS

HEADER_CHARS = 150  # Slack's limit for a header block
SECTION_CHARS = 3000  # and for a section's text


class SlackSinkConfig(HttpSinkConfig):
    type: Literal["slack"] = "slack"
    url: SecretStr  # the incoming-webhook URL is itself the credential


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def blocks(message: Message) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _cut(message.title, HEADER_CHARS)}},
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": _cut(escape_slack(message.summary), SECTION_CHARS)},
        },
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": f"*{label}*\n{escape_slack(value)}"}
                for label, value in message.facts
            ],
        },
    ]
    if message.top_terms:
        terms = ", ".join(f"{t} ({n})" for t, n in message.top_terms)
        out.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*Top terms:* {escape_slack(terms)}"}}
        )
    if message.examples:
        lines = []
        for post in message.examples:
            line = f"• *@{escape_slack(post.author)}*: {escape_slack(post.text)}"
            if post.url and post.url.startswith(("https://", "http://")):
                line += " " + slack_link(post.url, "link")
            lines.append(line)
        out.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": _cut("\n".join(lines), SECTION_CHARS)}}
        )
    if message.others:
        more = "\n".join(f"• {escape_slack(s)}" for s in message.others[:10])
        out.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _cut(more, SECTION_CHARS)}]})
    if message.dashboard_url:
        out.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Open the dashboard"},
                        "url": message.dashboard_url,
                    }
                ],
            }
        )
    return out


def payload(message: Message) -> dict[str, Any]:
    return {
        "text": escape_slack(f"{message.title}: {message.summary}"),
        "attachments": [{"color": message.colour_hex, "blocks": blocks(message)}],
    }


class SlackSink(HttpSink):
    config_class = SlackSinkConfig
    config: SlackSinkConfig

    async def send(self, alert: Alert) -> None:
        await self.post(self.config.url.get_secret_value(), json_body=payload(build_message(alert)))


SINKS.register("slack", SlackSinkConfig, SlackSink)
