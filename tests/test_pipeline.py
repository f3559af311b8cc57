"""The pipeline's own parts: the bounded queue's fast paths, the GC tuning, and the processor's
per-batch bookkeeping (counters, event time, duplicates) against what happened post by post."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from harvester.clock import ManualClock
from harvester.config.schema import EngineConfig, RuleConfig
from harvester.dedup import SeenSet
from harvester.engine import Engine
from harvester.engine.sentiment_pool import SentimentPool
from harvester.metrics import Metrics
from harvester.models import Post
from harvester.pipeline import GC_THRESHOLD0, Processor, tuned_gc
from harvester.queues import BoundedQueue
from harvester.sources.base import Envelope
from harvester.store import PostRecord
from tests.helpers import make_post

# ------------------------------------------------------------------------------------ the queue


async def test_taking_a_batch_wakes_as_many_blocked_producers_as_it_frees_slots() -> None:
    queue = BoundedQueue[int](2)
    await queue.put(0)
    await queue.put(1)
    producers = [asyncio.ensure_future(queue.put(n)) for n in (2, 3, 4)]
    await asyncio.sleep(0)
    assert not any(p.done() for p in producers)
    first = await queue.get()
    batch = queue.get_batch(first, 10)
    assert batch == [0, 1]
    await asyncio.sleep(0)
    assert [p.done() for p in producers] == [True, True, False]  # two slots freed, two woken, in order
    assert queue.get_batch(await queue.get(), 10) == [2, 3]
    await asyncio.wait_for(producers[2], 5)
    assert await queue.get() == 4


async def test_task_done_counts_a_batch_and_join_waits_for_all_of_it() -> None:
    queue = BoundedQueue[int](10)
    for n in range(5):
        await queue.put(n)
    batch = queue.get_batch(await queue.get(), 3)
    assert batch == [0, 1, 2] and queue.qsize() == 2
    joined = asyncio.ensure_future(queue.join())
    queue.task_done(len(batch))
    await asyncio.sleep(0)
    assert not joined.done()
    queue.task_done(len(queue.get_batch(await queue.get(), 10)))
    await asyncio.wait_for(joined, 5)
    with pytest.raises(ValueError):
        queue.task_done()


async def test_a_consumer_cancelled_after_its_wake_up_passes_the_item_on() -> None:
    queue = BoundedQueue[int](10)
    first = asyncio.ensure_future(queue.get())
    second = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    await queue.put(7)  # wakes `first` ...
    first.cancel()  # ... which is cancelled before it runs: `second` must get the item
    assert await asyncio.wait_for(second, 5) == 7
    assert first.cancelled()


# --------------------------------------------------------------------------------------- the GC


def test_gc_tuning_is_undone_when_the_last_pipeline_stops() -> None:
    before = gc.get_threshold()
    with tuned_gc():
        assert gc.get_threshold()[0] >= GC_THRESHOLD0
        with tuned_gc():  # a second daemon in the same process (tests do this)
            pass
        assert gc.get_threshold()[0] >= GC_THRESHOLD0  # still running: still tuned
    assert gc.get_threshold() == before


# ------------------------------------------------------------------------- the processor's books


class RecordingEngine(Engine):
    """A real engine that also records the `now` each post was observed at."""

    def __init__(self, rules: list[RuleConfig]) -> None:
        super().__init__(rules, EngineConfig())
        self.observed: list[tuple[str, float]] = []
        self.reobserved: list[tuple[str, float]] = []

    def observe(self, post: Post, matched, sentiment, now, facts=None):  # type: ignore[no-untyped-def]
        self.observed.append((post.uid, now))
        return super().observe(post, matched, sentiment, now, facts)

    def reobserve(self, post: Post, now: float):  # type: ignore[no-untyped-def]
        self.reobserved.append((post.uid, now))
        return super().reobserve(post, now)


class CollectingWriter:
    def __init__(self) -> None:
        self.records: list[PostRecord] = []
        self.cursors: dict[str, str] = {}
        self.seen: list[tuple[str, float]] = []
        self.items = 0

    def add(
        self,
        records: Sequence[PostRecord],
        cursors: dict[str, str],
        seen: list[tuple[str, float]],
        items: int,
    ) -> None:
        self.records += records
        self.cursors.update(cursors)
        self.seen += seen
        self.items += items


def counter(metric: object, *labels: str) -> float:
    return float(metric.labels(*labels)._value.get())  # type: ignore[attr-defined]


async def test_processor_counts_per_batch_what_happened_post_by_post() -> None:
    rules = [
        RuleConfig(name="acme", keywords=["acme"]),
        RuleConfig(name="everything", match_all=True),
    ]
    engine = RecordingEngine(rules)
    metrics = Metrics()
    writer = CollectingWriter()
    clock = ManualClock(datetime(2026, 3, 1, tzinfo=UTC))
    processor = Processor(
        inbox=BoundedQueue(100),
        seen=SeenSet(1000, 3600),
        engine=engine,
        sentiment=SentimentPool(0),
        writer=writer,  # type: ignore[arg-type]
        signals=BoundedQueue(100),
        metrics=metrics,
        clock=clock,
        event_time=True,
    )
    base = datetime(2026, 1, 5, tzinfo=UTC)
    # Event times out of order (a late post must not move the clock back), one repeat, one
    # cursor-only advance, texts that match one rule or two.
    offsets = [0, 5, 3, 9, 9, 12]
    posts = [
        make_post(n, text="acme is down" if n % 2 else "nice weather", at=base + timedelta(seconds=s))
        for n, s in enumerate(offsets)
    ]
    envelopes = [Envelope("test", post, str(n), 0.0) for n, post in enumerate(posts)]
    envelopes.insert(3, Envelope("test", posts[1], "2b", 0.0))  # the repeat
    envelopes.append(Envelope("test", None, "end", 0.0))
    job = processor._prepare(envelopes)
    scores = await processor.sentiment.analyse(job.texts)
    processor._complete(job, scores)

    expected_now = [base.timestamp() + s for s in (0, 5, 5, 9, 9, 12)]  # the running maximum
    assert engine.observed == [(p.uid, now) for p, now in zip(posts, expected_now, strict=True)]
    assert engine.reobserved == [(posts[1].uid, base.timestamp() + 5)]
    assert processor.event_clock is not None
    assert processor.event_clock.now() == base + timedelta(seconds=12)
    assert (processor.processed, processor.matched, processor.duplicates) == (6, 6, 1)
    acme = sum(1 for p in posts if "acme" in p.text)
    assert counter(metrics.posts_matched, "acme") == acme == 3
    assert counter(metrics.posts_matched, "everything") == 6
    assert counter(metrics.posts_received, "test") == 7
    assert metrics.dedup_hits._value.get() == 1
    assert [r.post.uid for r in writer.records] == [p.uid for p in posts]
    assert [r.rules for r in writer.records][:2] == [("everything",), ("acme", "everything")]
    assert all(r.sentiment is not None for r in writer.records)
    assert writer.cursors == {"test": "end"} and writer.items == len(envelopes)
    assert writer.seen == [(p.uid, clock.now().timestamp()) for p in posts]


# ---------------------------------------------------------------------------------- the dedup set


def test_seen_set_ages_out_once_per_now() -> None:
    seen = SeenSet(capacity=10, ttl=100)
    seen.load([("old", 1.0)])  # at start, from the store
    for uid, at in (("a", 30.0), ("b", 50.0)):
        seen.add_if_new(uid, at)
    assert "old" in seen and "a" in seen  # neither is 100 s old at 50
    assert seen.add_if_new("c", 135.0) and "old" not in seen and "a" not in seen and "b" in seen
    assert seen.add_if_new("d", 135.0)  # the same batch: nothing more to age out
    assert not seen.add_if_new("b", 135.0)  # b (50) is still within the TTL at 135
    assert seen.add_if_new("b", 151.0) and len(seen) == 3  # expired at 151, and seen anew: b, c, d
