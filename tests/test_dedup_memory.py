"""The dedup set's memory under churn, and its behaviour against the OrderedDict it replaced."""

from __future__ import annotations

import ctypes
import platform
import random
import tracemalloc
from collections import OrderedDict

import pytest

from harvester import malloc
from harvester.dedup import SeenSet


class OrderedSeen:
    """The previous SeenSet (an OrderedDict of uid -> seen_at), kept here as the reference."""

    def __init__(self, capacity: int, ttl: float) -> None:
        self.capacity = capacity
        self.ttl = ttl
        self.seen: OrderedDict[str, float] = OrderedDict()
        self.evicted_at = float("nan")

    def add_if_new(self, uid: str, now: float) -> bool:
        seen_at = self.seen.get(uid)
        if seen_at is not None and now - seen_at <= self.ttl:
            return False
        if seen_at is not None:
            del self.seen[uid]
        self.seen[uid] = now
        while len(self.seen) > self.capacity:
            self.seen.popitem(last=False)
        if now != self.evicted_at:
            self.evicted_at = now
            while self.seen:
                oldest_uid, oldest_at = next(iter(self.seen.items()))
                if oldest_at >= now - self.ttl:
                    break
                del self.seen[oldest_uid]
        return True

    def load(self, items: list[tuple[str, float]]) -> None:
        self.evicted_at = float("nan")
        for uid, seen_at in items:
            self.seen[uid] = seen_at
            self.seen.move_to_end(uid)
        while len(self.seen) > self.capacity:
            self.seen.popitem(last=False)


@pytest.mark.parametrize("seed", range(6))
def test_same_answers_as_the_ordered_dict(seed: int) -> None:
    # Batches share one `now` that only moves forward (as the pipeline's wall clock); uids come from
    # a small pool so that duplicates, expiries and evictions by count all happen often.
    rnd = random.Random(seed)
    capacity, ttl = rnd.choice([(5, 10.0), (50, 30.0), (200, 4.0)])
    new, reference = SeenSet(capacity, ttl), OrderedSeen(capacity, ttl)
    # Unique, oldest first and in the past, as the store gives them back at start.
    count = rnd.randrange(0, 2 * capacity)
    loaded = [(f"u{i}", (i - count) / 4) for i in range(count)]
    new.load(loaded)
    reference.load(loaded)
    pool = [f"u{i}" for i in range(3 * capacity)]
    universe = set(pool) | {uid for uid, _ in loaded}
    now = 0.0
    answers = 0
    for _ in range(400):
        now += rnd.choice([0.0, 0.5, 1.0, 3.0, ttl])
        for _ in range(rnd.randrange(1, 12)):
            uid = rnd.choice(pool)
            answer = new.add_if_new(uid, now)
            assert answer == reference.add_if_new(uid, now), (uid, now)
            answers += answer
        # The reference ages out only when it adds, so after a batch of repeats it still holds expired
        # uids; this one drops them at the batch's first call. Both hold the same unexpired ones.
        live = {uid for uid, at in reference.seen.items() if now - at <= ttl}
        assert {uid for uid in universe if uid in new} == live and len(new) == len(live)
    assert answers > 100  # the stream did add (not only repeat)


def test_load_keeps_the_newest_capacity_and_ignores_a_member_listed_again() -> None:
    seen = SeenSet(capacity=3, ttl=100)
    seen.load([("a", 1.0), ("b", 2.0), ("a", 3.0), ("c", 4.0), ("d", 5.0)])
    assert len(seen) == 3 and "a" not in seen and {"b", "c", "d"} <= {u for u in "abcd" if u in seen}
    assert seen.add_if_new("e", 50.0) and "b" not in seen  # full: the oldest goes first


def traced_bytes() -> int:
    return tracemalloc.get_traced_memory()[0]


def test_churn_at_capacity_keeps_the_memory_it_filled_to() -> None:
    # One uid in and the oldest out for every post: an OrderedDict's table is rebuilt larger (three
    # times the live count) once deleted slots have used it up; this structure must stay the size it
    # reached when it filled. Bytes traced by tracemalloc: exact, not a timing.
    # Over 50,000: CPython rebuilds a big set at twice its live count, as for the default 200,000
    # (a smaller one at four times: its table may double once under churn).
    capacity = 60_000
    uids = [f"synthetic:test:{i:012d}" for i in range(3 * capacity)]  # created before measuring
    tracemalloc.start()
    try:
        seen = SeenSet(capacity, ttl=1e9)
        for i in range(capacity):
            seen.add_if_new(uids[i], float(i // 100))
        filled = traced_bytes()
        peak_growth = 0
        for i in range(capacity, len(uids)):
            assert seen.add_if_new(uids[i], float(i // 100))
            if i % 5000 == 0:
                peak_growth = max(peak_growth, traced_bytes() - filled)
        assert len(seen) == capacity
        assert peak_growth < filled // 100, (filled, peak_growth)
    finally:
        tracemalloc.stop()


# ------------------------------------------------------------------------------ malloc threshold


class Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def mapped_bytes() -> int:
    """glibc's bytes in blocks it serves with their own mmap (mallinfo2's hblkhd)."""
    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = Mallinfo2
    return int(libc.mallinfo2().hblkhd)


glibc_only = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's mallopt"
)


@glibc_only
def test_pinned_threshold_maps_a_big_block_after_a_bigger_one_was_freed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    assert malloc.pin_mmap_threshold()
    assert malloc.pin_mmap_threshold()  # idempotent
    # Unpinned, freeing the 16 MiB block would raise glibc's threshold to 16 MiB and the 4 MiB block
    # would come from the main heap (not mapped); pinned, it is mapped and so given back when freed.
    big = bytearray(16 * 2**20)
    del big
    before = mapped_bytes()
    block = bytearray(4 * 2**20)
    assert mapped_bytes() - before >= 4 * 2**20
    del block
    assert mapped_bytes() - before < 2**20  # unmapped again


def test_an_operator_threshold_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(malloc, "_pinned", None)
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    assert not malloc.pin_mmap_threshold()
