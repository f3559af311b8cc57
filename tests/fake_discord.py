"""A fake Discord on 127.0.0.1: the REST calls discord.py makes at login, channel history, and the
gateway WebSocket (HELLO, HEARTBEAT/ACK, IDENTIFY -> READY + GUILD_CREATE, RESUME with replay of
missed events -> RESUMED, MESSAGE_CREATE), with faults the tests inject: dropped connections
(close 4000), RECONNECT (op 7), INVALID_SESSION (op 9), zombie connections (nothing sent, no ACKs),
and fatal close codes at IDENTIFY (4014, 4004).

It speaks the real wire formats closely enough for the real discord.py to run against it: REST bodies
have `Content-Type: application/json` exactly (discord.py compares the header verbatim), gateway
frames are plain TEXT JSON (discord.py asks for zlib-stream but accepts text), history is returned
newest first with Discord's `after`/`limit` semantics (the `limit` oldest messages after the id).

Tests wait on `changes.until(predicate)`: every state change (a frame, a connection, an emitted post
when the harness shares the same `Changes`) wakes the waiters, so nothing waits on a guessed sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import WSMsgType, web

from harvester.clock import SystemClock
from harvester.health import HealthRegistry
from harvester.models import Post
from harvester.sources.base import Envelope, SourceContext
from harvester.wire.discord import DISCORD_EPOCH_MS

BOT_USER = {
    "id": "900000000000000001",
    "username": "harvester-bot",
    "discriminator": "0",
    "avatar": None,
    "bot": True,
}
APPLICATION = {
    "id": "900000000000000002",
    "name": "harvester",
    "icon": None,
    "description": "",
    "bot_public": False,
    "bot_require_code_grant": False,
    "owner": {"id": "900000000000000003", "username": "owner", "discriminator": "0", "avatar": None},
    "verify_key": "0" * 64,
    "flags": 0,
}


class Changes:
    """Wake-ups for tests: `notify()` on every change, `until(predicate)` waits for it to hold."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()

    async def until(self, predicate: Callable[[], bool], what: str, bound: float = 15.0) -> None:
        try:
            async with asyncio.timeout(bound):  # a bound on waiting, never what makes a test pass
                while not predicate():
                    self._event.clear()
                    await self._event.wait()
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what}") from None


def json_response(payload: object, status: int = 200) -> web.Response:
    # web.json_response would add "; charset=utf-8", which discord.py does not recognise as JSON.
    return web.Response(
        body=json.dumps(payload).encode(), status=status, headers={"Content-Type": "application/json"}
    )


@dataclass
class Connection:
    ws: web.WebSocketResponse
    session: Session | None = None
    zombie: bool = False  # stops sending anything (no ACKs, no events), as a dead peer would

    @property
    def live(self) -> bool:
        return not self.ws.closed and not self.zombie


@dataclass
class Session:
    id: str
    seq: int = 0
    frames: list[dict[str, Any]] = field(default_factory=list)  # everything dispatched, for RESUME replay
    conn: Connection | None = None
    valid: bool = True


class FakeDiscord:
    def __init__(
        self,
        *,
        token: str = "good-token",
        guilds: dict[int, list[int]] | None = None,
        close_on_identify: int | None = None,
        heartbeat_interval_ms: int = 41_250,
        changes: Changes | None = None,
    ) -> None:
        self.token = token
        self.guilds = guilds if guilds is not None else {111: [201, 202]}
        self.close_on_identify = close_on_identify
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.changes = changes or Changes()
        self.histories: dict[int, list[dict[str, Any]]] = {
            channel: [] for channels in self.guilds.values() for channel in channels
        }
        self.channel_guild = {c: g for g, channels in self.guilds.items() for c in channels}
        self.forbidden: set[int] = set()
        self.gateway_unavailable = False  # answer the WebSocket upgrade with 503
        self.sessions: dict[str, Session] = {}
        self.connections: list[Connection] = []
        self.extra_guild_channels: dict[int, list[dict[str, Any]]] = {}
        # What the clients did, for assertions.
        self.connects = 0
        self.connect_failures = 0
        self.connect_paths: list[str] = []
        self.identifies: list[dict[str, Any]] = []
        self.resumes = 0
        self.resumed = 0  # resumes accepted
        self.heartbeats = 0
        self.rest_calls: list[str] = []
        self.history_calls: list[tuple[int, int | None, int]] = []
        self._session_ids = itertools.count(1)
        self._ms = int(time.time() * 1000)
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- server lifecycle --------------------------------------------------------------------------

    async def start(self) -> FakeDiscord:
        app = web.Application()
        app.router.add_get("/api/v10/users/@me", self._users_me)
        app.router.add_get("/api/v10/oauth2/applications/@me", self._application)
        app.router.add_get("/api/v10/channels/{channel_id}/messages", self._history)
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/resume", self._gateway)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[attr-defined]
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self

    async def stop(self) -> None:
        for conn in self.connections:
            await conn.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def api_base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    # -- what tests do -----------------------------------------------------------------------------

    def next_id(self) -> tuple[int, str]:
        """A fresh snowflake minted now (and after the previous one) and its ISO timestamp."""
        self._ms = max(self._ms + 1, int(time.time() * 1000))
        when = datetime.fromtimestamp(self._ms / 1000, UTC).isoformat()
        return (self._ms - DISCORD_EPOCH_MS) << 22, when

    async def post_message(self, channel_id: int, content: str = "hello", **extra: Any) -> dict[str, Any]:
        """A user writes a message: it goes into the channel's history and to every live session."""
        message_id, when = self.next_id()
        message: dict[str, Any] = {
            "id": str(message_id),
            "channel_id": str(channel_id),
            "type": 0,
            "content": content,
            "author": {"id": "800000000000000001", "username": "alice", "discriminator": "0", "avatar": None},
            "timestamp": when,
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [],
            "embeds": [],
            "pinned": False,
            **extra,
        }
        self.histories.setdefault(channel_id, []).append(message)
        guild_id = self.channel_guild.get(channel_id)
        event = dict(message)
        if guild_id is not None:
            event["guild_id"] = str(guild_id)
            event["member"] = {"roles": [], "joined_at": when, "deaf": False, "mute": False}
        for session in list(self.sessions.values()):
            if session.valid:
                await self._dispatch(session, "MESSAGE_CREATE", event)
        self.changes.notify()
        return message

    async def dispatch_raw(self, event: str, data: dict[str, Any]) -> None:
        """Send any dispatch (a malformed one, say) to every valid session."""
        for session in list(self.sessions.values()):
            if session.valid:
                await self._dispatch(session, event, data)
        self.changes.notify()

    def live_connections(self) -> list[Connection]:
        return [c for c in self.connections if not c.ws.closed]

    async def drop_connection(self, code: int = 4000) -> None:
        """The connection dies with a resumable close code: the client should RESUME."""
        for conn in self.live_connections():
            await conn.ws.close(code=code)

    async def send_reconnect(self) -> None:
        """op 7 RECONNECT: the client should close and RESUME."""
        for conn in self.live_connections():
            await self._send(conn, {"op": 7, "d": None, "s": None, "t": None})

    async def invalidate_session(self, resumable: bool = False) -> None:
        """op 9 INVALID_SESSION. false: the session is gone, the client must IDENTIFY again; true: the
        client may RESUME it."""
        for conn in self.live_connections():
            if conn.session is not None and not resumable:
                conn.session.valid = False
            await self._send(conn, {"op": 9, "d": resumable, "s": None, "t": None})

    def make_zombie(self) -> None:
        """The server side goes silent on the current connections (a half-dead TCP connection)."""
        for conn in self.live_connections():
            conn.zombie = True

    # -- REST --------------------------------------------------------------------------------------

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bot {self.token}"

    async def _users_me(self, request: web.Request) -> web.Response:
        self.rest_calls.append("GET /users/@me")
        self.changes.notify()
        if not self._authorized(request):
            return json_response({"message": "401: Unauthorized", "code": 0}, status=401)
        return json_response(BOT_USER)

    async def _application(self, request: web.Request) -> web.Response:
        self.rest_calls.append("GET /oauth2/applications/@me")
        if not self._authorized(request):
            return json_response({"message": "401: Unauthorized", "code": 0}, status=401)
        return json_response(APPLICATION)

    async def _history(self, request: web.Request) -> web.Response:
        channel_id = int(request.match_info["channel_id"])
        after = int(request.query["after"]) if "after" in request.query else None
        limit = min(int(request.query.get("limit", "50")), 100)
        self.history_calls.append((channel_id, after, limit))
        self.rest_calls.append(f"GET /channels/{channel_id}/messages")
        self.changes.notify()
        if not self._authorized(request):
            return json_response({"message": "401: Unauthorized", "code": 0}, status=401)
        if channel_id in self.forbidden:
            return json_response({"message": "Missing Access", "code": 50001}, status=403)
        if channel_id not in self.histories:
            return json_response({"message": "Unknown Channel", "code": 10003}, status=404)
        messages = self.histories[channel_id]
        if after is not None:
            page = [m for m in messages if int(m["id"]) > after][:limit]
        else:
            page = messages[-limit:]
        return json_response(list(reversed(page)))  # newest first, as Discord returns it

    # -- gateway -----------------------------------------------------------------------------------

    async def _gateway(self, request: web.Request) -> web.StreamResponse:
        if self.gateway_unavailable:
            self.connect_failures += 1
            self.changes.notify()
            return json_response({"message": "upstream unavailable", "code": 0}, status=503)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        conn = Connection(ws)
        self.connections.append(conn)
        self.connects += 1
        self.connect_paths.append(request.path)
        self.changes.notify()
        hello = {"heartbeat_interval": self.heartbeat_interval_ms}
        await self._send(conn, {"op": 10, "d": hello, "s": None, "t": None})
        try:
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                await self._received(conn, json.loads(msg.data))
        finally:
            if conn.session is not None and conn.session.conn is conn:
                conn.session.conn = None
            self.changes.notify()
        return ws

    async def _received(self, conn: Connection, payload: dict[str, Any]) -> None:
        op, data = payload.get("op"), payload.get("d") or {}
        if op == 1:
            self.heartbeats += 1
            if not conn.zombie:
                await self._send(conn, {"op": 11, "d": None, "s": None, "t": None})
        elif op == 2:
            await self._identify(conn, data)
        elif op == 6:
            await self._resume(conn, data)
        self.changes.notify()

    async def _identify(self, conn: Connection, data: dict[str, Any]) -> None:
        self.identifies.append(data)
        if self.close_on_identify is not None:
            await conn.ws.close(code=self.close_on_identify)
            return
        if data.get("token") != self.token:
            await conn.ws.close(code=4004, message=b"Authentication failed.")
            return
        session = Session(id=f"session-{next(self._session_ids)}")
        self.sessions[session.id] = session
        session.conn = conn
        conn.session = session
        ready = {
            "v": 10,
            "user": BOT_USER,
            "guilds": [{"id": str(g), "unavailable": True} for g in self.guilds],
            "session_id": session.id,
            "resume_gateway_url": f"ws://127.0.0.1:{self.port}/resume",
            "application": {"id": APPLICATION["id"], "flags": 0},
        }
        await self._dispatch(session, "READY", ready)
        for guild_id, channels in self.guilds.items():
            await self._dispatch(session, "GUILD_CREATE", self._guild_payload(guild_id, channels))

    def _guild_payload(self, guild_id: int, channels: list[int]) -> dict[str, Any]:
        listed = [
            {"id": str(c), "type": 0, "name": f"channel-{c}", "position": i, "permission_overwrites": []}
            for i, c in enumerate(channels)
        ]
        return {
            "id": str(guild_id),
            "name": f"guild-{guild_id}",
            "unavailable": False,
            "owner_id": APPLICATION["owner"]["id"],  # type: ignore[index]
            "member_count": 2,
            "large": False,
            "features": [],
            "roles": [],
            "emojis": [],
            "stickers": [],
            "members": [],
            "channels": [*listed, *self.extra_guild_channels.get(guild_id, [])],
            "threads": [],
            "joined_at": "2026-01-01T00:00:00+00:00",
        }

    async def _resume(self, conn: Connection, data: dict[str, Any]) -> None:
        self.resumes += 1
        session = self.sessions.get(str(data.get("session_id")))
        if session is None or not session.valid or data.get("token") != self.token:
            await self._send(conn, {"op": 9, "d": False, "s": None, "t": None})
            return
        self.resumed += 1
        session.conn = conn
        conn.session = session
        last_seen = data.get("seq") or 0
        for frame in session.frames:
            if frame["s"] > last_seen:
                await self._send(conn, frame)
        await self._dispatch(session, "RESUMED", {})

    async def _dispatch(self, session: Session, event: str, data: dict[str, Any]) -> None:
        session.seq += 1
        frame = {"op": 0, "t": event, "s": session.seq, "d": data}
        session.frames.append(frame)
        if session.conn is not None and session.conn.live:
            await self._send(session.conn, frame)

    async def _send(self, conn: Connection, frame: dict[str, Any]) -> None:
        if conn.ws.closed:
            return
        # The client may go away mid-send; the frame stays in the session for a resume.
        with contextlib.suppress(ConnectionError):
            await conn.ws.send_str(json.dumps(frame))


# --------------------------------------------------------------------------------------------------
# The other side of a source: a stand-in for the inbox and the store


class FastSleep:
    """The injected sleep: records what the source and supervisor asked for and only yields."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        await asyncio.sleep(0)


class Store:
    """Receives envelopes like the inbox and "commits" them in batches like the writer: the committed
    cursor is the newest cursor of a committed batch, and `crash()` loses the uncommitted tail, as a
    kill -9 would. `stored` is every committed post, duplicates included (dedup is downstream)."""

    def __init__(self, changes: Changes, commit_every: int = 1) -> None:
        self.changes = changes
        self.commit_every = commit_every
        self.uncommitted: list[Envelope] = []
        self.stored: list[Post] = []
        self.committed_cursor: str | None = None
        self.gate: asyncio.Event | None = None  # when set to a cleared Event, put() blocks (a full inbox)

    async def put(self, envelope: Envelope) -> bool:
        if self.gate is not None:
            await self.gate.wait()
        self.uncommitted.append(envelope)
        if len(self.uncommitted) >= self.commit_every:
            self.commit()
        self.changes.notify()
        return True

    def commit(self) -> None:
        for envelope in self.uncommitted:
            if envelope.post is not None:
                self.stored.append(envelope.post)
            if envelope.cursor is not None:
                self.committed_cursor = envelope.cursor
        self.uncommitted.clear()

    def crash(self) -> None:
        self.uncommitted.clear()

    def everything(self) -> list[Post]:
        """Committed plus uncommitted posts, for tests that do not model commits."""
        return [*self.stored, *(e.post for e in self.uncommitted if e.post is not None)]

    def texts(self) -> list[str]:
        return [p.text for p in self.everything()]


class NotifyingDict(dict[str, object]):
    """`health.extra` that wakes the waiters when the source publishes new figures."""

    def __init__(self, changes: Changes) -> None:
        super().__init__()
        self.changes = changes

    def __setitem__(self, key: str, value: object) -> None:
        super().__setitem__(key, value)
        self.changes.notify()


def source_context(
    store: Store, *, name: str = "discord", cursor: str | None = None, sleep: FastSleep | None = None
) -> SourceContext:
    health = HealthRegistry().source(name, "discord")
    health.extra = NotifyingDict(store.changes)
    return SourceContext(
        name=name,
        put=store.put,
        health=health,
        clock=SystemClock(),
        sleep=sleep or FastSleep(),
        rng=random.Random(7),
        cursor=cursor,
    )
