"""The `discord` source: guild messages from the Discord gateway, with history backfill after gaps.

```yaml
sources:
  - type: discord
    token: ${DISCORD_BOT_TOKEN}
    guilds: [123456789012345678]      # every message channel of these servers...
    channels: [234567890123456789]    # ...or only these channels
```

How it runs (one *run* = one discord.py `Client`, from login to an error or cancellation):

1. **Login** over REST (`GET /users/@me`, `GET /oauth2/applications/@me`). A 401 is a bad token:
   `PermanentSourceError`, the supervisor marks the source failed and the daemon keeps running.
2. **Gateway.** discord.py connects, IDENTIFYs with the GUILDS, GUILD_MESSAGES and privileged
   MESSAGE_CONTENT intents, heartbeats, and handles RESUME, RECONNECT (op 7), INVALID_SESSION and
   zombie connections (nothing received for `heartbeat_timeout`) itself. Fatal close codes end the run
   without a retry loop: 4014 (privileged intent not enabled), 4004 (bad token), 4010-4013 become a
   `PermanentSourceError` naming the cause; any other failure is transient and the supervisor restarts
   the run with backoff (a new run logs in again and backfills).
3. **Cursor.** Per channel (keyed `guild/channel`), the id of the newest message up to which everything
   has been handed to the pipeline, as compact JSON (`harvester.wire.discord.encode_cursor`). A channel
   first seen in a GUILD_CREATE is anchored at the current time (committed with `ctx.advance`), so even a
   quiet channel is backfilled after a restart.
4. **Backfill.** Discord replays missed events only on a successful RESUME. After every READY (a
   restart, or a re-IDENTIFY after INVALID_SESSION or a failed resume) each channel of the cursor is
   read with `GET /channels/{id}/messages?after=<cursor>&limit=100`, page after page, oldest first,
   until caught up or `backfill_limit` messages, *before* the live stream: live frames wait in the
   buffer meanwhile and follow, so each channel's cursor entry moves through a contiguous range and a
   crash mid-backfill resumes exactly there. Overlaps (a message both backfilled and live, or re-read
   after a restart from an older committed cursor) are dropped here by id, and by uid dedup downstream.
   Past `backfill_limit` the older part of a gap is skipped, logged and counted.
5. **Live buffer.** Frames are queued between discord.py and the emitting loop (bounded by
   `live_buffer` messages). A message that finds the buffer full is dropped and its channel is
   backfilled again, so a slow pipeline costs a REST call, not a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import aiohttp
import structlog
from pydantic import BaseModel, Field, PositiveInt, SecretStr, field_validator, model_validator

from harvester.config.durations import Duration
from harvester.config.schema import SourceConfig
from harvester.errors import MalformedPayload, PermanentSourceError, TransientSourceError
from harvester.health import SourceState
from harvester.plugins import SOURCES
from harvester.sources.base import Source, SourceContext
from harvester.sources.discord_client import GatewayClient, discord
from harvester.wire.discord import (
    MESSAGE_CHANNEL_TYPES,
    DiscordMessage,
    decode_cursor,
    encode_cursor,
    guild_channels,
    parse_message,
    snowflake,
    time_snowflake,
)

log = structlog.get_logger(__name__)

ChannelKey = tuple[int, int]  # (guild id, channel id)

# Discord returns at most 100 messages per history request.
HISTORY_PAGE = 100
# Message ids remembered to drop a message seen twice in one run (backfilled and live).
RECENT_IDS = 20_000
# A gateway session that stayed up this long (by the source clock) counts as healthy: the next
# reconnection is immediate again.
STABLE_SESSION_SECONDS = 30.0
# Reconnections in a row that are immediate before pacing starts (Discord expects a prompt RESUME);
# later ones wait a full-jitter exponential delay (1, 2, 4... s ceilings, capped) through ctx.sleep.
FREE_RECONNECTS = 2
# Below discord.py's 60 s `wait_for` around opening a gateway connection, which includes our pause.
RECONNECT_PACE_CAP = 30.0

# How long closing the gateway politely may take when the run ends.
CLOSE_TIMEOUT_SECONDS = 3.0

# Close codes after which reconnecting cannot help, with what the operator should do.
FATAL_CLOSE_CODES: Mapping[int, str] = {
    4004: "authentication failed (gateway close code 4004): the bot token is invalid or was reset",
    4010: "invalid shard (gateway close code 4010)",
    4011: "sharding required (gateway close code 4011): the bot is in too many guilds for one connection",
    4012: "invalid gateway API version (gateway close code 4012)",
    4013: "invalid intents (gateway close code 4013)",
    4014: (
        "the MESSAGE_CONTENT privileged intent is not enabled for this bot (gateway close code 4014): "
        "enable it in the Discord Developer Portal, Bot > Privileged Gateway Intents"
    ),
}


class DiscordConfig(SourceConfig):
    """A bot token (from the environment) and which guilds/channels to read."""

    type: Literal["discord"] = "discord"
    token: SecretStr
    guilds: list[PositiveInt] = []
    channels: list[PositiveInt] = []
    message_content: bool = True
    include_bots: bool = True
    backfill_limit: int = Field(default=1000, ge=0, le=100_000)
    live_buffer: PositiveInt = 10_000
    identify_delay: Duration = 5.0
    heartbeat_timeout: Duration = Field(default=60.0, gt=0)
    api_base_url: str = "https://discord.com/api/v10"
    gateway_url: str = "wss://gateway.discord.gg/"

    @field_validator("token")
    @classmethod
    def _token_present(cls, token: SecretStr) -> SecretStr:
        value = token.get_secret_value().strip()
        if not value:
            raise ValueError("the bot token is empty (set it from the environment: ${DISCORD_BOT_TOKEN})")
        if value.lower().startswith("bot "):
            raise ValueError("write the token without the 'Bot ' prefix")
        return SecretStr(value)

    @field_validator("api_base_url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"must be an http:// or https:// URL, got {url!r}")
        return url.rstrip("/")

    @field_validator("gateway_url")
    @classmethod
    def _ws_url(cls, url: str) -> str:
        if not url.startswith(("ws://", "wss://")):
            raise ValueError(f"must be a ws:// or wss:// URL, got {url!r}")
        return url

    @model_validator(mode="after")
    def _something_to_read(self) -> DiscordConfig:
        if not self.guilds and not self.channels:
            raise ValueError("list the guilds and/or channels to read (guilds: [...], channels: [...])")
        return self

    def allows(self, key: ChannelKey) -> bool:
        """Is a message in this guild/channel collected? `channels`, when given, is the allow-list and
        `guilds` narrows it further; otherwise every channel of the listed guilds."""
        guild, channel = key
        if self.channels:
            return channel in self.channels and (not self.guilds or guild in self.guilds)
        return guild in self.guilds

    def watches(self, key: ChannelKey, channel_type: int) -> bool:
        """Is a channel listed in a GUILD_CREATE one to keep a cursor for?"""
        if self.channels:
            return self.allows(key)
        return self.allows(key) and channel_type in MESSAGE_CHANNEL_TYPES


@dataclass
class _Counters:
    sessions: int = 0  # READYs in this run (1 = the first IDENTIFY)
    resumes: int = 0
    reidentifies: int = 0
    backfilled: int = 0
    backfill_requests: int = 0
    backfill_truncated: int = 0
    backfill_skipped_channels: int = 0
    live_overflow: int = 0
    duplicates: int = 0
    skipped: int = 0  # system messages, bots when include_bots is false


class _FrameBuffer:
    """Ordered hand-off from discord.py's event tasks to the emitting loop. Control frames (READY,
    RESUMED, GUILD_CREATE) always fit; messages are bounded."""

    def __init__(self, max_messages: int) -> None:
        self._items: deque[tuple[str, object]] = deque()
        self._messages = 0
        self._max_messages = max_messages
        self._ready = asyncio.Event()

    def put(self, kind: str, data: object) -> bool:
        if kind == "message":
            if self._messages >= self._max_messages:
                return False
            self._messages += 1
        self._items.append((kind, data))
        self._ready.set()
        return True

    async def get(self) -> tuple[str, object]:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        kind, data = self._items.popleft()
        if kind == "message":
            self._messages -= 1
        return kind, data


@dataclass
class _ChannelState:
    """The cursor, and the channels whose live messages were dropped (buffer full)."""

    entries: dict[ChannelKey, int]
    # Per channel, the smallest live message id dropped: backfill again from before it.
    dropped: dict[ChannelKey, int] = field(default_factory=dict)


class DiscordSource(Source):
    config_class = DiscordConfig

    def __init__(self, config: BaseModel) -> None:
        if not isinstance(config, DiscordConfig):
            raise TypeError(f"DiscordSource needs a DiscordConfig, got {type(config).__name__}")
        super().__init__(config)
        self.settings = config

    async def run(self, ctx: SourceContext) -> None:
        try:
            entries = decode_cursor(ctx.cursor)
        except ValueError as exc:
            raise PermanentSourceError(f"{exc}; delete the source's checkpoint to start fresh") from exc
        await _Run(self.settings, ctx, entries).run()


class _Run:
    """One login-to-failure lifetime of a discord.py client."""

    def __init__(self, settings: DiscordConfig, ctx: SourceContext, entries: dict[ChannelKey, int]) -> None:
        self.settings = settings
        self.ctx = ctx
        self.state = _ChannelState(entries)
        self.frames = _FrameBuffer(settings.live_buffer)
        self.counters = _Counters()
        self.recent: OrderedDict[int, None] = OrderedDict()
        self.connects = 0
        self.unstable = 0  # reconnections since the last stable session
        self.established_at: float | None = None
        self.client = GatewayClient(
            api_base=settings.api_base_url,
            gateway_url=settings.gateway_url,
            message_content=settings.message_content,
            heartbeat_timeout=settings.heartbeat_timeout,
            identify_delay=settings.identify_delay,
            sleep=ctx.sleep,
            on_frame=self.on_frame,
            before_connect=self.before_connect,
        )
        ctx.health.extra["discord"] = self._report()

    # -- lifecycle -----------------------------------------------------------------------------------

    async def run(self) -> None:
        client = self.client
        tasks: list[asyncio.Task[None]] = []
        try:
            await self._login()
            gateway = asyncio.create_task(client.connect(reconnect=False), name=f"{self.ctx.name}-gateway")
            emitter = asyncio.create_task(self._emit_loop(), name=f"{self.ctx.name}-emitter")
            tasks = [gateway, emitter]
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if emitter in done:
                emitter.result()  # raises what ended it (a mapped REST error)
            self._gateway_ended(gateway)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(BaseException):
                    await task
            await self._close()

    async def _close(self) -> None:
        """Close the gateway and the HTTP session, whatever state the run ended in."""
        try:
            # A peer that never answers the close frame would hold the daemon's drain for aiohttp's
            # 30 s close timeout; the session is over either way.
            async with asyncio.timeout(CLOSE_TIMEOUT_SECONDS):
                await self.client.close()
        except Exception as exc:  # timed out, or a socket already reset: the HTTP session must still close
            log.debug("discord client close failed", source=self.ctx.name, error=repr(exc))
        finally:
            await self.client.http.close()
            # discord.py waits up to guild_ready_timeout after READY for more guilds in a task of
            # its own that close() leaves running; a source stopped right after connecting would
            # otherwise leave it behind for two seconds.
            ready = getattr(self.client._connection, "_ready_task", None)
            if ready is not None and not ready.done():
                ready.cancel()
                await asyncio.gather(ready, return_exceptions=True)

    async def _login(self) -> None:
        token = self.settings.token.get_secret_value()
        try:
            await self.client.login(token)
        except discord.LoginFailure as exc:
            raise PermanentSourceError(
                "discord rejected the bot token (HTTP 401 on GET /users/@me): check the token's variable"
            ) from exc
        except discord.HTTPException as exc:
            raise TransientSourceError(f"discord login failed: HTTP {exc.status}") from exc
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise TransientSourceError(f"discord login failed: {type(exc).__name__}: {exc}") from exc

    def _gateway_ended(self, gateway: asyncio.Task[None]) -> None:
        """Map how `Client.connect` ended to our error types (it never ends on its own while healthy)."""
        exc = gateway.exception()
        if exc is None:
            raise TransientSourceError("discord gateway connection ended")
        if isinstance(exc, discord.PrivilegedIntentsRequired):
            raise PermanentSourceError(FATAL_CLOSE_CODES[4014]) from exc
        if isinstance(exc, discord.ConnectionClosed):
            reason = FATAL_CLOSE_CODES.get(exc.code)
            if reason is not None:
                raise PermanentSourceError(reason) from exc
            raise TransientSourceError(f"discord gateway closed with code {exc.code}") from exc
        if isinstance(
            exc,
            discord.GatewayNotFound | discord.HTTPException | aiohttp.ClientError | OSError | TimeoutError,
        ):
            raise TransientSourceError(f"discord gateway: {type(exc).__name__}: {exc}") from exc
        raise exc

    async def before_connect(self) -> None:
        """Every gateway connection attempt: count it, and pace one that follows quick failures."""
        now = self.ctx.clock.now().timestamp()
        if self.established_at is not None and now - self.established_at >= STABLE_SESSION_SECONDS:
            self.unstable = 0
        self.established_at = None
        self.connects += 1
        if self.connects > 1:
            self.unstable += 1
            self.ctx.health.reconnected("gateway")
        self.ctx.set_state(SourceState.CONNECTING)
        if self.unstable > FREE_RECONNECTS:
            ceiling = min(RECONNECT_PACE_CAP, 2.0 ** (self.unstable - FREE_RECONNECTS - 1))
            delay = self.ctx.rng.uniform(0.0, ceiling)
            log.debug("discord gateway reconnect paused", source=self.ctx.name, delay_s=round(delay, 2))
            await self.ctx.sleep(delay)

    def _established(self) -> None:
        self.established_at = self.ctx.clock.now().timestamp()
        self.ctx.set_state(SourceState.CONNECTED)

    # -- frames (called from discord.py's event tasks, in arrival order) -----------------------------

    def on_frame(self, text: str) -> None:
        try:
            frame = json.loads(text)
        except ValueError:
            self.ctx.malformed("discord gateway frame is not JSON")
            return
        if not isinstance(frame, dict) or frame.get("op") != 0:
            return  # HELLO, ACKs, RECONNECT...: discord.py handles them
        event, data = frame.get("t"), frame.get("d")
        if event == "MESSAGE_CREATE":
            key = _message_key(data)
            if key is None or not self.settings.allows(key):
                return  # another guild, a DM, or not parseable far enough to tell: not ours
            if not self.frames.put("message", data):
                self.counters.live_overflow += 1
                self.ctx.health.extra["discord"] = self._report()
                message_id = _raw_id(data) or 1
                dropped = self.state.dropped
                dropped[key] = min(dropped.get(key, message_id), message_id)
        elif event == "READY":
            self.frames.put("ready", data)
        elif event == "RESUMED":
            self.frames.put("resumed", data)
        elif event == "GUILD_CREATE":
            self.frames.put("guild", data)

    # -- the emitting loop ---------------------------------------------------------------------------

    async def _emit_loop(self) -> None:
        while True:
            kind, data = await self.frames.get()
            if kind == "message":
                await self._live_message(data)
            elif kind == "ready":
                await self._session_started()
            elif kind == "resumed":
                self.counters.resumes += 1
                self._established()
            elif kind == "guild":
                await self._guild_available(data)
            if self.state.dropped:
                await self._backfill_dropped()
            self.ctx.health.extra["discord"] = self._report()

    async def _session_started(self) -> None:
        """READY: a new session. Whatever happened since the cursor was not replayed: backfill."""
        self.counters.sessions += 1
        if self.counters.sessions > 1:
            self.counters.reidentifies += 1
        self._established()
        entries = self.state.entries
        for key in [k for k in entries if not self.settings.allows(k)]:
            del entries[key]  # no longer configured: forget it
        for key in sorted(entries):
            await self._backfill(key)

    async def _guild_available(self, data: object) -> None:
        try:
            guild_id, channels = guild_channels(data)
        except MalformedPayload as exc:
            self.ctx.malformed(f"discord GUILD_CREATE: {exc}")
            return
        anchor = time_snowflake(self.ctx.clock.now()) - 1  # "after" is exclusive: keep this millisecond
        new = False
        for channel in channels:
            key = (guild_id, channel.id)
            if key not in self.state.entries and self.settings.watches(key, channel.type):
                self.state.entries[key] = anchor
                new = True
        if new:
            await self.ctx.advance(encode_cursor(self.state.entries))

    async def _live_message(self, data: object) -> None:
        try:
            message = parse_message(data)
        except MalformedPayload as exc:
            self.ctx.malformed(f"discord MESSAGE_CREATE: {exc}")
            return
        await self._emit(message)

    async def _emit(self, message: DiscordMessage) -> None:
        if message.id in self.recent:
            self.counters.duplicates += 1
            return
        self.recent[message.id] = None
        if len(self.recent) > RECENT_IDS:
            self.recent.popitem(last=False)
        assert message.guild_id is not None  # only guild channels pass `allows`
        key = (message.guild_id, message.channel_id)
        entries = self.state.entries
        entries[key] = max(entries.get(key, 0), message.id)
        if not message.has_content or (message.author_is_bot and not self.settings.include_bots):
            self.counters.skipped += 1
            return
        post = message.to_post(self.ctx.name, self.ctx.clock.now())
        await self.ctx.emit(post, cursor=encode_cursor(entries))

    # -- backfill ------------------------------------------------------------------------------------
    #
    # A backfill runs inside the emitting loop, so no live message is emitted while it runs: live frames
    # wait in the buffer and come out after it, the ones it already covered dropped by id. Each channel's
    # backfill is contiguous from its cursor entry, so the entry can follow it message by message and a
    # crash at any point resumes exactly there.

    async def _backfill_dropped(self) -> None:
        state = self.state
        dropped, state.dropped = state.dropped, {}
        for key, first_dropped in sorted(dropped.items()):
            state.entries.setdefault(key, first_dropped - 1)
            await self._backfill(key)

    async def _backfill(self, key: ChannelKey) -> None:
        """Read one channel's history after its cursor entry, oldest first, until caught up or
        `backfill_limit` messages; then move the entry past everything read."""
        after = await self._read_history(key)
        entries = self.state.entries
        if key not in entries:  # the channel is gone: commit forgetting it
            await self.ctx.advance(encode_cursor(entries))
        elif after > entries[key]:
            # Past trailing system messages or malformed items: committed without a post.
            entries[key] = after
            await self.ctx.advance(encode_cursor(entries))

    async def _read_history(self, key: ChannelKey) -> int:
        """Emit the channel's messages after its entry; return the newest id read."""
        limit = self.settings.backfill_limit
        guild_id, channel_id = key
        after = self.state.entries[key]
        fetched = 0
        while fetched < limit:
            want = min(HISTORY_PAGE, limit - fetched)
            page = await self._history(channel_id, want, after)
            if page is None:
                return after
            self.counters.backfill_requests += 1
            fetched += len(page)
            ids = []
            messages = []
            for item in page:
                try:
                    message = parse_message(item, guild_id=guild_id)
                except MalformedPayload as exc:
                    self.ctx.malformed(f"discord history: {exc}")
                    raw_id = _raw_id(item)
                    if raw_id is not None:
                        ids.append(raw_id)
                    continue
                ids.append(message.id)
                messages.append(message)
            # Discord answers newest first; the pipeline wants the oldest first.
            for message in sorted(messages, key=lambda m: m.id):
                self.counters.backfilled += 1
                await self._emit(message)
            if ids:
                after = max(after, *ids)
            if len(page) < want or not ids:
                return after  # caught up
        if limit > 0:
            self.counters.backfill_truncated += 1
            log.warning(
                "discord backfill stopped at backfill_limit; older missed messages are skipped",
                source=self.ctx.name,
                channel=f"{guild_id}/{channel_id}",
                limit=limit,
            )
        return after

    async def _history(self, channel_id: int, limit: int, after: int) -> list[object] | None:
        """One history page, or None when the channel cannot be read (gone, or no access)."""
        try:
            page: object = await self.client.http.logs_from(channel_id, limit, after=after)
        except discord.NotFound:
            log.warning("discord channel not found; dropping it from the cursor", channel=channel_id)
            for key in [k for k in self.state.entries if k[1] == channel_id]:
                del self.state.entries[key]
            self.counters.backfill_skipped_channels += 1
            return None
        except discord.Forbidden:
            log.warning("discord channel not readable by the bot; not backfilled", channel=channel_id)
            self.counters.backfill_skipped_channels += 1
            return None
        except discord.HTTPException as exc:
            raise TransientSourceError(f"discord history of channel {channel_id}: HTTP {exc.status}") from exc
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            reason = type(exc).__name__
            raise TransientSourceError(f"discord history of channel {channel_id}: {reason}") from exc
        if not isinstance(page, list):
            self.ctx.malformed("discord history response is not a list")
            return None
        return page

    def _report(self) -> dict[str, object]:
        c = self.counters
        return {
            "sessions": c.sessions,
            "resumes": c.resumes,
            "reidentifies": c.reidentifies,
            "channels": len(self.state.entries),
            "backfilled": c.backfilled,
            "backfill_requests": c.backfill_requests,
            "backfill_truncated": c.backfill_truncated,
            "backfill_skipped_channels": c.backfill_skipped_channels,
            "live_overflow": c.live_overflow,
            "duplicates": c.duplicates,
            "skipped": c.skipped,
        }


def _message_key(data: object) -> ChannelKey | None:
    if not isinstance(data, dict):
        return None
    try:
        return snowflake(data.get("guild_id"), "guild_id"), snowflake(data.get("channel_id"), "channel_id")
    except MalformedPayload:
        return None


def _raw_id(item: object) -> int | None:
    if not isinstance(item, dict):
        return None
    try:
        return snowflake(item.get("id"), "id")
    except MalformedPayload:
        return None


SOURCES.register("discord", DiscordConfig, DiscordSource)
