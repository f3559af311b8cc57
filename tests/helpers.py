"""Shared test helpers: a fake clock-driven sleep and small builders."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from harvester.clock import ManualClock
from harvester.models import Post

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


class FakeSleep:
    """An injected sleep that records each delay, moves a ManualClock and yields to the loop."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        self.clock.advance(seconds)
        await asyncio.sleep(0)


def make_post(
    n: int,
    text: str = "hello world",
    *,
    at: datetime | None = None,
    source: str = "test",
    author: str | None = None,
    likes: int | None = None,
    followers: int | None = None,
) -> Post:
    when = at or T0 + timedelta(seconds=n)
    return Post(
        uid=Post.make_uid(source, str(n)),
        source=source,
        native_id=str(n),
        author=author or f"user{n % 50}",
        text=text,
        created_at=when,
        received_at=when,
        likes=likes,
        followers=followers,
    )


# A campaign's message for the near-duplicate and campaign tests. Thirty words: one swapped word
# moves a few of the 64 SimHash bits (a short text moves many more).
CAMPAIGN_MESSAGE = (
    "Acme Air is hiding the truth about the engine failures on their new planes, the regulators were "
    "told months ago and nobody did anything, share this before they delete it"
)


def post_at(n: int, text: str, author: str, ts: float, followers: int | None = None) -> Post:
    """Post number `n` by `author` at `ts` (epoch seconds of event time)."""
    when = T0 + timedelta(seconds=ts - T0.timestamp())
    return make_post(n, text, at=when, author=author, followers=followers)
