"""The processing stages: inbox -> dedup -> match -> (sentiment) -> detectors -> store writer / signals.

Two tasks joined by a short FIFO of batches. Stage one deduplicates and matches an inbox batch and
sends the matched texts to the sentiment pool; stage two waits for those scores in order, runs the
detectors, and hands the batch to the store writer. While the worker scores batch N, the event loop
is already matching batch N+1, so VADER and everything else run on two cores. Nothing is awaited per
post: the per-post cost on top of the engine stays a few microseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter

from harvester.clock import Clock, EventClock
from harvester.dedup import SeenSet
from harvester.engine import Engine
from harvester.engine.rules import CompiledRule
from harvester.engine.sentiment_pool import SentimentPool, TextFacts
from harvester.metrics import Metrics
from harvester.models import Post, Signal
from harvester.queues import BoundedQueue
from harvester.sources.base import Envelope
from harvester.store import PostRecord
from harvester.writer import BatchWriter

BATCH = 256
BATCHES_IN_FLIGHT = 4
LatencyHook = Callable[[float, bool], None]


@dataclass(slots=True)
class _Job:
    """One inbox batch between the stages: its new posts with their matches, awaiting scores."""

    size: int
    posts: list[tuple[Envelope, Post, list[CompiledRule], float]] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    cursors: dict[str, str] = field(default_factory=dict)
    seen: list[tuple[str, float]] = field(default_factory=list)
    received: dict[str, int] = field(default_factory=dict)
    # Posts seen before, arriving again (maybe with new engagement): only followed, never recounted.
    again: list[tuple[Envelope, Post, float]] = field(default_factory=list)
    scores: asyncio.Future[list[TextFacts]] | None = None


class Processor:
    def __init__(
        self,
        *,
        inbox: BoundedQueue[Envelope],
        seen: SeenSet,
        engine: Engine,
        sentiment: SentimentPool,
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
        self.sentiment = sentiment
        self.writer = writer
        self.signals = signals
        self.metrics = metrics
        self.clock = clock
        self.event_clock = EventClock() if event_time else None
        self.store_posts = store_posts
        self.on_processed = on_processed
        self.jobs: BoundedQueue[_Job] = BoundedQueue(BATCHES_IN_FLIGHT)
        self.processed = 0
        self.matched = 0
        self.duplicates = 0
        self._next_event_tick = float("-inf")
        # The newest post time seen in event-time mode, as (timestamp, datetime).
        self._newest_event: tuple[float, datetime] = (float("-inf"), datetime.fromtimestamp(0, UTC))
        self._matched: dict[str, Counter] = {}
        self._received: dict[str, Counter] = {}

    # -- stage one: dedup and match ----------------------------------------------------------------
    async def run(self) -> None:
        while True:
            first = await self.inbox.get()
            batch = self.inbox.get_batch(first, BATCH)
            try:
                job = self._prepare(batch)
            finally:
                self.inbox.task_done(len(batch))
            job.scores = asyncio.ensure_future(self.sentiment.analyse(job.texts))
            await self.jobs.put(job)

    def _prepare(self, batch: list[Envelope]) -> _Job:
        wall = self.clock.now().timestamp()
        event_time = self.event_clock is not None
        newest = self._newest_event
        now = wall
        job = _Job(size=len(batch))
        match = self.engine.match
        add_if_new = self.seen.add_if_new
        cursors, received, again = job.cursors, job.received, job.again
        texts, posts, seen = job.texts, job.posts, job.seen
        for envelope in batch:
            if envelope.cursor is not None:
                cursors[envelope.source] = envelope.cursor
            post = envelope.post
            if post is None:
                continue
            received[envelope.source] = received.get(envelope.source, 0) + 1
            if not add_if_new(post.uid, wall):
                again.append((envelope, post, now))
                continue
            if event_time:
                # The event clock is the newest `created_at` so far; kept here as a number (one
                # `timestamp()` per post) and handed to the EventClock once per batch below.
                created = post.created_at.timestamp()
                if created > newest[0]:
                    newest = (created, post.created_at)
                now = newest[0]
            seen.append((post.uid, wall))
            matched = match(post)
            if matched:
                texts.append(post.text)
            posts.append((envelope, post, matched, now))
        self.duplicates += len(again)
        if event_time and newest is not self._newest_event:
            self._newest_event = newest
            assert self.event_clock is not None
            self.event_clock.observe(newest[1])
        return job

    # -- stage two: detectors, store, signals ------------------------------------------------------
    async def finish(self) -> None:
        while True:
            job = await self.jobs.get()
            try:
                assert job.scores is not None
                scores = await job.scores
                fired = self._complete(job, scores)
            finally:
                self.jobs.task_done()
            for item in fired:
                await self.signals.put(item)
            await self.writer.wait_for_room()

    def _complete(self, job: _Job, scores: list[TextFacts]) -> list[tuple[Signal, float]]:
        fired: list[tuple[Signal, float]] = []
        records: list[PostRecord] = []
        keep_all, keep_matched = self.store_posts == "all", self.store_posts == "matched"
        observe = self.engine.observe
        hook = self.on_processed
        next_facts = iter(scores).__next__
        per_rule: dict[str, int] = {}
        matched_posts = 0
        latest = -1.0
        for envelope, post, matched, now in job.posts:
            latest = now
            if matched:
                facts = next_facts()
                verdict = observe(post, matched, facts[0], now, facts)
                matched_posts += 1
                for rule in verdict.rules:
                    per_rule[rule] = per_rule.get(rule, 0) + 1
                if keep_all or keep_matched:
                    records.append(PostRecord(post, verdict.rules, verdict.sentiment))
            else:
                verdict = observe(post, matched, None, now)
                if keep_all:
                    records.append(PostRecord(post, (), None))
            if verdict.signals:
                enqueued = envelope.enqueued
                fired += [(signal, enqueued) for signal in verdict.signals]
            if hook is not None:
                hook(envelope.enqueued, bool(verdict.signals))
        # Counted once per batch: a labelled counter's inc() takes a lock, per post it was a cost.
        self.processed += len(job.posts)
        self.matched += matched_posts
        for rule, count in per_rule.items():
            self._matched_counter(rule).inc(count)
        for envelope, post, now in job.again:
            fired += [(signal, envelope.enqueued) for signal in self.engine.reobserve(post, now)]
        if self.event_clock is not None and latest >= self._next_event_tick:
            # In event time nothing else moves the clock: let windows close and silences show as
            # the posts' own time passes (at most once per second of it, to keep the cost down).
            self._next_event_tick = latest + 1.0
            fired += [(signal, time.perf_counter()) for signal in self.engine.tick(latest)]
        self.writer.add(records, job.cursors, job.seen, job.size)
        for source, count in job.received.items():
            self._received_counter(source).inc(count)
        duplicates = sum(job.received.values()) - len(job.seen)
        if duplicates:
            self.metrics.dedup_hits.inc(duplicates)
        return fired

    # Labelled children are looked up once: `labels()` costs about a microsecond per call.
    def _matched_counter(self, rule: str) -> Counter:
        child = self._matched.get(rule)
        if child is None:
            child = self._matched[rule] = self.metrics.posts_matched.labels(rule)
        return child

    def _received_counter(self, source: str) -> Counter:
        child = self._received.get(source)
        if child is None:
            child = self._received[source] = self.metrics.posts_received.labels(source)
        return child

    async def tick(self) -> None:
        """Let the engine see wall-clock time pass when no post arrives (silences, closing windows)."""
        if self.event_clock is None:
            for signal in self.engine.tick(self.clock.now().timestamp()):
                await self.signals.put((signal, time.perf_counter()))


# The cyclic GC's first threshold while the pipeline runs (Python's default is 700). The count is of
# container objects allocated and not yet freed; the pipeline's garbage is nearly all freed at once by
# reference counting, so collections rarely find anything, but at 700 they ran every few hundred posts
# and cost about as much as the dedup stage. Cycles are still collected, just in bigger rounds.
# (`gc.freeze` of the startup objects would save a little more, but whatever a SIGHUP reload replaces
# would then never be collected in a daemon that runs for weeks.)
GC_THRESHOLD0 = 10_000

_gc_users = 0  # pipelines running in this process (tests run several): only the first tunes the GC
_gc_saved: tuple[int, ...] = ()


@contextlib.contextmanager
def tuned_gc() -> Iterator[None]:
    """Young collections less often while the pipeline runs; undone when the last running pipeline
    of the process ends, so a process that runs many daemons (the tests) collects as usual after."""
    global _gc_users, _gc_saved  # noqa: PLW0603 - the GC's settings are process-wide too
    if _gc_users == 0:
        _gc_saved = gc.get_threshold()
        gc.set_threshold(max(_gc_saved[0], GC_THRESHOLD0), *_gc_saved[1:])
    _gc_users += 1
    try:
        yield
    finally:
        _gc_users -= 1
        if _gc_users == 0:
            gc.set_threshold(*_gc_saved)


async def drain(queue: BoundedQueue[Any], within: float) -> bool:
    """Wait until everything put into `queue` has been processed; False if the deadline passed."""
    try:
        await asyncio.wait_for(queue.join(), within)
    except TimeoutError:
        return False
    return True
