"""The `telegram` sink: Bot API `sendMessage` with `parse_mode: MarkdownV2`.

MarkdownV2 rejects a message (HTTP 400) if any of its special characters is left unescaped, so all
text goes through `escape_markdown_v2` (and link targets through `escape_markdown_v2_url`); the
message is cut between lines to the 4096-character limit. A 429 carries its wait in the JSON body
(`parameters.retry_after`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import SecretStr

from harvester.alerts.format import build_message, markdown_v2
from harvester.alerts.sinks.http import HttpSink, HttpSinkConfig
from harvester.models import Alert
from harvester.plugins import SINKS


class TelegramSinkConfig(HttpSinkConfig):
    type: Literal["telegram"] = "telegram"
    bot_token: SecretStr
    chat_id: int | str
    base_url: str = "https://api.telegram.org"
    disable_notification: bool = False


def request_body(chat_id: int | str, text: str, silent: bool) -> dict[str, Any]:
    return {
        "chat_id": chat_id,
        "text": text,
        "parse_mode": "MarkdownV2",
        "link_preview_options": {"is_disabled": True},
        "disable_notification": silent,
    }


class TelegramSink(HttpSink):
    config_class = TelegramSinkConfig
    config: TelegramSinkConfig

    def retry_hint(self, data: Any) -> float | None:
        parameters = data.get("parameters") if isinstance(data, dict) else None
        value = parameters.get("retry_after") if isinstance(parameters, dict) else None
        return float(value) if isinstance(value, int | float) else None

    async def send(self, alert: Alert) -> None:
        url = f"{self.config.base_url.rstrip('/')}/bot{self.config.bot_token.get_secret_value()}/sendMessage"
        body = request_body(
            self.config.chat_id, markdown_v2(build_message(alert)), self.config.disable_notification
        )
        await self.post(url, json_body=body)


SINKS.register("telegram", TelegramSinkConfig, TelegramSink)
