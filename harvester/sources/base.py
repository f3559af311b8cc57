"""The contract every source implements, and the context the pipeline hands it.

A source is a config class (subclass of `SourceConfig`) plus a `Source` subclass registered by name in
`harvester.plugins.SOURCES`. `run(ctx)` runs until cancelled (or, for a bounded source such as a replay
file, until the input ends), turning platform payloads into `Post`s with a pure parser and handing
each to `ctx.emit(post, cursor)`. The cursor is the source's own resume point (an id, an offset, a
timestamp) *after* that post; the store commits it in the same transaction as the post, and on the
next start `ctx.cursor` holds the last one committed.
"""

from __future__ import annotations

import random
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import structlog

from harvester.clock import Clock, Sleep
from harvester.config.schema import RuleConfig, SourceConfig
from harvester.health import SourceHealth, SourceState
from harvester.models import Post

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class Envelope:
    """What travels through the inbox: a post (or None for a cursor-only advance) and where it came from."""

    source: str
    post: Post | None
    cursor: str | None
    enqueued: float  # time.perf_counter() when it entered the inbox, for latency figures


class SourceContext:
    """Everything a running source may touch. Built by the app; tests build their own."""

    def __init__(
        self,
        *,
        name: str,
        put: Callable[[Envelope], Awaitable[bool]],
        health: SourceHealth,
        clock: Clock,
        sleep: Sleep,
        rng: random.Random,
        cursor: str | None = None,
        on_malformed: Callable[[str], None] | None = None,
        rules: Sequence[RuleConfig] = (),
    ) -> None:
        self.name = name
        # The daemon's rules, for sources that filter at the platform (X stream rules from keywords).
        self.rules = tuple(rules)
        self.health = health
        self.clock = clock
        self.sleep = sleep
        self.rng = rng
        self.cursor = cursor
        self._put = put
        self._on_malformed = on_malformed
        self._last_malformed_log = 0.0

    async def emit(self, post: Post, cursor: str | None = None) -> bool:
        """Hand one post to the pipeline. Returns False if the inbox's full policy dropped it."""
        if cursor is not None:
            self.cursor = cursor
        self.health.posts += 1
        self.health.last_post_at = post.received_at
        accepted = await self._put(Envelope(self.name, post, cursor, time.perf_counter()))
        if not accepted:
            self.health.dropped += 1
        return accepted

    async def advance(self, cursor: str) -> None:
        """Move the cursor without a post (past a malformed record, say); committed like any other."""
        self.cursor = cursor
        await self._put(Envelope(self.name, None, cursor, time.perf_counter()))

    def malformed(self, reason: str) -> None:
        """Count a payload that could not be parsed; log at most one line per second about it."""
        self.health.malformed += 1
        if self._on_malformed is not None:
            self._on_malformed(self.name)
        now = time.monotonic()
        if now - self._last_malformed_log >= 1.0:
            self._last_malformed_log = now
            log.warning(
                "malformed payload skipped",
                source=self.name,
                reason=reason[:200],
                total=self.health.malformed,
            )

    def set_state(self, state: SourceState, error: str | None = None) -> None:
        self.health.set_state(state, self.clock.now(), error)


class Source(ABC):
    """Base of every collector. Subclasses set `config_class` and implement `run`."""

    config_class: ClassVar[type[SourceConfig]]
    # A bounded source (a replay file) ends by itself; the daemon then keeps running the others.
    bounded: ClassVar[bool] = False

    def __init__(self, config: SourceConfig) -> None:
        self.config = config
        self.name = config.instance_name

    @property
    def event_time(self) -> bool:
        """True when this source's posts carry their own timeline (a replay, a simulated stream), so
        windows should follow the posts' `created_at` rather than the wall clock."""
        return False

    @abstractmethod
    async def run(self, ctx: SourceContext) -> None:
        """Collect until cancelled (or until a bounded input ends)."""
