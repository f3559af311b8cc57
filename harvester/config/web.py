"""The `web:` block: the HTTP server inside the daemon (health, metrics, JSON API, WebSocket, dashboard)."""

from __future__ import annotations

import ipaddress

from pydantic import Field, PositiveInt, SecretStr, model_validator

from harvester.config.base import Strict
from harvester.config.durations import Duration


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to anything: treat it as exposed


class WebConfig(Strict):
    # Off unless the config turns it on, so a Config built in code (tests, benchmarks, embedding) opens
    # no socket; the shipped harvester.yaml enables it on loopback.
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)  # 0: any free port (tests)
    # Protects the API, the WebSocket and the dashboard. Required when `host` is not a loopback address.
    token: SecretStr | None = None
    # Leave these open without the token (a Prometheus scraper, a load balancer's liveness probe).
    open_metrics: bool = False
    open_healthz: bool = True
    # How often the live feed looks for new signals and alerts and pushes per-rule counters.
    push_interval: Duration = Field(default=1.0, gt=0)
    # Unsent bytes allowed per WebSocket client (about 200 counter messages); a client further behind
    # is disconnected and counted (harvester_ws_clients_dropped_total). The dashboard reconnects.
    ws_buffer_bytes: PositiveInt = 256 * 1024
    # Sparkline length the dashboard is sent on connect: this many push intervals of per-rule counters.
    history: PositiveInt = 120
    # /health says "degraded" when a connected source has sent nothing for this long.
    stale_after: Duration = 300.0

    @model_validator(mode="after")
    def _exposed_needs_token(self) -> WebConfig:
        if self.enabled and not is_loopback(self.host) and self.token is None:
            raise ValueError(
                f"web.host {self.host!r} is not a loopback address and web.token is not set: "
                "set web.token from the environment (token: ${HARVESTER_WEB_TOKEN}) or bind 127.0.0.1"
            )
        if self.token is not None and not self.token.get_secret_value():
            raise ValueError("web.token is empty: the variable it comes from is set to nothing")
        return self
