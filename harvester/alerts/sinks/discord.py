"""The `discord` sink: a channel webhook with one embed.

`allowed_mentions: {parse: []}` tells Discord to ping nobody whatever the text says, and the text is
escaped too (`escape_discord`), so `@everyone` or `**bold**` in a post is shown literally. `?wait=true`
makes Discord confirm the message was stored. A 429's wait comes from `Retry-After` or the JSON body's
`retry_after`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import SecretStr

from harvester.alerts.format import Message, build_message, escape_discord
from harvester.alerts.sinks.http import HttpSink, HttpSinkConfig
from harvester.models import Alert
from harvester.plugins import SINKS

# Discord's embed limits.
TITLE_CHARS = 256
DESCRIPTION_CHARS = 4096
FIELD_CHARS = 1024


class DiscordSinkConfig(HttpSinkConfig):
    type: Literal["discord"] = "discord"
    url: SecretStr  # the webhook URL holds the webhook's token
    username: str = "harvester"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def embed(message: Message) -> dict[str, Any]:
    fields: list[dict[str, Any]] = [
        {"name": label, "value": escape_discord(value), "inline": True} for label, value in message.facts
    ]
    if message.top_terms:
        terms = ", ".join(f"{t} ({n})" for t, n in message.top_terms)
        fields.append(
            {"name": "Top terms", "value": _cut(escape_discord(terms), FIELD_CHARS), "inline": False}
        )
    if message.examples:
        lines = []
        for post in message.examples:
            line = f"**@{escape_discord(post.author)}**: {escape_discord(post.text)}"
            if post.url and post.url.startswith(("https://", "http://")):
                line += f" [link]({post.url.replace(')', '%29')})"
            lines.append(line)
        fields.append(
            {"name": "Example posts", "value": _cut("\n".join(lines), FIELD_CHARS), "inline": False}
        )
    if message.others:
        more = "\n".join(escape_discord(s) for s in message.others[:10])
        fields.append({"name": "Also in this group", "value": _cut(more, FIELD_CHARS), "inline": False})
    out: dict[str, Any] = {
        "title": _cut(message.title, TITLE_CHARS),
        "description": _cut(escape_discord(message.summary), DESCRIPTION_CHARS),
        "color": message.colour,
        "timestamp": message.at.isoformat(),
        "fields": fields[:25],
        "footer": {"text": f"{message.rule} · {message.kind}"},
    }
    if message.dashboard_url:
        out["url"] = message.dashboard_url
    return out


def payload(message: Message, username: str) -> dict[str, Any]:
    return {"username": username, "allowed_mentions": {"parse": []}, "embeds": [embed(message)]}


class DiscordSink(HttpSink):
    config_class = DiscordSinkConfig
    config: DiscordSinkConfig

    def retry_hint(self, data: Any) -> float | None:
        value = data.get("retry_after") if isinstance(data, dict) else None
        return float(value) if isinstance(value, int | float) else None

    async def send(self, alert: Alert) -> None:
        url = self.config.url.get_secret_value()
        url += ("&" if "?" in url else "?") + "wait=true"
        await self.post(url, json_body=payload(build_message(alert), self.config.username))


SINKS.register("discord", DiscordSinkConfig, DiscordSink)
