"""The outbox against a real local webhook receiver: a long outage then recovery, Retry-After, rate
limits, the age limit, kill -9 between outbox and delivery, old-schema rows, and the dead-letters CLI."""

from __future__ import annotations

import asyncio
import json
import random
import signal as signals
import sys
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from harvester.alerts.dispatcher import Dispatcher
from harvester.alerts.router import Router
from harvester.alerts.sinks.webhook import WebhookSink, WebhookSinkConfig
from harvester.cli import main as cli_main
from harvester.clock import ManualClock
from harvester.config.schema import AlertsConfig
from harvester.metrics import Metrics
from harvester.models import Alert, Severity
from harvester.queues import BoundedQueue
from harvester.store import MIGRATIONS, Store
from harvester.store.migrations import apply_migrations
from tests.alert_samples import make_signal
from tests.fake_sink_servers import FakeHttpServer, Fault
from tests.helpers import T0, FakeSleep

CHILD = Path(__file__).with_name("outbox_crash_child.py")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path / "h.db")
    yield opened
    await opened.close()


@pytest.fixture
async def receiver() -> AsyncIterator[FakeHttpServer]:
    server = await FakeHttpServer().start()
    yield server
    await server.close()


class Harness:
    def __init__(self, store: Store, clock: ManualClock, url: str, **alerts: Any) -> None:
        sink_config = WebhookSinkConfig.model_validate(
            {"type": "webhook", "name": "hook", "url": url, "timeout": 5, **alerts.pop("sink", {})}
        )
        self.config = AlertsConfig.model_validate(
            {"sinks": [sink_config], "group_wait": 0, "group_interval": 0, "cooldown": 0, **alerts}
        )
        self.metrics = Metrics()
        self.sink = WebhookSink(sink_config, clock=clock)
        self.clock = clock
        self.store = store
        self.dispatcher = Dispatcher(
            store=store,
            sinks={"hook": self.sink},
            config=self.config,
            clock=clock,
            sleep=FakeSleep(clock),
            rng=random.Random(7),
            metrics=self.metrics,
        )
        self.router = Router(
            store=store,
            sinks=[("hook", Severity.INFO)],
            config=self.config,
            clock=clock,
            metrics=self.metrics,
            queue=BoundedQueue(10),
            on_alerts=self.dispatcher.wake,
        )

    def metric(self, name: str) -> float:
        value = self.metrics.registry.get_sample_value(name, {"sink": "hook"})
        return value or 0.0


async def test_outage_of_ten_minutes_then_recovery_delivers_each_alert_once_in_order(
    store: Store, clock: ManualClock, receiver: FakeHttpServer
) -> None:
    h = Harness(store, clock, receiver.url, max_attempts=100)
    await h.sink.start()
    groups = {rule: [make_signal(n, rule=rule) for n in range(4)] for rule in ("acme", "globex", "initech")}
    for n in range(4):
        for rule in groups:
            await h.router.route(groups[rule][n])
    receiver.fail_with = Fault(500, body="down")
    recovered_at = T0.timestamp() + 600
    for _ in range(1000):
        await h.dispatcher.deliver_due()
        due = await store.next_due_at()
        if due is None:
            break
        # +1 ms: datetimes hold microseconds, so a float time may round to just before it is due.
        clock.set(T0.fromtimestamp(max(due, clock.now().timestamp()) + 0.001, T0.tzinfo))
        if clock.now().timestamp() >= recovered_at:
            receiver.fail_with = None
    await h.sink.close()
    assert clock.now().timestamp() >= recovered_at
    assert await store.outbox_counts() == {"pending": 0, "delivered": 12, "dead": 0}
    ok = [r for r, status in zip(receiver.requests, receiver.statuses, strict=True) if status == 200]
    assert Counter(r.key for r in ok) == Counter(
        {Alert.make_key(s.id, "hook"): 1 for g in groups.values() for s in g}
    )
    failed = sum(1 for status in receiver.statuses if status == 500)
    assert failed > 12 and h.metric("harvester_alerts_retried_total") == failed
    for rule, signals_ in groups.items():  # in order per group
        delivered = [r.json()["signals"][0]["id"] for r in ok if r.json()["alert"]["rule"] == rule]
        assert delivered == [s.id for s in signals_]
    # Nothing is ever sent again.
    clock.advance(86_400)
    assert await h.dispatcher.deliver_due() == 0 and len(receiver.requests) == len(receiver.statuses)


async def test_429_retry_after_30_is_honoured(
    store: Store, clock: ManualClock, receiver: FakeHttpServer
) -> None:
    h = Harness(store, clock, receiver.url)
    receiver.faults = [Fault(429, headers={"Retry-After": "30"})]
    await h.router.route(make_signal(1))
    assert await h.dispatcher.deliver_due() == 0
    assert await store.next_due_at() == clock.now().timestamp() + 30
    clock.advance(29.9)
    assert await h.dispatcher.deliver_due() == 0 and len(receiver.requests) == 1  # not before time
    clock.advance(0.1)
    assert await h.dispatcher.deliver_due() == 1 and len(receiver.requests) == 2
    await h.sink.close()


async def test_rate_limit_defers_without_spending_attempts(
    store: Store, clock: ManualClock, receiver: FakeHttpServer
) -> None:
    h = Harness(store, clock, receiver.url, sink={"rate_limit": {"count": 2, "per": "1m"}})
    for n in range(5):
        await h.router.route(make_signal(n, rule=f"rule{n}"))
    assert await h.dispatcher.deliver_due() == 2
    assert h.metric("harvester_alerts_rate_limited_total") == 3
    waiting = await store.outbox_entries(status="pending")
    assert len(waiting) == 3 and all(e.attempts == 0 for e in waiting)
    assert await store.next_due_at() == pytest.approx(clock.now().timestamp() + 30)
    clock.advance(30)
    assert await h.dispatcher.deliver_due() == 1
    clock.advance(60)
    assert await h.dispatcher.deliver_due() == 2
    assert len(receiver.requests) == 5
    await h.sink.close()


async def test_an_alert_older_than_max_age_is_dead_lettered(
    store: Store, clock: ManualClock, receiver: FakeHttpServer
) -> None:
    h = Harness(store, clock, receiver.url, max_age="1h", max_attempts=1000)
    receiver.fail_with = Fault(503)
    await h.router.route(make_signal(1))
    await h.dispatcher.deliver_due()
    assert (await store.outbox_counts())["pending"] == 1
    clock.advance(3600)
    await h.dispatcher.deliver_due()
    assert await store.outbox_counts() == {"pending": 0, "delivered": 0, "dead": 1}
    (dead,) = await store.dead_letters()
    assert dead.attempts == 2 and "HTTP 503" in (dead.last_error or "")
    # Re-sent, it gets a fresh hour: one more failure does not dead-letter it at once.
    assert await h.router.resend_dead(key=dead.key) == 1
    await h.dispatcher.deliver_due()
    assert (await store.outbox_counts())["pending"] == 1
    await h.sink.close()


async def test_kill_9_between_outbox_and_delivery_then_restart(
    tmp_path: Path, receiver: FakeHttpServer
) -> None:
    count, before_kill = 6, 2
    db = tmp_path / "crash.db"
    receiver.faults = [Fault(200)] * before_kill + [Fault(stall=True)]
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        str(CHILD),
        str(db),
        receiver.url + "/hook",
        str(count),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        assert await asyncio.wait_for(child.stdout.readline(), 30) == b"routed\n"
        await receiver.wait_for(before_kill + 1, within=30)  # the third request hangs: in flight
    finally:
        child.send_signal(signals.SIGKILL)
        await child.wait()
    in_flight = receiver.requests[before_kill].key

    store = await Store.open(db)
    try:
        assert (await store.outbox_counts())["delivered"] == before_kill
        clock = ManualClock(datetime.now(UTC))  # the child stamped the outbox with the wall clock
        h = Harness(store, clock, receiver.url + "/hook")
        assert await h.dispatcher.deliver_due() == count - before_kill
        await h.sink.close()
    finally:
        await store.close()
    keys = Counter(r.key for r in receiver.requests)
    assert len(keys) == count  # every alert arrived (the receiver counts by idempotency key)
    assert {k: n for k, n in keys.items() if n > 1} == {in_flight: 2}  # only the one cut off is repeated
    first_sent = [r.key for r in receiver.requests[:before_kill]]
    assert all(keys[k] == 1 for k in first_sent)  # delivered ones are never sent again


async def test_rows_written_before_grouping_still_deliver(
    tmp_path: Path, clock: ManualClock, receiver: FakeHttpServer
) -> None:
    db_path = tmp_path / "old.db"
    signal = make_signal(1)
    async with aiosqlite.connect(db_path, isolation_level=None) as db:
        await apply_migrations(db, MIGRATIONS[:1])
        await db.execute(
            "INSERT INTO outbox (key, sink, signal_id, payload, status, attempts, next_attempt_at,"
            " created_at, updated_at) VALUES (?, 'hook', ?, ?, 'pending', 0, 0, 0, 0)",
            (Alert.make_key(signal.id, "hook"), signal.id, json.dumps(signal.to_json())),
        )
    store = await Store.open(db_path)
    try:
        h = Harness(store, clock, receiver.url)
        assert await h.dispatcher.deliver_due() == 1
        await h.sink.close()
    finally:
        await store.close()
    assert receiver.requests[0].json()["signals"][0]["id"] == signal.id


async def test_dead_letters_cli_lists_and_resends(
    tmp_path: Path, clock: ManualClock, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "h.yaml"
    config.write_text(f"state_dir: {tmp_path}\nalerts:\n  sinks:\n    - type: log\n      name: console\n")
    store = await Store.open(tmp_path / "harvester.db")
    try:
        for n, sink in ((1, "console"), (2, "slack")):
            s = make_signal(n)
            await store.save_signal_and_alerts(
                s, [Alert(Alert.make_key(s.id, sink), sink, s, T0)], T0.timestamp()
            )
            await store.mark_dead(Alert.make_key(s.id, sink), 3, f"HTTP 50{n}", T0.timestamp() + n)
    finally:
        await store.close()

    def run(*args: str) -> tuple[int, str]:
        code = cli_main(["dead-letters", *args, "--config", str(config)])
        return code, capsys.readouterr().out

    code, out = await asyncio.to_thread(run, "list")
    assert code == 0 and "HTTP 501" in out and "HTTP 502" in out and "2 dead letters" in out
    code, out = await asyncio.to_thread(run, "list", "--json")
    listed = json.loads(out)
    assert [d["sink"] for d in listed] == ["slack", "console"]
    code, out = await asyncio.to_thread(run, "resend")
    assert code == 2  # says what to resend: --all, --sink or --key
    code, out = await asyncio.to_thread(run, "resend", "--key", listed[0]["key"])
    assert code == 0 and "requeued 1" in out
    code, out = await asyncio.to_thread(run, "resend", "--all")
    assert code == 0 and "requeued 1" in out
    code, out = await asyncio.to_thread(run, "list")
    assert "no dead letters" in out
    code, out = await asyncio.to_thread(run, "resend", "--sink", "console")
    assert code == 1 and "requeued 0" in out

    store = await Store.open(tmp_path / "harvester.db")
    try:
        assert (await store.outbox_counts())["pending"] == 2
    finally:
        await store.close()


async def test_dispatcher_run_loop_delivers_when_woken_and_on_poll(
    store: Store, receiver: FakeHttpServer
) -> None:
    clock = ManualClock(T0)
    h = Harness(store, clock, receiver.url, poll_interval="1s")
    polled = asyncio.Event()

    async def sleep(seconds: float) -> None:
        polled.set()  # the loop waits; a test-driven "tick" is enough
        await asyncio.Event().wait()

    h.dispatcher.sleep = sleep
    task = asyncio.create_task(h.dispatcher.run())
    try:
        await asyncio.wait_for(polled.wait(), 10)
        await h.router.route(make_signal(1))  # wakes the dispatcher through on_alerts
        await receiver.wait_for(1)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await h.sink.close()
    assert len(receiver.requests) == 1
    clock.advance(timedelta(seconds=1).total_seconds())


async def test_post_to_alert_latency_is_measured_at_delivery_and_replayed_signals_are_not(
    store: Store, clock: ManualClock, receiver: FakeHttpServer
) -> None:
    h = Harness(store, clock, receiver.url)
    live = make_signal(1)
    clock.advance((live.at - T0).total_seconds())  # a live signal: made now
    receiver.faults = [Fault(429, headers={"Retry-After": "30"})]
    await h.router.route(live)
    assert await h.dispatcher.deliver_due() == 0
    clock.advance(30)
    assert await h.dispatcher.deliver_due() == 1
    histogram = "harvester_post_to_alert_seconds"
    assert h.metrics.registry.get_sample_value(f"{histogram}_count") == 1
    assert h.metrics.registry.get_sample_value(f"{histogram}_sum") == 30.0
    # A signal from a replay carries event time long past: delivered, but it is no latency.
    clock.advance(30 * 86_400)
    await h.router.route(make_signal(2, rule="other"))
    assert await h.dispatcher.deliver_due() == 1
    assert h.metrics.registry.get_sample_value(f"{histogram}_count") == 1
    await h.sink.close()
