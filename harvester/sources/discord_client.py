"""The discord.py `Client` the `discord` source drives: per-instance URLs, injected waits, raw frames.

discord.py keeps its endpoints in two process-global class attributes, `discord.http.Route.BASE` (REST)
and `DiscordWebSocket.DEFAULT_GATEWAY` (gateway). Setting them would point *every* client in the process
at the same place, so two sources (or two tests) would fight over them. Instead this client leaves the
globals alone and rewrites URLs on its own `HTTPClient` instance:

* every REST request whose URL starts with the library's `Route.BASE` gets this client's API base;
* a gateway connection to the library's default gateway goes to this client's gateway URL (with the
  same `v`/`encoding`/`compress` query). Resumes go to the `resume_gateway_url` the gateway itself
  sent in READY, unchanged, exactly as with the real Discord.

The rewrite relies on two private details of discord.py 2.x: a `Route` carries its full URL in
`route.url`, and the gateway is opened through `HTTPClient.ws_connect(url)`. Both are checked by the
tests against a fake Discord on 127.0.0.1. Other URLs (CDN, webhooks) are not rewritten; the source
never calls them.

The client also replaces the library's own timing where it matters to us: the 5 s wait before a
re-IDENTIFY goes through the source's injected sleep (`before_identify_hook` is discord.py's documented
hook for exactly this), and every gateway (re)connection first awaits `before_connect`, where the source
counts reconnections and paces a server that keeps dropping us.

Frames reach the source raw: with `enable_debug_events` discord.py hands every decoded gateway frame to
`on_socket_raw_receive`, and the source parses the payloads it needs with `harvester.wire.discord`,
the same pure functions that parse REST history.
"""

from __future__ import annotations

import warnings
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
import yarl

from harvester.clock import Sleep

# discord.py imports the standard library's `audioop` (for voice, which we never use), deprecated since
# Python 3.11; the warning would be an error under `-W error` and noise in the daemon's log otherwise.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*audioop.*", category=DeprecationWarning)
    import discord
    from discord.gateway import DiscordWebSocket
    from discord.http import HTTPClient, Route

# The first Client of a process warns that PyNaCl/davey are missing "so voice will NOT be supported".
# The source never joins voice, so the warning would only mislead whoever reads the daemon's log.
discord.VoiceClient.warn_nacl = False
discord.VoiceClient.warn_dave = False

__all__ = [
    "DiscordWebSocket",
    "GatewayClient",
    "Route",
    "discord",
    "gateway_intents",
    "rewrite_gateway_url",
    "rewrite_rest_url",
    "route_http",
]

log = structlog.get_logger(__name__)


def gateway_intents(message_content: bool) -> discord.Intents:
    """Only what the source reads: guilds (GUILD_CREATE, for the channel list) and guild messages,
    plus the privileged MESSAGE_CONTENT, without which Discord sends messages with empty content."""
    intents = discord.Intents.none()
    intents.guilds = True
    intents.guild_messages = True
    intents.message_content = message_content
    return intents


def rewrite_rest_url(url: str, api_base: str, library_base: str) -> str:
    """`url` with the library's REST base replaced by ours (other URLs unchanged)."""
    if url.startswith(library_base):
        return api_base + url[len(library_base) :]
    return url


def rewrite_gateway_url(url: str, gateway: yarl.URL, library_default: yarl.URL) -> str:
    """A connection to the library's default gateway goes to `gateway`, keeping its query."""
    parsed = yarl.URL(url)
    if (parsed.scheme, parsed.host, parsed.port, parsed.path) == (
        library_default.scheme,
        library_default.host,
        library_default.port,
        library_default.path,
    ):
        return str(gateway.with_query(parsed.query))
    return url


def route_http(
    http: HTTPClient,
    *,
    api_base: str,
    gateway: yarl.URL,
    before_connect: Callable[[], Awaitable[None]],
) -> None:
    """Bind this `HTTPClient` instance (not the class, not the globals) to our URLs."""
    original_request = http.request
    original_ws_connect = http.ws_connect

    async def request(route: Route, **kwargs: Any) -> Any:
        route.url = rewrite_rest_url(route.url, api_base, Route.BASE)
        return await original_request(route, **kwargs)

    async def ws_connect(url: str, *, compress: int = 0) -> Any:
        await before_connect()
        target = rewrite_gateway_url(url, gateway, DiscordWebSocket.DEFAULT_GATEWAY)
        return await original_ws_connect(target, compress=compress)

    http.request = request  # type: ignore[method-assign]
    http.ws_connect = ws_connect  # type: ignore[method-assign]


class GatewayClient(discord.Client):
    """A `discord.Client` owned by one source run. It caches as little as the library allows: no message
    cache, no member cache, no chunking."""

    def __init__(
        self,
        *,
        api_base: str,
        gateway_url: str,
        message_content: bool,
        heartbeat_timeout: float,
        identify_delay: float,
        sleep: Sleep,
        on_frame: Callable[[str], None],
        before_connect: Callable[[], Awaitable[None]],
    ) -> None:
        super().__init__(
            intents=gateway_intents(message_content),
            enable_debug_events=True,
            max_messages=None,
            member_cache_flags=discord.MemberCacheFlags.none(),
            chunk_guilds_at_startup=False,
            heartbeat_timeout=heartbeat_timeout,
        )
        self._identify_delay = identify_delay
        self._sleep = sleep
        self._on_frame = on_frame
        route_http(
            self.http,
            api_base=api_base.rstrip("/"),
            gateway=yarl.URL(gateway_url),
            before_connect=before_connect,
        )

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        # Discord limits IDENTIFYs (1 per 5 s per shard bucket, 1000 a day); the library's default waits
        # 5 s with asyncio.sleep before every re-IDENTIFY. Same wait, through the injected sleep.
        if not initial and self._identify_delay > 0:
            await self._sleep(self._identify_delay)

    async def on_socket_raw_receive(self, msg: str | bytes) -> None:
        # Called (as a task, in arrival order) for every decoded gateway frame, before nothing else of
        # ours can fail: the handler only parses and queues, and never raises into discord.py.
        text = msg.decode("utf-8", "replace") if isinstance(msg, bytes) else msg
        self._on_frame(text)

    async def on_error(self, event_method: str, /, *args: Any, **kwargs: Any) -> None:
        # discord.py's default prints a traceback to stderr; ours goes through structlog.
        log.exception("discord.py event handler failed", event=event_method)
