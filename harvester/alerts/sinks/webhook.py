"""The `webhook` sink: a JSON document (schema `harvester.alert`, version 1) POSTed to any URL.

Headers: `Idempotency-Key` (the alert's key: the same alert re-sent after a crash or a retry carries
the same key, so a receiver can drop the repeat), `X-Harvester-Schema: harvester.alert/v1`, and, when a
`secret` is set, `X-Harvester-Timestamp` (Unix seconds) and `X-Harvester-Signature: sha256=<hex>`,
the HMAC-SHA256 of `"<timestamp>." + body` with the secret. A receiver recomputes it over the raw body
and rejects old timestamps, which stops replays. The README documents the schema field by field.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import SecretStr

from harvester.alerts.format import Message, build_message
from harvester.alerts.notification import as_notification
from harvester.alerts.sinks.http import HttpSink, HttpSinkConfig
from harvester.clock import Clock, SystemClock
from harvester.models import Alert
from harvester.plugins import SINKS

SCHEMA = "harvester.alert"
SCHEMA_VERSION = 1


class WebhookSinkConfig(HttpSinkConfig):
    type: Literal["webhook"] = "webhook"
    url: str
    secret: SecretStr | None = None
    headers: dict[str, str] = {}


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The `X-Harvester-Signature` value for `body` sent at `timestamp`."""
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def verify(secret: bytes, timestamp: str, body: bytes, signature: str) -> bool:
    """What a receiver does (in constant time); also used by the tests."""
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def document(alert: Alert, message: Message, sent_at: datetime) -> dict[str, Any]:
    note = as_notification(alert)
    return {
        "schema": SCHEMA,
        "version": SCHEMA_VERSION,
        "idempotency_key": note.key,
        "sink": note.sink,
        "sent_at": sent_at.isoformat(),
        "attempt": note.attempt,
        "alert": {
            "title": message.title,
            "severity": message.severity.value,
            "rule": message.rule,
            "kind": message.kind,
            "summary": message.summary,
            "observed": message.observed,
            "baseline": message.baseline,
            "score": message.score,
            "started_at": message.started_at.isoformat(),
            "at": message.at.isoformat(),
            "top_terms": [[t, n] for t, n in message.top_terms],
            "examples": [
                {"uid": p.uid, "author": p.author, "text": p.text, "url": p.url, "source": p.source}
                for p in message.examples
            ],
            "dashboard_url": message.dashboard_url,
        },
        "group": {"labels": dict(note.group_labels), "count": len(note.signals) or 1},
        "signals": [s.to_json() for s in (note.signals or (note.signal,))],
    }


class WebhookSink(HttpSink):
    config_class = WebhookSinkConfig
    config: WebhookSinkConfig

    def __init__(self, config: WebhookSinkConfig, clock: Clock | None = None) -> None:
        super().__init__(config)
        self.clock: Clock = clock or SystemClock()

    async def send(self, alert: Alert) -> None:
        now = self.clock.now()
        body = json.dumps(document(alert, build_message(alert), now), sort_keys=True).encode()
        headers = {
            **self.config.headers,
            "Content-Type": "application/json",
            "Idempotency-Key": alert.key,
            "X-Harvester-Schema": f"{SCHEMA}/v{SCHEMA_VERSION}",
        }
        if self.config.secret is not None:
            timestamp = str(int(now.astimezone(UTC).timestamp()))
            headers["X-Harvester-Timestamp"] = timestamp
            headers["X-Harvester-Signature"] = sign(
                self.config.secret.get_secret_value().encode(), timestamp, body
            )
        await self.post(self.config.url, data=body, headers=headers)


SINKS.register("webhook", WebhookSinkConfig, WebhookSink)
