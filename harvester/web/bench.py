"""WebSocket fan-out benchmark: `python -m harvester.web.bench [--clients 1000]`.

The server side is the daemon's own `Hub` behind aiohttp in this process; the clients run in a
separate process (a local load generator) so they do not share the server's event loop. Every message
carries the time it was published; each client records arrival minus that time. A few "slow" clients
complete the WebSocket handshake and then never read, to show they get dropped (and counted) instead of
delaying everyone else. Prints p50 / p99 / max delivery latency over all deliveries.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import json
import os
import socket
import statistics
import struct
import sys
import time
from typing import Any

from aiohttp import web

from harvester.web.ws import Hub


def counters_like(seq: int, rules: int = 16) -> dict[str, Any]:
    """A message the size of a real per-rule counters push (16 rules, two sources)."""
    return {
        "t": time.time(),
        "type": "counters",
        "seq": seq,
        "rules": {f"rule-{i}": {"posts": (seq * 7 + i) % 50, "sentiment": 0.1234} for i in range(rules)},
        "sources": {name: {"state": "connected", "posts_per_minute": 1500.0, "posts": seq} for name in "ab"},
    }


class _BenchClient(asyncio.Protocol):
    """A minimal WebSocket reader: handshake, then split frames and note each one's timestamp.

    The load generator must be cheaper than the server it measures: a full client library per
    connection would make this process the bottleneck and the figures about it, not about the hub.
    """

    def __init__(self, request: bytes, latencies: list[float], done: asyncio.Future[int]) -> None:
        self.request = request
        self.latencies = latencies
        self.done = done
        self.buffer = b""
        self.open = False
        self.got = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.time()
        buf = self.buffer + data
        if not self.open:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buffer = buf
                return
            self.open, buf = True, buf[end + 4 :]
        while len(buf) >= 2:
            size, start = buf[1] & 0x7F, 2
            if size == 126:
                if len(buf) < 4:
                    break
                size, start = struct.unpack("!H", buf[2:4])[0], 4
            elif size == 127:
                if len(buf) < 10:
                    break
                size, start = struct.unpack("!Q", buf[2:10])[0], 10
            if len(buf) < start + size:
                break
            payload, opcode = buf[start : start + size], buf[0] & 0x0F
            buf = buf[start + size :]
            if opcode != 1:
                continue  # pings (aiohttp answers none needed here), close frames
            if payload.startswith(b'{"t":'):
                self.latencies.append(now - float(payload[5 : payload.index(b",")]))
                self.got += 1
            elif payload.startswith(b'{"type":"end"'):
                if not self.done.done():
                    self.done.set_result(self.got)
                self.transport.close()
        self.buffer = buf

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(self.got)


async def client_main(url: str, clients: int, expect: int) -> None:
    host, port = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    waits: list[asyncio.Future[int]] = []
    for start in range(0, clients, 100):  # connect in waves: a 1,000-SYN burst overflows the backlog
        for _ in range(min(100, clients - start)):
            key = base64.b64encode(os.urandom(16)).decode()
            request = (
                f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
            done: asyncio.Future[int] = loop.create_future()
            protocol = functools.partial(_BenchClient, request, latencies, done)
            await loop.create_connection(protocol, host, int(port))
            waits.append(done)
        await asyncio.sleep(0.05)
    got = await asyncio.gather(*waits)
    json.dump({"latencies": latencies, "missing": clients * expect - sum(got)}, sys.stdout)


async def stalled_client(host: str, port: int) -> asyncio.StreamWriter:
    """A WebSocket client that handshakes and then never reads: the worst kind of slow."""
    # A small receive window set before connecting (the window is agreed in the handshake), so the
    # kernel cannot quietly absorb what this client never reads and the server's buffer fills.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=1024)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    await reader.readuntil(b"\r\n\r\n")
    return writer


async def server_main(args: argparse.Namespace) -> dict[str, Any]:
    hub = Hub(args.buffer)

    async def ws(request: web.Request) -> web.StreamResponse:
        return await hub.serve(request)

    application = web.Application()
    application.router.add_get("/ws", ws)
    runner = web.AppRunner(application, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=2048)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port}/ws"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "harvester.web.bench",
        "--client-of",
        url,
        "--clients",
        str(args.clients),
        "--messages",
        str(args.messages),
        stdout=asyncio.subprocess.PIPE,
    )
    stalled = [await stalled_client("127.0.0.1", port) for _ in range(args.slow)]
    try:
        async with asyncio.timeout(120):
            while len(hub.clients) < args.clients + args.slow:  # noqa: ASYNC110 - clients are another process
                await asyncio.sleep(0.05)
        interval = 1.0 / args.rate
        publish_s: list[float] = []
        loop = asyncio.get_running_loop()
        started = loop.time()
        for seq in range(args.messages):
            # Scheduled on a fixed timetable, so a slow publish shows as latency instead of hiding it.
            await asyncio.sleep(max(0.0, started + seq * interval - loop.time()))
            before = time.perf_counter()
            hub.publish(counters_like(seq))
            publish_s.append(time.perf_counter() - before)
        await asyncio.sleep(0.5)
        hub.publish({"type": "end"})
        out, _ = await asyncio.wait_for(proc.communicate(), 120)
    finally:
        for writer in stalled:
            writer.close()
        await hub.close_all()
        await runner.cleanup()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    result: dict[str, Any] = json.loads(out)
    result["dropped"] = hub.dropped
    result["publish_s"] = publish_s
    return result


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harvester.web.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=60, help="messages pushed to every client")
    parser.add_argument("--rate", type=float, default=10.0, help="messages per second")
    parser.add_argument("--slow", type=int, default=5, help="clients that never read")
    parser.add_argument(
        "--buffer", type=int, default=256 * 1024, help="unsent bytes per client (web.ws_buffer_bytes)"
    )
    parser.add_argument("--client-of", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.client_of:
        asyncio.run(client_main(args.client_of, args.clients, args.messages))
        return 0
    result = asyncio.run(server_main(args))
    lat = result["latencies"]
    deliveries = args.clients * args.messages
    print(
        f"websocket fan-out: {args.clients} clients (+{args.slow} that never read), "
        f"{args.messages} messages at {args.rate:g}/s, buffer {args.buffer}"
    )
    print(
        f"  delivered {len(lat)} of {deliveries}, missing {result['missing']}, "
        f"slow clients dropped {result['dropped']}"
    )
    if lat:
        print(
            f"  delivery latency: p50 {percentile(lat, 0.5) * 1000:.1f} ms, "
            f"p99 {percentile(lat, 0.99) * 1000:.1f} ms, max {max(lat) * 1000:.1f} ms, "
            f"mean {statistics.fmean(lat) * 1000:.1f} ms"
        )
        pub = result["publish_s"]
        print(
            f"  server: one publish to all clients took p50 {percentile(pub, 0.5) * 1000:.1f} ms, "
            f"max {max(pub) * 1000:.1f} ms"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
