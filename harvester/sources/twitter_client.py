"""The boundary with tweepy: point it at a configurable base URL, run one stream connection at a
time, and turn its failures into harvester's terms.

tweepy hard-codes `https://api.twitter.com`. REST calls (rules, recent search) go through an aiohttp
session whose middleware rewrites each request to the configured base; the path is taken with
`raw_path_qs` so an encoded query ("cats%20OR%20dogs") is sent exactly as tweepy encoded it. The
stream gets a session of its own per connection, because tweepy closes the stream's session when the
stream ends, which would break every later REST call sharing it.

tweepy's stream loop reconnects by itself with plain `asyncio.sleep` and no jitter, and ends for good
on any exception it does not expect. So each `filter()` task here makes exactly one connection: the
lifecycle callbacks (clean close, HTTP error, network error) end it by raising a private signal that
tweepy hands to `on_exception`, and the collector applies X's policy with the injected sleep and
randomness before starting the next. Data callbacks never raise: whatever goes wrong in them is
caught and reported, so nothing we do can end a stream.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import structlog
from tweepy.asynchronous import AsyncClient, AsyncStreamingClient  # type: ignore[import-untyped]
from tweepy.asynchronous.streaming import AsyncBaseStream  # type: ignore[import-untyped]
from yarl import URL

from harvester.sources.twitter_policy import Failure

log = structlog.get_logger(__name__)

DEFAULT_API_BASE = "https://api.twitter.com"
# REST calls are small; a request that takes longer than this is treated as a network error.
REST_TIMEOUT_SECONDS = 30.0


def rewriting_session(base: str, *, timeout: float = REST_TIMEOUT_SECONDS) -> aiohttp.ClientSession:
    """An aiohttp session that sends every request to `base` instead of the host tweepy wrote."""
    target = base.rstrip("/")

    async def rewrite(
        request: aiohttp.ClientRequest,
        handler: Callable[[aiohttp.ClientRequest], Awaitable[aiohttp.ClientResponse]],
    ) -> aiohttp.ClientResponse:
        url = URL(target + request.url.raw_path_qs, encoded=True)
        request.url = url
        request.headers["Host"] = url.raw_authority
        return await handler(request)

    return aiohttp.ClientSession(middlewares=(rewrite,), timeout=aiohttp.ClientTimeout(total=timeout))


def rest_clients(session: aiohttp.ClientSession) -> tuple[Any, Any]:
    """(client for recent search, client for stream rules), both returning raw JSON dicts (the pure
    parsers read those) and sharing the rewriting session, which they never close."""
    search = AsyncClient(bearer_token="unset", return_type=dict)
    search.session = session
    rules = AsyncStreamingClient("unset", return_type=dict)
    rules.session = session
    return search, rules


class StreamEvents(Protocol):
    """What the collector does with a connection's events. Called from tweepy's stream task."""

    async def connected(self) -> None: ...

    async def line(self, raw: bytes) -> None: ...

    async def keep_alive(self) -> None: ...


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """How one stream connection ended. `failure` None means we ended it (a stall, a shutdown)."""

    failure: Failure | None
    status: int | None = None
    detail: str = ""
    # An exception tweepy's own code raised (a line over aiohttp's limit, say) rather than X.
    unexpected: BaseException | None = None


class _AttemptEnded(Exception):
    """Raised from a lifecycle callback to end tweepy's loop after one connection."""

    def __init__(self, result: AttemptResult) -> None:
        super().__init__(result.detail)
        self.result = result


def failure_for_status(status: int) -> Failure:
    return Failure.RATE_LIMITED if status in (420, 429) else Failure.HTTP


class OneShotStream(AsyncStreamingClient):  # type: ignore[misc]
    """tweepy's streaming client, redirected to `base`, making one connection per `filter()`."""

    def __init__(self, *, base: str, events: StreamEvents, read_timeout: float, max_line_bytes: int) -> None:
        super().__init__("unset", max_retries=0)
        self._base = base.rstrip("/")
        self._events = events
        self._read_timeout = read_timeout
        self._max_line_bytes = max_line_bytes
        self.result: AttemptResult | None = None

    def start(self, bearer_token: str, **params: Any) -> asyncio.Task[None]:
        """Open one connection to the filtered stream; the task ends when the connection does."""
        self.bearer_token = bearer_token
        self.result = None
        # Our own session for this connection: tweepy closes it when the stream ends. sock_read is a
        # real-time backstop; the collector's stall watchdog (on the injected clock) acts first.
        # aiohttp refuses lines over twice its read buffer by ending the stream (tweepy cannot go
        # on after that); with the buffer at our own line limit, a line between the two reaches the
        # parser, which counts and skips it without losing the connection.
        self.session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(sock_connect=10, sock_read=self._read_timeout),
            read_bufsize=self._max_line_bytes,
        )
        task: asyncio.Task[None] = self.filter(**params)
        return task

    async def _connect(self, method: str, endpoint: str, **kwargs: Any) -> None:
        url = f"{self._base}/2/tweets/{endpoint}/stream"
        headers = {"Authorization": f"Bearer {self.bearer_token}"}
        await AsyncBaseStream._connect(self, method, url, headers=headers, **kwargs)

    # -- lifecycle: each of these ends the connection attempt --------------------------------------
    async def on_closed(self, resp: aiohttp.ClientResponse) -> None:
        raise _AttemptEnded(AttemptResult(Failure.CLEAN_CLOSE, 200, "stream closed by the server"))

    async def on_request_error(self, status_code: int) -> None:
        raise _AttemptEnded(
            AttemptResult(failure_for_status(status_code), status_code, f"HTTP {status_code}")
        )

    async def on_connection_error(self) -> None:
        # Called inside tweepy's `except` for aiohttp's connection and payload errors.
        exc = sys.exc_info()[1]
        detail = f"{type(exc).__name__}: {exc}" if exc is not None else "connection error"
        raise _AttemptEnded(AttemptResult(Failure.NETWORK, None, detail[:300]))

    async def on_exception(self, exception: Exception) -> None:
        if isinstance(exception, _AttemptEnded):
            self.result = exception.result
            return
        detail = f"{type(exception).__name__}: {exception}"[:300]
        self.result = AttemptResult(Failure.NETWORK, None, detail, unexpected=exception)

    async def on_disconnect(self) -> None:
        pass  # tweepy logs this at info level on every attempt; the collector reports instead

    # -- data: never raises ---------------------------------------------------------------------
    async def on_connect(self) -> None:
        await self._guard(self._events.connected())

    async def on_data(self, raw_data: bytes) -> None:
        # Replaces tweepy's parsing, which ends the stream on bad JSON or a rule without a tag.
        await self._guard(self._events.line(raw_data))

    async def on_keep_alive(self) -> None:
        await self._guard(self._events.keep_alive())

    async def _guard(self, work: Awaitable[None]) -> None:
        try:
            await work
        except Exception:
            # A bug in our handling must cost one line, not the stream.
            log.exception("twitter stream callback failed; line skipped")
