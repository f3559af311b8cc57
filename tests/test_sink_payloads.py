"""Each sink's exact payload against its local fake, including hostile text (markdown, HTML, mentions),
the webhook signature, SMTP with STARTTLS / TLS and AUTH, and the pure HTTP error mapping."""

from __future__ import annotations

import email
import email.policy
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from harvester.alerts.format import (
    build_message,
    escape_discord,
    escape_markdown_v2,
    escape_slack,
    html_body,
    plain_text,
)
from harvester.alerts.sinks.alertmanager import AlertmanagerSink, AlertmanagerSinkConfig
from harvester.alerts.sinks.apprise import AppriseSink, AppriseSinkConfig
from harvester.alerts.sinks.discord import DiscordSink, DiscordSinkConfig
from harvester.alerts.sinks.email import EmailSink, EmailSinkConfig
from harvester.alerts.sinks.http import HttpResult, classify_response, parse_retry_after
from harvester.alerts.sinks.slack import SlackSink, SlackSinkConfig
from harvester.alerts.sinks.telegram import TelegramSink, TelegramSinkConfig
from harvester.alerts.sinks.webhook import SCHEMA, WebhookSink, WebhookSinkConfig, verify
from harvester.clock import ManualClock
from harvester.errors import SinkError
from harvester.models import Alert
from tests.alert_samples import HOSTILE, hostile_notification, make_signal
from tests.fake_sink_servers import FakeHttpServer, FakeSmtpServer, Fault, make_certificate
from tests.helpers import T0

MDV2_SPECIAL = set("_*[]()~`>#+-=|{}.!\\")


@pytest.fixture
async def server() -> AsyncIterator[FakeHttpServer]:
    fake = await FakeHttpServer().start()
    yield fake
    await fake.close()


async def send(sink: Any, alert: Alert) -> None:
    await sink.start()
    try:
        await sink.send(alert)
    finally:
        await sink.close()


def all_strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in all_strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in all_strings(v)]
    return []


# ------------------------------------------------------------------------------------------ webhook


async def test_webhook_body_headers_and_signature(server: FakeHttpServer) -> None:
    clock = ManualClock(T0)
    config = WebhookSinkConfig.model_validate(
        {"type": "webhook", "url": f"{server.url}/in", "secret": "topsecret"}
    )
    note = hostile_notification("hook")
    await send(WebhookSink(config, clock=clock), note)
    (request,) = server.requests
    assert request.path == "/in"
    assert request.headers["Idempotency-Key"] == note.key
    assert request.headers["X-Harvester-Schema"] == "harvester.alert/v1"
    timestamp = request.headers["X-Harvester-Timestamp"]
    assert timestamp == str(int(T0.timestamp()))
    signature = request.headers["X-Harvester-Signature"]
    assert verify(b"topsecret", timestamp, request.body, signature)
    assert not verify(b"topsecret", timestamp, request.body + b" ", signature)  # a changed body fails
    assert not verify(b"other", timestamp, request.body, signature)
    assert not verify(b"topsecret", str(int(timestamp) + 1), request.body, signature)  # so does a new time

    body = request.json()
    assert (body["schema"], body["version"], body["idempotency_key"]) == (SCHEMA, 1, note.key)
    assert body["alert"]["severity"] == "critical" and body["alert"]["summary"] == HOSTILE  # JSON: raw text
    assert body["group"] == {"labels": {"rule": "acme"}, "count": 2}
    assert [s["id"] for s in body["signals"]] == [s.id for s in note.signals]
    assert body["alert"]["examples"][0]["author"] == "@everyone"
    assert body["alert"]["dashboard_url"] == "http://127.0.0.1:8080/?rule=acme"


async def test_webhook_without_a_secret_sends_no_signature(server: FakeHttpServer) -> None:
    config = WebhookSinkConfig(type="webhook", url=server.url, headers={"X-Team": "brand"})
    await send(WebhookSink(config), hostile_notification())
    headers = server.requests[0].headers
    assert "X-Harvester-Signature" not in headers and headers["X-Team"] == "brand"


async def test_a_plain_alert_still_renders(server: FakeHttpServer) -> None:
    """Sinks accept the older `Alert` contract (a group of one, no examples)."""
    signal = make_signal(3)
    await send(
        WebhookSink(WebhookSinkConfig(type="webhook", url=server.url)), Alert("k1", "hook", signal, T0)
    )
    body = server.requests[0].json()
    assert body["group"]["count"] == 1 and body["signals"][0]["id"] == signal.id


# -------------------------------------------------------------------------------------------- slack


async def test_slack_block_kit_message_escapes_hostile_text(server: FakeHttpServer) -> None:
    config = SlackSinkConfig.model_validate({"type": "slack", "url": f"{server.url}/services/T/B/X"})
    await send(SlackSink(config), hostile_notification())
    body = server.requests[0].json()
    (attachment,) = body["attachments"]
    assert attachment["color"] == "#D32F2F"
    kinds = [block["type"] for block in attachment["blocks"]]
    assert kinds[0] == "header" and "actions" in kinds
    header = attachment["blocks"][0]["text"]
    assert header["type"] == "plain_text" and header["text"].startswith("[CRITICAL] crisis on acme")
    texts = all_strings(body)
    joined = "\n".join(texts)
    assert "<!channel>" not in joined and "<@U123>" not in joined
    assert escape_slack(HOSTILE) in joined
    assert "<https://example.com/p/1?a=(b)|link>" in joined
    assert "javascript:" not in joined  # a non-web link is not offered
    fields = attachment["blocks"][2]["fields"]
    assert {"type": "mrkdwn", "text": "*Baseline*\n5.50"} in fields


# ------------------------------------------------------------------------------------------ discord


async def test_discord_embed_pings_nobody(server: FakeHttpServer) -> None:
    config = DiscordSinkConfig.model_validate({"type": "discord", "url": f"{server.url}/api/webhooks/1/tok"})
    await send(DiscordSink(config), hostile_notification())
    request = server.requests[0]
    assert request.query == {"wait": "true"}
    body = request.json()
    assert body["allowed_mentions"] == {"parse": []}
    (embed,) = body["embeds"]
    assert embed["color"] == 0xD32F2F and embed["url"] == "http://127.0.0.1:8080/?rule=acme"
    joined = "\n".join(all_strings(body))
    assert "@everyone" not in joined and "@here" not in joined
    assert "\\*bold\\*" in embed["description"]
    assert len(embed["title"]) <= 256 and all(len(f["value"]) <= 1024 for f in embed["fields"])


async def test_discord_429_wait_from_the_json_body(server: FakeHttpServer) -> None:
    server.fail_with = Fault(429, headers={"Content-Type": "application/json"}, body='{"retry_after": 1.5}')
    sink = DiscordSink(DiscordSinkConfig.model_validate({"type": "discord", "url": f"{server.url}/w"}))
    with pytest.raises(SinkError) as caught:
        await send(sink, hostile_notification())
    assert caught.value.retry_after == 1.5


def test_discord_escape_breaks_mentions_and_markdown() -> None:
    assert escape_discord("@everyone **x** <@123>") == "@\u200beveryone \\*\\*x\\*\\* <@\u200b123\\>"


# ----------------------------------------------------------------------------------------- telegram


def unescape_markdown_v2(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def test_markdown_v2_escapes_every_special_character() -> None:
    special = "_*[]()~`>#+-=|{}.!\\"
    escaped = escape_markdown_v2(special)
    assert escaped == "".join("\\" + c for c in special)
    assert unescape_markdown_v2(escape_markdown_v2(HOSTILE)) == HOSTILE
    assert escape_markdown_v2("plain words") == "plain words"


async def test_telegram_send_message_with_markdown_v2(server: FakeHttpServer) -> None:
    config = TelegramSinkConfig.model_validate(
        {"type": "telegram", "base_url": server.url, "bot_token": "123:ABC", "chat_id": -1001}
    )
    await send(TelegramSink(config), hostile_notification())
    request = server.requests[0]
    assert request.path == "/bot123:ABC/sendMessage"
    body = request.json()
    assert body["chat_id"] == -1001 and body["parse_mode"] == "MarkdownV2"
    text = body["text"]
    assert escape_markdown_v2(HOSTILE) in text and HOSTILE not in text
    assert "[link](https://example.com/p/1?a=(b\\))" in text
    assert "javascript" not in text
    # Outside our own markup (bold labels and links), no special character is left unescaped.
    stripped = re.sub(r"\\.", "", text)
    stripped = re.sub(r"\[(link|Open the dashboard)\]\([^)]*\)", "", stripped)
    stripped = stripped.replace("*", "")
    assert not (set(stripped) & MDV2_SPECIAL), set(stripped) & MDV2_SPECIAL
    assert len(text) <= 4096


async def test_telegram_429_wait_from_parameters(server: FakeHttpServer) -> None:
    server.fail_with = Fault(429, body='{"ok": false, "error_code": 429, "parameters": {"retry_after": 17}}')
    config = TelegramSinkConfig(type="telegram", base_url=server.url, bot_token="1:x", chat_id=1)  # type: ignore[arg-type]
    with pytest.raises(SinkError) as caught:
        await send(TelegramSink(config), hostile_notification())
    assert caught.value.retry_after == 17.0 and "1:x" not in str(caught.value)


async def test_telegram_bad_token_is_permanent(server: FakeHttpServer) -> None:
    server.fail_with = Fault(401, body='{"ok": false, "error_code": 401, "description": "Unauthorized"}')
    config = TelegramSinkConfig(type="telegram", base_url=server.url, bot_token="1:x", chat_id=1)  # type: ignore[arg-type]
    with pytest.raises(SinkError) as caught:
        await send(TelegramSink(config), hostile_notification())
    assert caught.value.permanent


# ------------------------------------------------------------------------------------- alertmanager


async def test_alertmanager_posts_one_alert_per_signal(server: FakeHttpServer) -> None:
    config = AlertmanagerSinkConfig.model_validate(
        {"type": "alertmanager", "base_url": server.url, "labels": {"team": "brand"}, "bearer_token": "tok"}
    )
    note = hostile_notification()
    await send(AlertmanagerSink(config), note)
    request = server.requests[0]
    assert request.path == "/api/v2/alerts" and request.headers["Authorization"] == "Bearer tok"
    alerts = request.json()
    assert [a["labels"]["alertname"] for a in alerts] == ["harvester_crisis", "harvester_volume_spike"]
    first = alerts[0]
    assert first["labels"] == {
        "alertname": "harvester_crisis",
        "rule": "acme",
        "kind": "crisis",
        "severity": "critical",
        "team": "brand",
    }
    assert first["annotations"]["summary"] == HOSTILE and "description" in first["annotations"]
    assert first["generatorURL"] == "http://127.0.0.1:8080/?rule=acme"
    starts, ends = datetime.fromisoformat(first["startsAt"]), datetime.fromisoformat(first["endsAt"])
    assert starts == note.signal.window_start and ends == note.signal.at + timedelta(hours=1)


# ------------------------------------------------------------------------------------------ apprise


async def test_apprise_reaches_a_json_endpoint(server: FakeHttpServer) -> None:
    config = AppriseSinkConfig.model_validate(
        {"type": "apprise", "urls": [f"json://127.0.0.1:{server.port}/n"]}
    )
    await send(AppriseSink(config), hostile_notification())
    body = server.requests[0].json()
    assert body["title"].startswith("[CRITICAL] crisis on acme") and "Observed: 50" in body["message"]


async def test_apprise_rejects_an_unknown_url() -> None:
    sink = AppriseSink(AppriseSinkConfig.model_validate({"type": "apprise", "urls": ["nosuchscheme://x"]}))
    with pytest.raises(SinkError) as caught:
        await sink.start()
    assert caught.value.permanent and "nosuchscheme" not in str(caught.value)


# -------------------------------------------------------------------------------------------- email


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_certificate(tmp_path_factory.mktemp("tls"))


def parse_mail(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def email_config(port: int, security: str, ca: Path | None, **extra: Any) -> EmailSinkConfig:
    return EmailSinkConfig.model_validate(
        {
            "type": "email",
            "host": "127.0.0.1",
            "port": port,
            "security": security,
            "from": "harvester@example.test",
            "to": ["oncall@example.test", "brand@example.test"],
            "ca_file": str(ca) if ca else None,
            **extra,
        }
    )


@pytest.mark.parametrize("security", ["starttls", "tls"])
async def test_email_over_tls_with_auth_has_plain_and_html_parts(
    security: str, certificate: tuple[Path, Path]
) -> None:
    server = await FakeSmtpServer(security, certificate, credentials=("bot", "pw")).start()
    try:
        config = email_config(server.port, security, certificate[0], username="bot", password="pw")
        note = hostile_notification("mail")
        await send(EmailSink(config), note)
        (mail,) = server.handler.mails
        assert mail.authenticated_as == "bot"
        assert mail.recipients == ["oncall@example.test", "brand@example.test"]
        message = parse_mail(mail.content)
        assert "\n" not in message["Subject"] and message["Subject"].startswith("[harvester] [CRITICAL]")
        assert message["X-Harvester-Idempotency-Key"] == note.key
        assert message.get_content_type() == "multipart/alternative"
        plain = message.get_body(("plain",))
        html = message.get_body(("html",))
        assert plain is not None and html is not None
        plain_content, html_content = plain.get_content(), html.get_content()
        assert HOSTILE in plain_content and "Baseline: 5.50" in plain_content
        assert "<b>&amp;amp;</b>" not in html_content and "&lt;b&gt;&amp;amp;&lt;/b&gt;" in html_content
        assert 'href="javascript' not in html_content
        assert 'href="https://example.com/p/1?a=(b)"' in html_content
    finally:
        await server.close()


async def test_email_wrong_password_is_permanent(certificate: tuple[Path, Path]) -> None:
    server = await FakeSmtpServer("starttls", certificate, credentials=("bot", "pw")).start()
    try:
        config = email_config(server.port, "starttls", certificate[0], username="bot", password="wrong")
        with pytest.raises(SinkError) as caught:
            await send(EmailSink(config), hostile_notification())
        assert caught.value.permanent and "wrong" not in str(caught.value)
        assert server.handler.mails == []
    finally:
        await server.close()


async def test_email_starttls_refuses_a_server_without_it(certificate: tuple[Path, Path]) -> None:
    server = await FakeSmtpServer("plain").start()
    try:
        with pytest.raises(SinkError):
            await send(
                EmailSink(email_config(server.port, "starttls", certificate[0])), hostile_notification()
            )
        assert server.handler.mails == []
    finally:
        await server.close()


async def test_email_untrusted_certificate_is_refused(certificate: tuple[Path, Path]) -> None:
    server = await FakeSmtpServer("tls", certificate).start()
    try:
        with pytest.raises(SinkError):
            await send(EmailSink(email_config(server.port, "tls", None)), hostile_notification())
        assert server.handler.mails == []
    finally:
        await server.close()


def test_email_config_needs_username_and_password_together() -> None:
    with pytest.raises(ValueError, match="go together"):
        email_config(25, "none", None, username="bot")


# --------------------------------------------------------------------------- shared formatting


def test_plain_and_html_carry_the_message_content() -> None:
    message = build_message(hostile_notification())
    text = plain_text(message)
    for needle in ("Observed: 50", "Baseline: 5.50", "Score: 9.25", "Started: 2026-03-02 12:01:00 UTC"):
        assert needle in text
    assert "- @@everyone:" in text and "<https://example.com/p/1?a=(b)>" in text
    assert "Top terms: outage (12), refund (4)" in text and "Grouped: 2 signals" in text
    assert "Dashboard: http://127.0.0.1:8080/?rule=acme" in text
    page = html_body(message)
    assert "<!channel>" not in page and "&lt;!channel&gt;" in page


def test_a_big_group_lists_twenty_others_and_counts_the_rest() -> None:
    signals = tuple(make_signal(n) for n in range(50))
    note = hostile_notification()
    big = type(note)(note.key, note.sink, signals[0], T0, signals=signals)
    message = build_message(big)
    assert message.total == 50 and len(message.others) == 20 and message.more == 29
    text = plain_text(message)
    assert "Grouped: 50 signals" in text and "- and 29 more" in text


# ------------------------------------------------------------------------------- error mapping


@pytest.mark.parametrize(
    ("status", "headers", "body", "permanent", "retry_after"),
    [
        (200, {}, b"", None, None),
        (204, {}, b"", None, None),
        (500, {}, b"oops", False, None),
        (503, {"Retry-After": "12"}, b"", False, 12.0),
        (429, {"Retry-After": "30"}, b"", False, 30.0),
        (429, {}, b'{"retry_after": 2}', False, None),  # no hint function: no body parsing
        (408, {}, b"", False, None),
        (400, {}, b"invalid_payload", True, None),
        (404, {}, b"no_service", True, None),
        (401, {}, b"", True, None),
    ],
)
def test_classify_response(
    status: int, headers: dict[str, str], body: bytes, permanent: bool | None, retry_after: float | None
) -> None:
    error = classify_response("sink", HttpResult(status, headers, body))
    if permanent is None:
        assert error is None
    else:
        assert error is not None and error.permanent is permanent and error.retry_after == retry_after
        assert f"HTTP {status}" in str(error)


def test_retry_after_accepts_seconds_and_http_dates_and_ignores_garbage() -> None:
    now = datetime(2026, 3, 2, 12, 0, tzinfo=UTC).timestamp()
    assert parse_retry_after("30", now) == 30.0
    assert parse_retry_after("Mon, 02 Mar 2026 12:01:00 GMT", now) == 60.0
    assert parse_retry_after("Mon, 02 Mar 2026 11:00:00 GMT", now) == 0.0  # in the past: now
    assert parse_retry_after("soon", now) is None and parse_retry_after(None, now) is None
    assert parse_retry_after("nan", now) is None


def test_webhook_json_is_stable_for_the_same_alert() -> None:
    from harvester.alerts.sinks.webhook import document

    note = hostile_notification()
    first = json.dumps(document(note, build_message(note), T0), sort_keys=True)
    assert first == json.dumps(document(note, build_message(note), T0), sort_keys=True)


async def test_ok_response_fixture_is_used(server: FakeHttpServer) -> None:
    """The fake answers 2xx by default; a sink must not mistake a 2xx body for an error."""
    server.ok = lambda _r: web.Response(status=200, text="ok")
    await send(
        SlackSink(SlackSinkConfig.model_validate({"type": "slack", "url": server.url})),
        hostile_notification(),
    )
    assert len(server.requests) == 1
