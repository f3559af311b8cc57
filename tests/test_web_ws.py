"""/ws: the hello, live signals and counters, and the bounded buffer that drops a slow client."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import aiohttp

from harvester.models import Severity, Signal
from harvester.web.ws import Client, Hub, text_frame
from tests.web_helpers import config, finished, running, url, wait_until


class FakeTransport:
    """A connection whose peer reads `reads` bytes per publish; the rest stays buffered."""

    def __init__(self, reads: int) -> None:
        self.reads = reads
        self.buffered = 0
        self.frames: list[bytes] = []
        self.aborted = False

    def is_closing(self) -> bool:
        return self.aborted

    def write(self, data: bytes) -> None:
        self.frames.append(data)
        self.buffered = max(0, self.buffered + len(data) - self.reads)

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def abort(self) -> None:
        self.aborted = True


def fake_client(hub: Hub, reads: int) -> FakeTransport:
    transport = FakeTransport(reads)
    hub.clients.add(Client(cast(Any, None), cast(asyncio.Transport, transport)))
    return transport


def test_text_frames_follow_rfc6455() -> None:
    assert text_frame("hi") == b"\x81\x02hi"
    assert text_frame("x" * 200)[:4] == b"\x81\x7e\x00\xc8"
    assert text_frame("x" * 70_000)[:10] == b"\x81\x7f" + (70_000).to_bytes(8, "big")


def test_a_full_buffer_drops_that_client_only_and_counts_it() -> None:
    dropped: list[int] = []
    hub = Hub(100, on_dropped=lambda: dropped.append(1))
    slow, fast = fake_client(hub, reads=0), fake_client(hub, reads=10_000)
    message = {"pad": "x" * 30}  # about 40 bytes framed: the slow client overflows 100 on the third
    assert [hub.publish(message) for _ in range(4)] == [0, 0, 1, 0]
    assert slow.aborted and len(slow.frames) == 3  # dropped at once, not written to again
    assert not fast.aborted and len(fast.frames) == 4  # the others carry on
    assert (hub.dropped, len(dropped), len(hub.clients)) == (1, 1, 1)
    assert fast.frames[0] == text_frame('{"pad":"' + "x" * 30 + '"}')


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
