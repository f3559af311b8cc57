"""The `apprise` sink (optional extra `harvester[apprise]`): the long tail of services (Pushover, ntfy,
Matrix, Teams, Gotify, …) through the Apprise library, one notification per alert.

Apprise reports only success or failure, so every failure is transient for the outbox; a URL that
Apprise does not understand is a config error at start-up. The URLs hold credentials, hence secrets.
"""

from __future__ import annotations

import importlib.util
import warnings
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator

from harvester.alerts.format import build_message, plain_text
from harvester.alerts.sinks.base import Sink
from harvester.config.schema import SinkConfig
from harvester.errors import SinkError
from harvester.models import Alert
from harvester.plugins import SINKS

EXTRA_HINT = "the apprise sink needs the optional extra: pip install 'harvester[apprise]'"


class AppriseSinkConfig(SinkConfig):
    type: Literal["apprise"] = "apprise"
    urls: list[SecretStr] = Field(min_length=1)

    @model_validator(mode="after")
    def _installed(self) -> AppriseSinkConfig:
        if importlib.util.find_spec("apprise") is None:
            raise ValueError(EXTRA_HINT)
        return self


class AppriseSink(Sink):
    config_class = AppriseSinkConfig
    config: AppriseSinkConfig

    def __init__(self, config: AppriseSinkConfig) -> None:
        super().__init__(config)
        self.config = config
        self._apprise: Any = None

    async def start(self) -> None:
        if self._apprise is not None:
            return
        with warnings.catch_warnings():
            # Apprise loads its plugins on first use, and one of them imports the stdlib's deprecated
            # `imghdr`: its business, not an alert-delivery problem (and tests turn warnings into errors).
            warnings.simplefilter("ignore", DeprecationWarning)
            import apprise  # noqa: PLC0415 - an optional dependency, imported only when configured

            notifier = apprise.Apprise()
            for index, url in enumerate(self.config.urls):
                if not notifier.add(url.get_secret_value()):
                    raise SinkError(
                        f"apprise sink {self.name!r}: urls[{index}] is not a URL Apprise knows",
                        permanent=True,
                    )
        self._apprise = notifier

    async def send(self, alert: Alert) -> None:
        await self.start()
        message = build_message(alert)
        ok = await self._apprise.async_notify(body=plain_text(message), title=message.title)
        if not ok:
            raise SinkError(
                f"apprise sink {self.name!r}: at least one service did not accept the notification"
            )


SINKS.register("apprise", AppriseSinkConfig, AppriseSink)
