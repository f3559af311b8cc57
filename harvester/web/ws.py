"""The WebSocket fan-out: every message is framed once and written to each client's connection.

Per message the hub builds one WebSocket text frame and hands the same bytes to every client's
transport: no per-client task wake-up, JSON encoding or framing, which is what lets one event loop
feed a thousand dashboards. The transport's write buffer is the client's bounded buffer: a client
whose unsent bytes exceed `buffer_bytes` is disconnected and counted, instead of being waited for, so
one slow reader (bad Wi-Fi, a stopped laptop) never delays the others or grows the daemon's memory.

Frames are written between aiohttp's own (pings, close), never inside one: both write whole frames
synchronously, so they cannot interleave. Compression is off, so every frame is a plain text frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import WSCloseCode, web

log = structlog.get_logger(__name__)

KERNEL_SEND_BUFFER = 64 * 1024


def text_frame(text: str) -> bytes:
    """A final, unmasked text frame (RFC 6455 5.2): servers never mask."""
    payload = text.encode()
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x81, size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", 0x81, 126, size)
    else:
        header = struct.pack("!BBQ", 0x81, 127, size)
    return header + payload


class Client:
    __slots__ = ("dropped", "transport", "ws")

    def __init__(self, ws: web.WebSocketResponse, transport: asyncio.Transport) -> None:
        self.ws = ws
        self.transport = transport
        self.dropped = False


class Hub:
    def __init__(
        self,
        buffer_bytes: int,
        *,
        on_message: Callable[[int], None] = lambda n: None,
        on_dropped: Callable[[], None] = lambda: None,
        on_clients: Callable[[int], None] = lambda n: None,
    ) -> None:
        self.buffer_bytes = buffer_bytes
        self.clients: set[Client] = set()
        self.dropped = 0
        self.sent = 0
        self._on_message = on_message
        self._on_dropped = on_dropped
        self._on_clients = on_clients

    def publish(self, message: dict[str, Any]) -> int:
        """Send `message` to every client; returns how many clients were dropped for being too slow."""
        frame = text_frame(json.dumps(message, separators=(",", ":"), default=str))
        dropped = 0
        sent = 0
        for client in list(self.clients):
            transport = client.transport
            if transport.is_closing():
                self._forget(client)
                continue
            transport.write(frame)
            sent += 1
            if transport.get_write_buffer_size() > self.buffer_bytes:
                self._drop(client)
                dropped += 1
        self.sent += sent
        self._on_message(sent)
        return dropped

    def _forget(self, client: Client) -> None:
        if client in self.clients:
            self.clients.discard(client)
            self._on_clients(len(self.clients))

    def _drop(self, client: Client) -> None:
        client.dropped = True
        self._forget(client)
        self.dropped += 1
        self._on_dropped()
        # Abort: a polite close frame would queue behind the very backlog that got it dropped.
        client.transport.abort()
        log.info("websocket client dropped: too slow", buffered_bytes_over=self.buffer_bytes)

    async def serve(
        self, request: web.Request, hello: Callable[[], Awaitable[dict[str, Any]]] | None = None
    ) -> web.WebSocketResponse:
        """Handle one WebSocket: send `hello()` (if given) first, then everything published."""
        ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=64 * 1024, compress=False)
        await ws.prepare(request)
        if hello is not None:
            await ws.send_str(json.dumps(await hello(), separators=(",", ":"), default=str))
        transport = request.transport
        if not isinstance(transport, asyncio.Transport) or transport.is_closing():
            return ws
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # A fixed kernel send buffer instead of Linux's autotuning (up to 4 MB on loopback): the
            # bound on what a stalled client costs is then this plus `buffer_bytes`, and it is reached
            # soon enough to drop the client while its backlog is still small.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, KERNEL_SEND_BUFFER)
        client = Client(ws, transport)
        self.clients.add(client)
        self._on_clients(len(self.clients))
        try:
            async for _ in ws:  # clients only listen; reading keeps pings and the close handshake going
                pass
        finally:
            self._forget(client)
            if not ws.closed and not client.dropped:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.close(code=WSCloseCode.GOING_AWAY), 1.0)
        return ws

    async def close_all(self) -> None:
        clients = list(self.clients)
        self.clients.clear()
        self._on_clients(0)
        for client in clients:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.ws.close(code=WSCloseCode.GOING_AWAY, message=b"shutdown"), 1.0)
