"""What the HTTP sinks share: one aiohttp session per sink and the mapping of HTTP outcomes to `SinkError`.

The mapping is a pure function (`classify_response`), tested without sockets:
2xx is success; 429 and 5xx (and 408/425) are transient, with `retry_after` from the `Retry-After`
header (seconds or an HTTP date) or from a platform's JSON body; other 4xx are permanent (a wrong URL
or token does not fix itself). Connection failures and timeouts are transient. Error messages name
the sink and the status, never the URL: webhook URLs and bot tokens are secrets.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from pydantic import Field

from harvester.alerts.sinks.base import Sink
from harvester.config.durations import Duration
from harvester.config.schema import SinkConfig
from harvester.errors import SinkError

RetryHint = Callable[[Any], float | None]
_TRANSIENT_4XX = {408, 425, 429}
_ERROR_BODY_CHARS = 200


class HttpSinkConfig(SinkConfig):
    """Keys every HTTP sink has."""

    timeout: Duration = Field(default=10.0, gt=0)


@dataclass(frozen=True, slots=True)
class HttpResult:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """`Retry-After` as seconds from now: delta-seconds or an HTTP date; None if absent or garbage."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if math.isnan(seconds):
        return None
    return max(0.0, seconds)


def classify_response(what: str, result: HttpResult, retry_hint: RetryHint | None = None) -> SinkError | None:
    """None for success, else the `SinkError` the dispatcher should see."""
    if 200 <= result.status < 300:
        return None
    retry_after = parse_retry_after(result.headers.get("Retry-After"))
    if retry_after is None and retry_hint is not None:
        data = result.json()
        if data is not None:
            retry_after = retry_hint(data)
    detail = result.body[:_ERROR_BODY_CHARS].decode("utf-8", "replace").strip()
    message = f"{what}: HTTP {result.status}" + (f": {detail}" if detail else "")
    transient = result.status >= 500 or result.status in _TRANSIENT_4XX
    return SinkError(message, permanent=not transient, retry_after=retry_after)


class HttpSink(Sink):
    """A sink that POSTs to an HTTP endpoint. Subclasses build the request in `send`."""

    config: HttpSinkConfig

    def __init__(self, config: HttpSinkConfig) -> None:
        super().__init__(config)
        self.config = config
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.config.timeout),
                headers={"User-Agent": "harvester-alerts"},
            )

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def post(
        self,
        url: str,
        *,
        json_body: Any = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> HttpResult:
        """POST once; raise `SinkError` for anything but a 2xx."""
        await self.start()
        assert self._session is not None
        what = f"{self.config.type} sink {self.name!r}"
        try:
            async with self._session.post(
                url, json=json_body, data=data, headers=dict(headers or {})
            ) as response:
                result = HttpResult(response.status, dict(response.headers), await response.read())
        except TimeoutError:
            raise SinkError(f"{what}: timed out after {self.config.timeout:g}s") from None
        except aiohttp.ClientConnectorError as exc:
            raise SinkError(f"{what}: cannot connect: {exc.os_error.strerror or exc.os_error}") from None
        except aiohttp.InvalidURL:
            raise SinkError(f"{what}: the configured URL is not valid", permanent=True) from None
        except (aiohttp.ClientError, asyncio.IncompleteReadError, OSError) as exc:
            raise SinkError(f"{what}: {type(exc).__name__}") from None
        error = classify_response(what, result, self.retry_hint)
        if error is not None:
            raise error
        return result

    def retry_hint(self, data: Any) -> float | None:
        """A platform that says when to come back in its JSON body (not a header) overrides this."""
        return None
