"""Router and dispatcher over the real store: outbox first, retries with backoff, Retry-After,
dead letters, cooldown, and exactly-once delivery."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Literal

import pytest

from harvester.alerts.dispatcher import Dispatcher
from harvester.alerts.router import Router
from harvester.alerts.sinks.base import Sink
from harvester.clock import ManualClock
from harvester.config.schema import AlertsConfig, SinkConfig
from harvester.errors import SinkError
from harvester.metrics import Metrics
from harvester.models import Alert, Severity, Signal
from harvester.queues import BoundedQueue
from harvester.store import Store
from tests.helpers import T0, FakeSleep


class ScriptedConfig(SinkConfig):
    type: Literal["scripted"] = "scripted"


class ScriptedSink(Sink):
    """Fails with the scripted errors first, then accepts; records every delivered key."""

    config_class = ScriptedConfig

    def __init__(self, name: str, failures: list[SinkError] | None = None) -> None:
        super().__init__(ScriptedConfig(type="scripted", name=name))
        self.failures = failures or []
        self.attempts = 0
        self.delivered: list[str] = []

    async def send(self, alert: Alert) -> None:
        self.attempts += 1
        if self.failures:
            raise self.failures.pop(0)
        self.delivered.append(alert.key)


def signal(n: int, rule: str = "acme", severity: Severity = Severity.HIGH) -> Signal:
    start = T0 + timedelta(minutes=n)
    return Signal(
        id=Signal.make_id(rule, "volume_spike", start),
        rule=rule,
        kind="volume_spike",
        severity=severity,
        at=start,
        window_start=start,
        window_end=start,
        observed=50,
        baseline=5,
        score=9,
        summary=f"spike {n}",
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path / "h.db")
    yield opened
    await opened.close()


def build(
    store: Store, clock: ManualClock, sinks: dict[str, Sink], **alerts: float
) -> tuple[Router, Dispatcher]:
    config = AlertsConfig(**{"group_wait": 0.0, **alerts})  # type: ignore[arg-type]
    metrics = Metrics()
    dispatcher = Dispatcher(
        store=store,
        sinks=sinks,
        config=config,
        clock=clock,
        sleep=FakeSleep(clock),
        rng=random.Random(4),
        metrics=metrics,
    )
    router = Router(
        store=store,
        sinks=[(n, Severity(s.config.min_severity)) for n, s in sinks.items()],
        config=config,
        clock=clock,
        metrics=metrics,
        queue=BoundedQueue(10),
        on_alerts=dispatcher.wake,
    )
    return router, dispatcher


async def test_alert_is_in_the_outbox_before_delivery_and_delivered_once(
    store: Store, clock: ManualClock
) -> None:
    sink = ScriptedSink("hook")
    router, dispatcher = build(store, clock, {"hook": sink})
    assert await router.route(signal(1))
    assert (await store.outbox_counts())["pending"] == 1
    assert await dispatcher.deliver_due() == 1
    assert await dispatcher.deliver_due() == 0
    assert sink.delivered == [Alert.make_key(signal(1).id, "hook")]
    assert await store.outbox_counts() == {"pending": 0, "delivered": 1, "dead": 0}
    # The same signal again (a restart re-firing it) creates nothing new.
    assert not await router.route(signal(1))
    assert await dispatcher.deliver_due() == 0 and len(sink.delivered) == 1


async def test_failing_sink_keeps_alert_until_it_recovers(store: Store, clock: ManualClock) -> None:
    sink = ScriptedSink("hook", [SinkError("HTTP 500")] * 5)
    router, dispatcher = build(store, clock, {"hook": sink}, retry_base=2.0, retry_cap=60.0, max_attempts=10)
    await router.route(signal(1))
    waits = []
    for attempt in range(1, 6):
        assert await dispatcher.deliver_due() == 0
        assert sink.attempts == attempt
        due = await store.next_due_at()
        assert due is not None
        waits.append(due - clock.now().timestamp())
        assert await dispatcher.deliver_due() == 0  # not due yet: no attempt
        assert sink.attempts == attempt
        clock.set(T0.fromtimestamp(due + 0.001, T0.tzinfo))
    assert await dispatcher.deliver_due() == 1
    assert sink.attempts == 6 and len(sink.delivered) == 1
    ceilings = [min(60.0, 2.0 * 2**i) for i in range(5)]
    assert all(0.5 <= w <= c for w, c in zip(waits, ceilings, strict=True))


async def test_retry_after_is_honoured(store: Store, clock: ManualClock) -> None:
    sink = ScriptedSink("hook", [SinkError("HTTP 429", retry_after=30.0)])
    router, dispatcher = build(store, clock, {"hook": sink})
    await router.route(signal(1))
    await dispatcher.deliver_due()
    assert await store.next_due_at() == clock.now().timestamp() + 30.0


async def test_dead_letter_after_max_attempts_and_permanent_errors(store: Store, clock: ManualClock) -> None:
    flaky = ScriptedSink("flaky", [SinkError("HTTP 503")] * 10)
    broken = ScriptedSink("broken", [SinkError("HTTP 404", permanent=True)])
    router, dispatcher = build(store, clock, {"flaky": flaky, "broken": broken}, max_attempts=3)
    await router.route(signal(1))
    for _ in range(5):
        await dispatcher.deliver_due()
        clock.advance(3600)
    counts = await store.outbox_counts()
    assert counts == {"pending": 0, "delivered": 0, "dead": 2}
    assert flaky.attempts == 3 and broken.attempts == 1


async def test_cooldown_and_min_severity(store: Store, clock: ManualClock) -> None:
    loud = ScriptedSink("loud")
    quiet = ScriptedSink("quiet")
    quiet.config = ScriptedConfig(type="scripted", name="quiet", min_severity="critical")
    router, dispatcher = build(store, clock, {"loud": loud, "quiet": quiet}, cooldown=600, group_wait=0)
    assert await router.route(signal(1))
    assert not await router.route(signal(2))  # same rule and kind within the cooldown: stored, not alerted
    clock.advance(601)
    assert await router.route(signal(3))
    await dispatcher.deliver_due()
    assert len(loud.delivered) == 2 and quiet.delivered == []
    assert router.signals == 3 and router.suppressed == 1
    assert len(await store.recent_signals()) == 3
