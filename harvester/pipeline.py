"""The processing stage: inbox -> dedup -> engine -> (store writer, signal queue).

Items are taken from the inbox in batches so the per-post cost stays a few microseconds on top of
the engine; nothing is awaited per post.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from harvester.clock import Clock, EventClock
from harvester.dedup import SeenSet
from harvester.engine import Engine
from harvester.metrics import Metrics
from harvester.models import Signal
from harvester.queues import BoundedQueue
from harvester.sources.base import Envelope
from harvester.store import PostRecord
from harvester.writer import BatchWriter

BATCH = 256
LatencyHook = Callable[[float, bool], None]


class Processor:
    def __init__(
        self,
        *,
        inbox: BoundedQueue[Envelope],
        seen: SeenSet,
        engine: Engine,
        writer: BatchWriter,
        signals: BoundedQueue[tuple[Signal, float]],
        metrics: Metrics,
        clock: Clock,
        event_time: bool,
        store_posts: str = "all",
        on_processed: LatencyHook | None = None,
    ) -> None:
        self.inbox = inbox
        self.seen = seen
        self.engine = engine
        self.writer = writer
        self.signals = signals
        self.metrics = metrics
        self.clock = clock
        self.event_clock = EventClock() if event_time else None
        self.store_posts = store_posts
        self.on_processed = on_processed
        self.processed = 0
        self.matched = 0
        self.duplicates = 0

    def engine_now(self) -> float:
        if self.event_clock is not None:
            return self.event_clock.now().timestamp()
        return self.clock.now().timestamp()

    async def run(self) -> None:
        while True:
            first = await self.inbox.get()
            batch = self.inbox.get_batch(first, BATCH)
            try:
                fired = self._process(batch)
            finally:
                self.inbox.task_done(len(batch))
            for item in fired:
                await self.signals.put(item)
            await self.writer.wait_for_room()

    def _process(self, batch: list[Envelope]) -> list[tuple[Signal, float]]:
        wall = self.clock.now().timestamp()
        event_clock = self.event_clock
        now = wall
        fired: list[tuple[Signal, float]] = []
        hook = self.on_processed
        for envelope in batch:
            post = envelope.post
            if post is None:
                self.writer.add(None, envelope.source, envelope.cursor, None)
                continue
            if not self.seen.add_if_new(post.uid, wall):
                self.duplicates += 1
                self.metrics.dedup_hits.inc()
                self.writer.add(None, envelope.source, envelope.cursor, None)
                continue
            if event_clock is not None:
                event_clock.observe(post.created_at)
                now = event_clock.now().timestamp()
            verdict = self.engine.process(post, now)
            self.processed += 1
            if verdict.rules:
                self.matched += 1
                for rule in verdict.rules:
                    self.metrics.posts_matched.labels(rule).inc()
            keep = self.store_posts == "all" or (self.store_posts == "matched" and verdict.rules)
            record = PostRecord(post, verdict.rules, verdict.sentiment) if keep else None
            self.writer.add(record, envelope.source, envelope.cursor, (post.uid, wall))
            if verdict.signals:
                for signal in verdict.signals:
                    fired.append((signal, envelope.enqueued))
            if hook is not None:
                hook(envelope.enqueued, bool(verdict.signals))
        return fired

    def tick(self) -> None:
        """Let the engine see time pass when no post arrives (wall-clock mode only)."""
        if self.event_clock is None:
            self.engine.tick(self.clock.now().timestamp())


async def drain(queue: BoundedQueue[Any], within: float) -> bool:
    """Wait until everything put into `queue` has been processed; False if the deadline passed."""
    try:
        await asyncio.wait_for(queue.join(), within)
    except TimeoutError:
        return False
    return True
