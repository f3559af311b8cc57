"""Test-side helpers for the `reddit` source: the fake server (from `harvester.sources.reddit_fake`,
shared with the benchmark), an inbox that records what a run emitted, and a context builder."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Any

from harvester.clock import ManualClock
from harvester.config.schema import RuleConfig
from harvester.health import SourceHealth
from harvester.models import Post
from harvester.sources.base import Envelope, SourceContext
from harvester.sources.reddit import RedditConfig, RedditSource
from harvester.sources.reddit_fake import FakeReddit
from tests.helpers import FakeSleep

__all__ = ["FakeReddit", "Inbox", "NotifyingSleep", "fake_reddit", "make_ctx", "reddit_config", "running"]


class NotifyingSleep(FakeSleep):
    """FakeSleep that wakes `wait_for` callers each time the source sleeps (it has just updated its
    health: a failure is followed by a backoff sleep)."""

    def __init__(self, clock: ManualClock) -> None:
        super().__init__(clock)
        self._changed = asyncio.Condition()

    async def __call__(self, seconds: float) -> None:
        async with self._changed:
            self._changed.notify_all()
        await super().__call__(seconds)

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            async with self._changed:
                await self._changed.wait_for(predicate)


class Inbox:
    """Stands in for the pipeline's inbox and the store: every envelope, and the cursor the store would
    have committed with the last one (cursor and post travel together, as in the real store)."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []
        self.cursor: str | None = None
        self.block_after: int | None = None  # stop accepting (block forever) after this many posts
        self._changed = asyncio.Condition()

    @property
    def posts(self) -> list[Post]:
        return [e.post for e in self.envelopes if e.post is not None]

    def uids(self) -> list[str]:
        return [post.uid for post in self.posts]

    async def put(self, envelope: Envelope) -> bool:
        if self.block_after is not None and envelope.post is not None and len(self.posts) >= self.block_after:
            await asyncio.Event().wait()  # a full inbox: the source stays blocked until cancelled
        self.envelopes.append(envelope)
        if envelope.cursor is not None:
            self.cursor = envelope.cursor
        async with self._changed:
            self._changed.notify_all()
        return True

    async def wait_for(self, predicate: Callable[[Inbox], bool], timeout: float = 10.0) -> None:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            async with self._changed:
                await self._changed.wait_for(lambda: predicate(self))


def make_ctx(
    inbox: Inbox,
    clock: ManualClock,
    *,
    cursor: str | None = None,
    rules: Sequence[RuleConfig] = (),
    seed: int = 7,
    sleep: FakeSleep | None = None,
) -> SourceContext:
    return SourceContext(
        name="reddit",
        put=inbox.put,
        health=SourceHealth(name="reddit", type="reddit"),
        clock=clock,
        sleep=sleep or NotifyingSleep(clock),
        rng=random.Random(seed),
        cursor=cursor,
        rules=rules,
    )


def reddit_config(fake: FakeReddit, **overrides: Any) -> RedditConfig:
    settings: dict[str, Any] = {
        "client_id": fake.client_id,
        "client_secret": fake.client_secret,
        "subreddits": ["python", "rust"],
        "oauth_url": fake.url,
        "reddit_url": fake.url,
        "poll_interval": 5,
        "max_requests_per_minute": 600,
    }
    settings.update(overrides)
    return RedditConfig.model_validate(settings)


@asynccontextmanager
async def fake_reddit(clock: ManualClock, **kwargs: Any) -> AsyncIterator[FakeReddit]:
    fake = FakeReddit(clock=lambda: clock.now().timestamp(), **kwargs)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


@asynccontextmanager
async def running(source: RedditSource, ctx: SourceContext) -> AsyncIterator[asyncio.Task[None]]:
    """Run the source as a task; cancel it (and surface any crash) on the way out."""
    task = asyncio.create_task(source.run(ctx))
    try:
        yield task
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
