"""The WebSocket fan-out: every message is encoded once and queued to each client's bounded buffer.

A client whose buffer is full is disconnected and counted instead of being waited for, so one slow
reader (a laptop on bad Wi-Fi, a stopped tab) never delays the others or grows the daemon's memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

import structlog
from aiohttp import WSCloseCode, web

log = structlog.get_logger(__name__)

# A close code from the private range (4000-4999): the dashboard tells "too slow" from other closes.
CLOSE_TOO_SLOW = 4008


class Client:
    __slots__ = ("dropped", "queue", "ws")

    def __init__(self, ws: web.WebSocketResponse, buffer: int) -> None:
        self.ws = ws
        self.queue: asyncio.Queue[str] = asyncio.Queue(buffer)
        self.dropped = False


class Hub:
    def __init__(
        self,
        buffer: int,
        *,
        on_message: Callable[[int], None] = lambda n: None,
        on_dropped: Callable[[], None] = lambda: None,
        on_clients: Callable[[int], None] = lambda n: None,
    ) -> None:
        self.buffer = buffer
        self.clients: set[Client] = set()
        self.dropped = 0
        self.sent = 0
        self._on_message = on_message
        self._on_dropped = on_dropped
        self._on_clients = on_clients

    def publish(self, message: dict[str, Any]) -> int:
        """Queue `message` to every client; returns how many clients were dropped for being too slow."""
        text = json.dumps(message, separators=(",", ":"), default=str)
        dropped = 0
        for client in list(self.clients):
            try:
                client.queue.put_nowait(text)
            except asyncio.QueueFull:
                self._drop(client)
                dropped += 1
        self.sent += len(self.clients)
        self._on_message(len(self.clients))
        return dropped

    def _drop(self, client: Client) -> None:
        client.dropped = True
        self.clients.discard(client)
        self.dropped += 1
        self._on_dropped()
        self._on_clients(len(self.clients))
        # The sender task notices the close; closing here would await a peer that is not reading.
        client.queue = asyncio.Queue(1)
        client.queue.put_nowait("")

    async def serve(
        self, request: web.Request, hello: Callable[[], Any] | None = None
    ) -> web.WebSocketResponse:
        """Handle one WebSocket: send `hello()` (if given) first, then everything published."""
        ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=64 * 1024)
        await ws.prepare(request)
        client = Client(ws, self.buffer)
        if hello is not None:
            first = await hello()
            await ws.send_str(json.dumps(first, separators=(",", ":"), default=str))
        self.clients.add(client)
        self._on_clients(len(self.clients))
        sender = asyncio.create_task(self._send(client), name="ws:send")
        try:
            async for _ in ws:  # clients only listen; reading keeps pings and the close handshake going
                pass
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
            if client in self.clients:
                self.clients.discard(client)
                self._on_clients(len(self.clients))
            if not ws.closed:
                code = CLOSE_TOO_SLOW if client.dropped else WSCloseCode.GOING_AWAY
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.close(code=code, message=b"too slow"), 1.0)
        return ws

    async def _send(self, client: Client) -> None:
        ws = client.ws
        try:
            while True:
                text = await client.queue.get()
                if client.dropped:
                    await asyncio.wait_for(ws.close(code=CLOSE_TOO_SLOW, message=b"too slow"), 1.0)
                    return
                await ws.send_str(text)
        except (ConnectionError, TimeoutError, RuntimeError) as exc:
            log.debug("websocket client gone", error=str(exc))

    async def close_all(self) -> None:
        clients = list(self.clients)
        self.clients.clear()
        self._on_clients(0)
        for client in clients:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.ws.close(code=WSCloseCode.GOING_AWAY, message=b"shutdown"), 1.0)
