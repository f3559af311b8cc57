"""The reddit source's pure parts: the request budget and the engagement tracker (no sockets)."""

from __future__ import annotations

from harvester.clock import ManualClock
from harvester.sources.reddit_budget import MAX_PAUSE_SECONDS, RequestBudget
from harvester.sources.reddit_engagement import EngagementTracker
from tests.helpers import FakeSleep


def budget(clock: ManualClock, per_minute: float = 60.0) -> tuple[RequestBudget, FakeSleep]:
    sleep = FakeSleep(clock)
    return RequestBudget(clock=clock, sleep=sleep, max_per_minute=per_minute, rate_limit_pause=45.0), sleep


def headers(remaining: float, reset: int, used: int = 0) -> dict[str, str]:
    return {
        "x-ratelimit-remaining": str(remaining),
        "x-ratelimit-reset": str(reset),
        "x-ratelimit-used": str(used),
    }


async def test_requests_are_spaced_by_the_cap(clock: ManualClock) -> None:
    b, sleep = budget(clock, per_minute=30)
    for _ in range(4):
        await b.acquire()
    assert sleep.calls == [2.0, 2.0, 2.0]
    assert b.requests == 4


async def test_what_remains_is_spread_over_the_window(clock: ManualClock) -> None:
    b, sleep = budget(clock, per_minute=6000)
    await b.acquire()
    b.observe(200, headers(remaining=11, reset=99))  # 10 spare (one kept back) for 100 s
    await b.acquire()
    assert sleep.calls == [10.0]


async def test_nothing_left_waits_for_the_reset(clock: ManualClock) -> None:
    b, sleep = budget(clock, per_minute=6000)
    await b.acquire()
    b.observe(200, headers(remaining=1, reset=30))
    await b.acquire()
    assert sleep.calls == [31.0]  # the header is whole seconds rounded down: one more for safety
    assert b.remaining is None  # the window ended: its figures no longer apply


async def test_429_pauses_for_retry_after_or_reset_or_default(clock: ManualClock) -> None:
    b, sleep = budget(clock, per_minute=6000)
    b.observe(429, {"retry-after": "12"})
    await b.acquire()
    b.observe(429, {})
    await b.acquire()
    b.observe(429, {"x-ratelimit-reset": str(10**9), "x-ratelimit-remaining": "0"})
    await b.acquire()
    assert sleep.calls == [12.0, 45.0, MAX_PAUSE_SECONDS]
    assert b.rate_limited == 3


async def test_bogus_headers_are_ignored(clock: ManualClock) -> None:
    b, sleep = budget(clock, per_minute=6000)
    b.observe(200, {"x-ratelimit-remaining": "lots", "x-ratelimit-reset": "-5"})
    b.observe(200, {"x-ratelimit-remaining": "nan", "x-ratelimit-reset": "10"})
    await b.acquire()
    assert sleep.calls == []
    assert b.remaining is None


def test_tracker_is_bounded_and_expires() -> None:
    t = EngagementTracker(interval=60, duration=300, capacity=3)
    for n in range(5):
        assert t.track(f"t3_{n}", now=float(n))
    assert not t.track("t3_4", now=5.0)
    assert len(t) == 3 and "t3_0" not in t and t.evicted == 2
    assert t.due(59.0) == []
    assert t.next_due(0.0) == 62.0
    assert t.due(70.0) == ["t3_2", "t3_3", "t3_4"]
    t.refreshed(["t3_2", "t3_3", "t3_4"], ["t3_2", "t3_4"], now=70.0)  # t3_3 was deleted
    assert "t3_3" not in t and t.vanished == 1
    assert t.next_due(70.0) == 130.0
    t.postpone(["t3_2"], now=200.0)
    assert t.due(302.5) == ["t3_4"]  # t3_2 expired (first seen at 2 s, followed for 300 s)
    assert t.next_due(1000.0) is None and t.expired == 2


def test_tracker_hands_out_at_most_a_request_worth() -> None:
    t = EngagementTracker(interval=1, duration=1000, capacity=500)
    for n in range(250):
        t.track(f"t1_{n}", now=0.0)
    assert len(t.due(5.0)) == 100
