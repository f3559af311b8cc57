"""Queues, dedup, supervisor backoff and log redaction."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import random

import structlog

from harvester.clock import ManualClock
from harvester.dedup import SeenSet
from harvester.errors import PermanentSourceError
from harvester.health import HealthRegistry, SourceState
from harvester.logging import configure_logging
from harvester.queues import BoundedQueue, FullPolicy
from harvester.sources.base import Envelope, Source, SourceContext
from harvester.supervisor import BackoffPolicy, Supervisor
from tests.helpers import FakeSleep


async def test_drop_policies_count_every_drop() -> None:
    dropped: list[int] = []
    newest = BoundedQueue[int](2, FullPolicy.DROP_NEWEST, dropped.append)
    assert [await newest.put(i) for i in range(4)] == [True, True, False, False]
    assert newest.dropped == 2 and dropped == [2, 3]
    oldest = BoundedQueue[int](2, FullPolicy.DROP_OLDEST)
    for i in range(5):
        await oldest.put(i)
    assert oldest.dropped == 3
    assert [await oldest.get(), await oldest.get()] == [3, 4]


async def test_block_policy_pushes_back() -> None:
    queue = BoundedQueue[int](1)
    await queue.put(1)
    blocked = asyncio.ensure_future(queue.put(2))
    await asyncio.sleep(0)
    assert not blocked.done()
    assert await queue.get() == 1
    await blocked
    assert queue.dropped == 0 and await queue.get() == 2


def test_seen_set_bounded_by_count_and_age() -> None:
    seen = SeenSet(capacity=3, ttl=100)
    assert seen.add_if_new("a", 0) and not seen.add_if_new("a", 50)
    for uid in "bcd":
        seen.add_if_new(uid, 60)
    assert len(seen) == 3 and "a" not in seen
    assert seen.add_if_new("b", 200)  # expired, so new again
    assert "c" not in seen and "d" not in seen  # aged out
    seen.load([("x", 1.0), ("y", 2.0), ("z", 3.0), ("w", 4.0)])
    assert len(seen) == 3


class Flaky(Source):
    bounded = False

    def __init__(self, failures: list[BaseException]) -> None:
        self.failures = failures
        self.runs = 0
        self.name = "flaky"

    async def run(self, ctx: SourceContext) -> None:
        self.runs += 1
        if self.failures:
            raise self.failures.pop(0)


def make_ctx(clock: ManualClock, sleep: FakeSleep) -> SourceContext:
    async def put(_: Envelope) -> bool:
        return True

    return SourceContext(
        name="flaky",
        put=put,
        health=HealthRegistry().source("flaky", "test"),
        clock=clock,
        sleep=sleep,
        rng=random.Random(1),
    )


async def test_supervisor_backs_off_exponentially_with_full_jitter(clock: ManualClock) -> None:
    sleep = FakeSleep(clock)
    source = Flaky([ConnectionError("boom")] * 8)
    policy = BackoffPolicy(base=1.0, cap=20.0, floor=0.25, healthy_after=60)
    ctx = make_ctx(clock, sleep)
    supervisor = Supervisor(source, ctx, policy=policy)
    await supervisor.run()
    assert source.runs == 9
    assert ctx.health.reconnects == 8 and ctx.health.state is SourceState.FINISHED
    assert "ConnectionError: boom" in (ctx.health.last_error or "")
    ceilings = [min(20.0, 2.0**n) for n in range(8)]
    for delay, ceiling in zip(sleep.calls, ceilings, strict=True):
        assert 0.25 <= delay <= max(ceiling, 0.25)
    assert len(set(sleep.calls)) == len(sleep.calls)  # jittered, not a fixed schedule


async def test_supervisor_never_spins_and_marks_permanent_failures(clock: ManualClock) -> None:
    sleep = FakeSleep(clock)
    source = Flaky([RuntimeError("x")] * 3 + [PermanentSourceError("bad token")])
    ctx = make_ctx(clock, sleep)
    await Supervisor(source, ctx, policy=BackoffPolicy(base=0.0001, floor=0.25)).run()
    assert all(d >= 0.25 for d in sleep.calls) and len(sleep.calls) == 3
    assert ctx.health.state is SourceState.FAILED and ctx.health.last_error == "bad token"


async def test_supervisor_resets_backoff_after_a_healthy_run(clock: ManualClock) -> None:
    sleep = FakeSleep(clock)

    class LongThenFail(Flaky):
        async def run(self, ctx: SourceContext) -> None:
            self.runs += 1
            if self.runs == 4:
                clock.advance(120)  # stayed up two minutes before failing
            if self.runs < 6:
                raise ConnectionError("drop")

    supervisor = Supervisor(LongThenFail([]), make_ctx(clock, sleep), policy=BackoffPolicy(base=1, cap=300))
    await supervisor.run()
    assert supervisor.attempt == 2  # reset at the 4th failure, then one more


def test_redaction_of_secrets_in_structlog_and_stdlib_records() -> None:
    stream = io.StringIO()
    configure_logging("info", "json", secrets=["tok-123456", "pa55word"], stream=stream)
    structlog.get_logger("t").info("connecting with tok-123456", headers={"auth": "Bearer tok-123456"})
    logging.getLogger("aiohttp.client").warning("failed for pa55word@host")
    try:
        raise ValueError("bad secret tok-123456")
    except ValueError:
        structlog.get_logger("t").exception("oops")
    output = stream.getvalue()
    assert "tok-123456" not in output and "pa55word" not in output
    lines = [json.loads(line) for line in output.splitlines()]
    assert lines[0]["event"] == "connecting with ***" and lines[0]["headers"] == {"auth": "Bearer ***"}
    assert "***" in lines[1]["event"]
    assert "bad secret ***" in lines[2]["exception"]
