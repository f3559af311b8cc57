"""One request budget per `reddit` source, shared by all its streams, and the asyncprawcore requestor
that enforces it.

Reddit allows an OAuth client a number of requests per window (about 100 a minute averaged over ten
minutes, unverified) and reports where it stands on every API response:
`X-Ratelimit-Used`, `X-Ratelimit-Remaining` (a float) and `X-Ratelimit-Reset` (seconds until the
window ends). Going past it earns a 429. The budget

* spaces requests at least `60 / max_per_minute` seconds apart (a cap the user sets);
* spreads what the server says remains over the time left in the window, so the streams of a source
  never use up the window early and then stall until it resets;
* waits for the reset when nothing remains, and after a 429 pauses every stream for the server's hint
  (`Retry-After`, or the reset) or `rate_limit_pause` when it gave none.

All waiting goes through the injected clock and sleep, so it shows in health and tests drive it.

`BudgetedRequestor` is the asyncprawcore `Requestor` asyncpraw is built with
(`Reddit(requestor_class=..., requestor_kwargs=...)`, asyncpraw's documented extension point). Every
HTTP request asyncpraw makes, token requests included, passes through it, so the budget sees them all.
It also takes over two jobs from asyncprawcore, whose own versions sleep on the real monotonic clock
where the daemon cannot see or drive them: rate-limit pacing (it hides the `X-Ratelimit-*` headers
from asyncprawcore's limiter after reading them) and retrying 5xx responses (it raises at once, so the
collector retries with its own backoff and jitter instead of asyncprawcore's 0-2 s and 2-4 s sleeps).
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import ClientResponse
from asyncprawcore import Requestor
from asyncprawcore.exceptions import ServerError, TooManyRequests
from multidict import CIMultiDict, CIMultiDictProxy

from harvester.clock import Clock, Sleep

_RATE_HEADERS = ("x-ratelimit-used", "x-ratelimit-remaining", "x-ratelimit-reset")
# Statuses asyncprawcore would retry with real-time sleeps; the collector retries them instead.
_RETRIED_HERE = frozenset({408, 500, 502, 503, 504, 520, 522})
# A reset hint beyond this is not believed (a broken header must not stop a source for days).
MAX_PAUSE_SECONDS = 900.0


class RequestBudget:
    def __init__(
        self,
        *,
        clock: Clock,
        sleep: Sleep,
        max_per_minute: float,
        rate_limit_pause: float = 60.0,
        reserve: int = 1,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self.min_interval = 60.0 / max_per_minute
        self.rate_limit_pause = rate_limit_pause
        self.reserve = reserve  # requests kept back from the server's figure (token refreshes, clock skew)
        self.remaining: float | None = None
        self.used: int | None = None
        self.reset_at: float | None = None
        self.paused_until = 0.0
        self._last: float | None = None
        # What health shows: totals only, nothing per request.
        self.requests = 0
        self.throttled_seconds = 0.0
        self.throttles = 0
        self.rate_limited = 0

    def _now(self) -> float:
        return self._clock.now().timestamp()

    def wait_time(self, now: float) -> float:
        """Seconds until the next request may go out (0 = now)."""
        ready = self.paused_until
        if self._last is not None:
            ready = max(ready, self._last + self.min_interval)
        if self.reset_at is not None and now >= self.reset_at:
            self.remaining = self.reset_at = None  # the window has ended: its figures no longer apply
        if self.remaining is not None and self.reset_at is not None:
            spare = self.remaining - self.reserve
            if spare <= 0:
                ready = max(ready, self.reset_at)
            elif self._last is not None:
                ready = max(ready, self._last + (self.reset_at - now) / spare)
        return max(0.0, ready - now)

    async def acquire(self) -> None:
        """Wait until a request fits the budget, then count it."""
        while True:
            now = self._now()
            wait = self.wait_time(now)
            if wait <= 0:
                break
            self.throttles += 1
            self.throttled_seconds += wait
            await self._sleep(wait)
        self._last = now
        self.requests += 1
        if self.remaining is not None:
            self.remaining -= 1  # until the response says otherwise

    def observe(self, status: int, headers: Mapping[str, str]) -> None:
        """Learn from a response: the rate-limit headers, and a 429."""
        now = self._now()
        remaining = _number(headers.get("x-ratelimit-remaining"))
        reset = _number(headers.get("x-ratelimit-reset"))
        used = _number(headers.get("x-ratelimit-used"))
        if remaining is not None and reset is not None:
            self.remaining = remaining
            # The header is whole seconds, rounded down: a request exactly `reset` seconds later can
            # still fall in the old window, so the budget counts one second more.
            self.reset_at = now + min(reset + 1.0, MAX_PAUSE_SECONDS)
            self.used = None if used is None else int(used)
        if status == 429:
            self.rate_limited += 1
            retry_after = _number(headers.get("retry-after"))
            hint = retry_after if retry_after is not None else reset
            pause = self.rate_limit_pause if hint is None or hint <= 0 else min(hint, MAX_PAUSE_SECONDS)
            self.paused_until = max(self.paused_until, now + pause)

    def snapshot(self) -> dict[str, object]:
        now = self._now()
        return {
            "requests": self.requests,
            "remaining": self.remaining,
            "used": self.used,
            "reset_in_s": None if self.reset_at is None else round(max(self.reset_at - now, 0.0), 1),
            "paused_for_s": round(max(self.paused_until - now, 0.0), 1),
            "throttles": self.throttles,
            "throttled_s": round(self.throttled_seconds, 1),
            "rate_limited": self.rate_limited,
        }


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


class _WithoutRateHeaders:
    """A response as asyncprawcore should see it: everything but the rate-limit headers."""

    def __init__(self, response: ClientResponse) -> None:
        self._response = response
        headers = CIMultiDict(response.headers)
        for name in _RATE_HEADERS:
            headers.popall(name, None)
        self.headers = CIMultiDictProxy(headers)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._response, name)


class BudgetedRequestor(Requestor):
    """asyncprawcore's Requestor with the source's budget in front of every request."""

    def __init__(self, *, budget: RequestBudget, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.budget = budget

    @asynccontextmanager
    async def request(
        self, *args: Any, timeout: float | None = None, **kwargs: Any  # noqa: ASYNC109 - asyncprawcore's signature
    ) -> AsyncIterator[Any]:
        await self.budget.acquire()
        # asyncprawcore's Session always passes its own 16 s constant; the configured timeout wins.
        async with super().request(*args, timeout=self.timeout, **kwargs) as response:
            self.budget.observe(response.status, response.headers)
            if response.status == 429:
                raise TooManyRequests(response)
            if response.status in _RETRIED_HERE:
                raise ServerError(response)
            yield _WithoutRateHeaders(response)
