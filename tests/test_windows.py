"""Event-time windows and the robust baseline."""

from __future__ import annotations

from dataclasses import dataclass

from harvester.engine.windows import BucketWindow, EwmaBaseline, SessionWindow


@dataclass
class Count:
    index: int
    n: int = 0


def window(size: int = 3, lateness: float = 0.0) -> BucketWindow[Count]:
    return BucketWindow(10.0, size, Count, lateness)


def add(w: BucketWindow[Count], ts: float) -> list[Count]:
    closed = w.advance(ts)
    bucket = w.bucket_for(ts)
    if bucket is not None:
        bucket.n += 1
    return closed


def test_buckets_close_in_order_with_empty_ones_and_memory_stays_bounded() -> None:
    w = window(size=3)
    assert add(w, 1) == [] and w.partial_index == 0
    add(w, 5)
    closed = add(w, 41)  # buckets 1, 2 and 3 passed with no post
    assert [(b.index, b.n) for b in closed] == [(0, 2), (1, 0), (2, 0), (3, 0)]
    for t in range(41, 10_000, 3):
        add(w, t)
    assert len(w.buckets) == 3


def test_late_events_within_lateness_land_in_their_bucket_and_later_ones_are_counted() -> None:
    w = window(size=3, lateness=15)
    add(w, 5)
    add(w, 21)
    add(w, 25)
    add(w, 12)  # 13 s late: bucket 1 passed with no post but is still in the window
    assert [(b.index, b.n) for b in w.buckets] == [(0, 1), (1, 1), (2, 2)]
    add(w, 3)  # 22 s late: beyond the allowed lateness
    assert w.late == 1


def test_span_counts_the_current_bucket_partly() -> None:
    w = window(size=3)
    for t in (0, 10, 20):
        add(w, t)
    assert abs(w.span(25) - 2.5) < 1e-9


def test_sessions_split_on_gaps() -> None:
    s = SessionWindow(gap=60)
    assert s.add(0) and not s.add(30) and not s.add(80)
    assert s.count == 3 and s.duration == 80
    assert s.add(200) and s.count == 1


def test_baseline_starts_as_a_plain_average_and_clipping_keeps_spikes_out() -> None:
    b = EwmaBaseline(half_life=100)
    for value in (10, 20, 30):
        b.learn(value)
    assert abs(b.mean - 20) < 1e-9  # not stuck near the first value
    for i in range(200):
        b.learn(20 + (i % 5) - 2)
    before = b.mean
    b.learn(1000, clip_above=b.mean + 3 * b.std)
    assert b.mean - before < 0.1  # unclipped, one spike of 1000 would move it by ~7
    restored = EwmaBaseline(half_life=100)
    restored.restore(b.snapshot())
    assert (restored.mean, restored.var, restored.n) == (b.mean, b.var, b.n)


def test_bucket_runs_cut_a_batch_at_bucket_edges() -> None:
    from dataclasses import dataclass as _dataclass

    from harvester.engine.windows import bucket_runs

    @_dataclass
    class At:
        ts: float

    batch = [At(t) for t in (9.0, 9.5, 10.0, 10.2, 19.9, 20.0, 35.0)]
    runs = bucket_runs(batch, 10.0)
    assert [(index, [item.ts for item in run]) for index, run in runs] == [
        (0, [9.0, 9.5]),
        (1, [10.0, 10.2, 19.9]),
        (2, [20.0]),
        (3, [35.0]),
    ]
    single = bucket_runs(batch[2:5], 10.0)
    assert len(single) == 1 and single[0][1] is not None and len(single[0][1]) == 3
