"""Time as an injected dependency, so tests and replays drive it instead of the wall clock."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Protocol

Sleep = Callable[[float], Awaitable[None]]


class Clock(Protocol):
    def now(self) -> datetime:
        """Current time, timezone-aware UTC."""
        ...


class SystemClock:
    """The wall clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that only moves when told to: used by tests and by event-time replays."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def set(self, when: datetime) -> None:
        self._now = when

    def advance(self, seconds: float) -> None:
        self._now = datetime.fromtimestamp(self._now.timestamp() + seconds, UTC)


class EventClock:
    """Event time: the newest `created_at` seen so far. Never runs backwards."""

    def __init__(self) -> None:
        self._now: datetime | None = None

    def now(self) -> datetime:
        return self._now if self._now is not None else datetime.fromtimestamp(0, UTC)

    def observe(self, when: datetime) -> None:
        if self._now is None or when > self._now:
            self._now = when


async def real_sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)
