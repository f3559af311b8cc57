"""Contract tests over the sink registry: every registered sink delivers to its local fake, maps 5xx,
429 (with Retry-After), refused connections and timeouts to `SinkError`, and stops cleanly."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import structlog
from aiohttp import web

import harvester.alerts.sinks.alertmanager
import harvester.alerts.sinks.apprise
import harvester.alerts.sinks.discord
import harvester.alerts.sinks.email
import harvester.alerts.sinks.slack
import harvester.alerts.sinks.telegram
import harvester.alerts.sinks.webhook  # noqa: F401 - importing a sink module registers it
from harvester.alerts.sinks.base import Sink
from harvester.errors import SinkError
from harvester.plugins import SINKS
from tests.alert_samples import hostile_notification
from tests.fake_sink_servers import FakeHttpServer, FakeSmtpServer, Fault, Recorded, unused_port

TIMEOUT = 0.5  # only bounds the stalled-server case; every other case completes on an event


def _telegram_ok(_request: Recorded) -> web.Response:
    return web.json_response({"ok": True, "result": {"message_id": 7}})


@dataclass(frozen=True)
class Harness:
    """How to point one sink type at its fake: `config(host, port)` gives the raw config mapping."""

    kind: str  # "http", "smtp" or "log"
    config: Callable[[str, int], dict[str, Any]]
    ok: Callable[[Recorded], web.Response] | None = None
    retry_after: bool = True  # does the sink surface a 429's Retry-After?


HARNESSES: dict[str, Harness] = {
    "log": Harness("log", lambda host, port: {}),
    "webhook": Harness("http", lambda host, port: {"url": f"http://{host}:{port}/hook", "secret": "s3"}),
    "slack": Harness("http", lambda host, port: {"url": f"http://{host}:{port}/services/T1/B1/x"}),
    "discord": Harness("http", lambda host, port: {"url": f"http://{host}:{port}/api/webhooks/1/tok"}),
    "telegram": Harness(
        "http",
        lambda host, port: {"base_url": f"http://{host}:{port}", "bot_token": "123:ABC", "chat_id": 42},
        ok=_telegram_ok,
    ),
    "alertmanager": Harness("http", lambda host, port: {"base_url": f"http://{host}:{port}"}),
    "apprise": Harness(
        "http",
        lambda host, port: {"urls": [f"json://{host}:{port}/notify?rto={TIMEOUT}&cto={TIMEOUT}"]},
        retry_after=False,  # Apprise reports success or failure, nothing more
    ),
    "email": Harness(
        "smtp",
        lambda host, port: {
            "host": host,
            "port": port,
            "security": "none",
            "from": "h@x.test",
            "to": ["o@x.test"],
        },
        retry_after=False,  # SMTP has no Retry-After
    ),
}
HTTP_SINKS = [name for name, h in HARNESSES.items() if h.kind == "http"]
RETRY_AFTER_SINKS = [name for name in HTTP_SINKS if HARNESSES[name].retry_after]


def build(name: str, host: str, port: int) -> Sink:
    plugin = SINKS.get(name)
    raw = {"type": name, "name": f"{name}-under-test", **HARNESSES[name].config(host, port)}
    if name not in ("log", "apprise"):
        raw["timeout"] = TIMEOUT
    return plugin.factory(plugin.config_class.model_validate(raw))


def test_every_registered_sink_has_a_contract_harness() -> None:
    assert set(SINKS.names()) <= set(HARNESSES), "a sink was registered without contract tests"


@pytest.fixture
async def http_server(request: pytest.FixtureRequest) -> AsyncIterator[FakeHttpServer]:
    server = await FakeHttpServer(HARNESSES[request.param].ok).start()
    yield server
    await server.close()


async def _deliver(sink: Sink) -> None:
    await sink.start()
    try:
        await sink.send(hostile_notification(sink.name))
    finally:
        await sink.close()


@pytest.mark.parametrize(("name", "http_server"), [(n, n) for n in HTTP_SINKS], indirect=["http_server"])
async def test_http_sink_delivers_once_and_stops_cleanly(name: str, http_server: FakeHttpServer) -> None:
    sink = build(name, "127.0.0.1", http_server.port)
    await _deliver(sink)
    assert len(http_server.requests) == 1
    assert http_server.requests[0].method == "POST" and http_server.requests[0].body
    await sink.close()  # closing twice is harmless


@pytest.mark.parametrize(("name", "http_server"), [(n, n) for n in HTTP_SINKS], indirect=["http_server"])
async def test_http_sink_maps_5xx_to_a_transient_error(name: str, http_server: FakeHttpServer) -> None:
    http_server.fail_with = Fault(503, body="upstream down")
    with pytest.raises(SinkError) as caught:
        await _deliver(build(name, "127.0.0.1", http_server.port))
    assert not caught.value.permanent
    assert http_server.requests


@pytest.mark.parametrize(
    ("name", "http_server"), [(n, n) for n in RETRY_AFTER_SINKS], indirect=["http_server"]
)
async def test_http_sink_maps_429_with_retry_after(name: str, http_server: FakeHttpServer) -> None:
    http_server.fail_with = Fault(429, headers={"Retry-After": "30"}, body='{"ok": false}')
    with pytest.raises(SinkError) as caught:
        await _deliver(build(name, "127.0.0.1", http_server.port))
    assert not caught.value.permanent and caught.value.retry_after == 30.0


@pytest.mark.parametrize(("name", "http_server"), [(n, n) for n in HTTP_SINKS], indirect=["http_server"])
async def test_http_sink_maps_a_stalled_server_to_a_transient_error(
    name: str, http_server: FakeHttpServer
) -> None:
    http_server.fail_with = Fault(stall=True)
    with pytest.raises(SinkError) as caught:
        await _deliver(build(name, "127.0.0.1", http_server.port))
    assert not caught.value.permanent
    assert len(http_server.requests) >= 1  # it did reach the server: the timeout, not a refusal


@pytest.mark.parametrize("name", [n for n, h in HARNESSES.items() if h.kind != "log"])
async def test_sink_maps_connection_refused_to_a_transient_error(name: str) -> None:
    with pytest.raises(SinkError) as caught:
        await _deliver(build(name, "127.0.0.1", unused_port()))
    assert not caught.value.permanent


async def test_email_delivers_and_maps_smtp_replies() -> None:
    server = await FakeSmtpServer().start()
    try:
        await _deliver(build("email", "127.0.0.1", server.port))
        assert len(server.handler.mails) == 1
        server.handler.data_replies = ["451 4.3.0 try again later"]
        with pytest.raises(SinkError) as caught:
            await _deliver(build("email", "127.0.0.1", server.port))
        assert not caught.value.permanent
        server.handler.data_replies = ["554 5.7.1 rejected"]
        with pytest.raises(SinkError) as caught:
            await _deliver(build("email", "127.0.0.1", server.port))
        assert caught.value.permanent
        assert len(server.handler.mails) == 1
    finally:
        await server.close()


async def test_email_maps_a_stalled_server_to_a_transient_error() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connected.set()
        await release.wait()  # never sends the 220 greeting
        writer.close()

    connected, release = asyncio.Event(), asyncio.Event()
    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(SinkError) as caught:
            await _deliver(build("email", "127.0.0.1", port))
        assert not caught.value.permanent and connected.is_set()
    finally:
        release.set()
        server.close()
        await server.wait_closed()


async def test_log_sink_delivers_a_line_and_never_fails() -> None:
    sink = build("log", "127.0.0.1", 0)
    with structlog.testing.capture_logs() as logs:
        await _deliver(sink)
    (line,) = [entry for entry in logs if str(entry["event"]).startswith("ALERT")]
    assert line["rule"] == "acme" and line["severity"] == "critical" and line["grouped"] == 2
    assert line["key"] == hostile_notification(sink.name).key and line["examples"][0].startswith(
        "@@everyone: "
    )
