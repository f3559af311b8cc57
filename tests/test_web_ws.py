"""/ws: the hello, live signals and counters, and the bounded buffer that drops a slow client."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import aiohttp

from harvester.models import Severity, Signal
from harvester.web.ws import Client, Hub
from tests.web_helpers import config, finished, running, url, wait_until


def fake_client(hub: Hub) -> Client:
    client = Client(cast(Any, None), hub.buffer)  # publish only touches the queue
    hub.clients.add(client)
    return client


def test_a_full_buffer_drops_that_client_only_and_counts_it() -> None:
    dropped: list[int] = []
    hub = Hub(2, on_dropped=lambda: dropped.append(1))
    slow, fast = fake_client(hub), fake_client(hub)
    for n in range(2):
        assert hub.publish({"n": n}) == 0
        fast.queue.get_nowait()  # the fast client keeps up
    assert hub.publish({"n": 2}) == 1  # slow has 2 unread: the third does not fit
    assert slow.dropped and slow not in hub.clients and fast in hub.clients
    assert (hub.dropped, len(dropped)) == (1, 1)
    assert fast.queue.get_nowait() == '{"n":2}'
    assert hub.publish({"n": 3}) == 0 and fast.queue.qsize() == 1  # the others carry on


def a_signal(rule: str) -> Signal:
    now = datetime.now(UTC)
    return Signal(
        id=Signal.make_id(rule, "volume_spike", now),
        rule=rule,
        kind="volume_spike",
        severity=Severity("high"),
        at=now,
        window_start=now,
        window_end=now,
        observed=50,
        baseline=5,
        score=9,
        summary="test spike",
    )


async def receive_until(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    async with asyncio.timeout(20):
        while True:
            message: dict[str, Any] = await ws.receive_json()
            if message["type"] == kind:
                return message


async def test_clients_get_hello_then_counters_and_new_signals(tmp_path: Path) -> None:
    async with running(config(tmp_path)) as app, aiohttp.ClientSession() as s:
        await wait_until(finished(app))
        async with s.ws_connect(url(app, "/ws")) as first, s.ws_connect(url(app, "/ws")) as second:
            for ws in (first, second):
                hello = await ws.receive_json(timeout=10)
                assert hello["type"] == "hello" and hello["rules"] == [r.name for r in app.config.rules]
                assert hello["health"]["sources"]["demo"]["state"] == "finished"
            counters = await receive_until(first, "counters")
            assert set(counters["rules"]) == set(hello["rules"])
            assert counters["sources"]["demo"]["state"] == "finished"
            assert app.router is not None
            await app.router.route(a_signal("brand-0"))
            for ws in (first, second):
                pushed = await receive_until(ws, "signal")
                assert pushed["signal"]["rule"] == "brand-0" and pushed["signal"]["summary"] == "test spike"
            alert = await receive_until(first, "alert")
            assert alert["alert"]["rule"] == "brand-0" and alert["alert"]["sink"] == "console"
