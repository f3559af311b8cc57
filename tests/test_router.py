"""Routing over the real store: routes and labels, grouping (group_wait / group_interval /
repeat_interval), inhibition by a crisis, silences (config and run time), and restart safety."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from harvester.alerts.dispatcher import Dispatcher
from harvester.alerts.notification import Notification, decode_group
from harvester.alerts.router import Router
from harvester.clock import ManualClock
from harvester.config.schema import AlertsConfig
from harvester.errors import SinkError, StoreError
from harvester.metrics import Metrics
from harvester.models import Severity
from harvester.queues import BoundedQueue
from harvester.store import Store
from tests.alert_samples import make_signal
from tests.helpers import T0, FakeSleep
from tests.test_alerts import ScriptedConfig, ScriptedSink


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path / "h.db")
    yield opened
    await opened.close()


def alerts_config(sinks: list[str], **keys: Any) -> AlertsConfig:
    return AlertsConfig.model_validate(
        {"sinks": [ScriptedConfig(type="scripted", name=n) for n in sinks], **keys}
    )


def make_router(
    store: Store, clock: ManualClock, config: AlertsConfig, severities: dict[str, Severity] | None = None
) -> Router:
    names = [s.instance_name for s in config.sinks]
    return Router(
        store=store,
        sinks=[(n, (severities or {}).get(n, Severity.INFO)) for n in names],
        config=config,
        clock=clock,
        metrics=Metrics(),
        queue=BoundedQueue(10),
    )


async def outbox_rows(store: Store) -> list[tuple[str, list[str]]]:
    entries = await store.outbox_entries(limit=1000)
    return [(e.sink, [s.id for s in decode_group(e.payload)[0]]) for e in entries]


async def test_a_burst_within_group_wait_becomes_one_message(store: Store, clock: ManualClock) -> None:
    router = make_router(store, clock, alerts_config(["chat"], group_wait="30s"))
    burst = [make_signal(i) for i in range(50)]
    for signal in burst:
        assert await router.route(signal)
        clock.advance(0.5)
    assert await outbox_rows(store) == []  # still inside group_wait: nothing written yet
    assert router.next_flush_at() == T0.timestamp() + 30
    clock.set(T0 + timedelta(seconds=30))
    assert await router.flush_due() == 1
    ((sink, ids),) = await outbox_rows(store)
    assert sink == "chat" and ids == [s.id for s in burst]

    sink_ = ScriptedSink("chat")
    dispatcher = Dispatcher(
        store=store,
        sinks={"chat": sink_},
        config=router.config,
        clock=clock,
        sleep=FakeSleep(clock),
        rng=random.Random(1),
        metrics=Metrics(),
    )
    received: list[Notification] = []
    sink_.send = lambda alert: _record(received, alert)  # type: ignore[method-assign]
    assert await dispatcher.deliver_due() == 1
    (note,) = received
    assert len(note.signals) == 50 and note.group_labels == {"rule": "acme"}


async def _record(into: list[Notification], alert: object) -> None:
    assert isinstance(alert, Notification)
    into.append(alert)


async def test_group_interval_and_repeat_interval(store: Store, clock: ManualClock) -> None:
    config = alerts_config(["chat"], group_wait=0, group_interval="5m", cooldown="1h")
    router = make_router(store, clock, config)
    assert await router.route(make_signal(1, kind="volume_spike"))
    assert len(await outbox_rows(store)) == 1  # group_wait 0: at once
    clock.advance(60)
    assert await router.route(make_signal(2, kind="sentiment_shift"))  # same group, new kind: waits
    assert len(await outbox_rows(store)) == 1
    assert router.next_flush_at() == T0.timestamp() + 300
    assert not await router.route(make_signal(3, kind="volume_spike"))  # repeat within 1h: not alerted
    clock.set(T0 + timedelta(seconds=300))
    await router.flush_due()
    rows = await outbox_rows(store)
    assert [ids for _, ids in rows] == [[make_signal(1).id], [make_signal(2, kind="sentiment_shift").id]]
    assert router.suppressed == 1 and router.signals == 3
    clock.advance(3600)
    assert await router.route(make_signal(4, kind="volume_spike"))  # the repeat interval is over


async def test_routes_match_labels_severity_and_continue(store: Store, clock: ManualClock) -> None:
    config = AlertsConfig.model_validate(
        {
            "sinks": [ScriptedConfig(type="scripted", name=n) for n in ("brand", "pager", "all")],
            "group_wait": 0,
            "labels": {"acme": {"team": "brand"}},
            "routes": [
                {"match": {"team": "brand"}, "sinks": ["brand"], "continue": True},
                {"match": {"rule": "ac*"}, "min_severity": "critical", "sinks": ["pager"]},
                {"sinks": ["all"], "group_by": ["rule", "kind"]},
            ],
        }
    )
    router = make_router(store, clock, config)
    await router.route(make_signal(1, rule="acme", severity=Severity.HIGH))  # brand, then all
    await router.route(make_signal(2, rule="acme", kind="crisis", severity=Severity.CRITICAL))  # brand+pager
    await router.route(make_signal(3, rule="globex", severity=Severity.LOW))  # all
    assert sorted(sink for sink, _ in await outbox_rows(store)) == ["all", "all", "brand", "pager"]
    clock.advance(60)  # the second acme alert to `brand` waited out the group's group_interval
    await router.flush_due()
    sinks = sorted(sink for sink, _ in await outbox_rows(store))
    assert sinks == ["all", "all", "brand", "brand", "pager"]


def test_a_route_naming_an_unknown_sink_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="no sink is named 'nope'"):
        alerts_config(["chat"], routes=[{"sinks": ["nope"]}])


async def test_sink_min_severity_still_filters(store: Store, clock: ManualClock) -> None:
    config = alerts_config(["loud", "quiet"], group_wait=0)
    router = make_router(store, clock, config, {"quiet": Severity.CRITICAL})
    await router.route(make_signal(1, severity=Severity.HIGH))
    assert [sink for sink, _ in await outbox_rows(store)] == ["loud"]


async def test_a_crisis_mutes_the_rules_spikes(store: Store, clock: ManualClock) -> None:
    router = make_router(store, clock, alerts_config(["chat"], group_wait="30s"))
    spike = make_signal(1, rule="acme", kind="volume_spike")
    other_rule = make_signal(1, rule="globex", kind="volume_spike")
    crisis = make_signal(2, rule="acme", kind="crisis", severity=Severity.CRITICAL)
    await router.route(spike)
    await router.route(other_rule)
    clock.advance(10)
    await router.route(crisis)  # arrives while the spike waits in its group: the spike is dropped
    clock.advance(5)
    later_spike = make_signal(3, rule="acme", kind="volume_spike")
    assert not await router.route(later_spike)  # while the crisis is active
    clock.advance(30)
    await router.flush_due()
    rows = [ids for _, ids in await outbox_rows(store)]
    assert sorted(rows) == sorted([[crisis.id], [other_rule.id]])
    assert router.inhibited == 2
    assert (await store.staged_signals()) == []
    clock.advance(1800)
    assert await router.route(make_signal(4, rule="acme", kind="volume_spike"))  # the crisis is over


async def test_config_and_run_time_silences(store: Store, clock: ManualClock, tmp_path: Path) -> None:
    config = alerts_config(
        ["chat"],
        group_wait=0,
        silences=[{"match": {"rule": "noisy-*"}, "ends_at": (T0 + timedelta(hours=1)).isoformat()}],
    )
    router = make_router(store, clock, config)
    assert not await router.route(make_signal(1, rule="noisy-bot"))
    silence = await router.create_silence(
        {"rule": "acme", "kind": "volume_*"}, duration=600, comment="deploy"
    )
    assert not await router.route(make_signal(2, rule="acme"))
    assert await router.route(make_signal(3, rule="acme", kind="crisis", severity=Severity.CRITICAL))
    assert router.silenced == 2
    listed = {s["id"]: s for s in router.list_silences()}
    assert listed[silence.id]["state"] == "active" and listed[silence.id]["comment"] == "deploy"
    assert listed["config-0"]["origin"] == "config"

    # A restarted router finds the run-time silence in the store.
    again = make_router(store, clock, config)
    await again.restore()
    assert silence.id in {s["id"] for s in again.list_silences()}
    assert await again.expire_silence(silence.id)
    assert not await again.expire_silence(silence.id)  # already over
    assert not await again.expire_silence("config-0")  # config silences change with the config
    clock.advance(1)
    assert await again.route(make_signal(4, rule="acme", kind="sentiment_shift"))
    assert silence.id not in {s["id"] for s in again.list_silences()}
    assert silence.id in {s["id"] for s in again.list_silences(include_expired=True)}
    with pytest.raises(ValueError):
        await again.create_silence({})


async def test_a_silence_created_during_group_wait_drops_the_waiting_signal(
    store: Store, clock: ManualClock
) -> None:
    router = make_router(store, clock, alerts_config(["chat"], group_wait="30s"))
    assert await router.route(make_signal(1))
    await router.create_silence({"rule": "acme"}, duration=3600)
    clock.advance(30)
    assert await router.flush_due() == 0
    assert await outbox_rows(store) == [] and await store.staged_signals() == []


async def test_staged_signals_survive_a_restart_and_are_written_once(
    store: Store, clock: ManualClock
) -> None:
    config = alerts_config(["chat"], group_wait="30s")
    first = make_router(store, clock, config)
    signals = [make_signal(i) for i in range(3)]
    for signal in signals:
        await first.route(signal)
    del first  # a crash: nothing flushed

    second = make_router(store, clock, config)
    assert await second.restore() == 3
    assert await second.flush_due() == 0  # group_wait still counts from the first staging
    clock.advance(30)
    assert await second.flush_due() == 1
    third = make_router(store, clock, config)
    assert await third.restore() == 0
    assert [ids for _, ids in await outbox_rows(store)] == [[s.id for s in signals]]
    for signal in signals:  # the engine re-firing the same windows after the restart changes nothing
        assert not await third.route(signal)


async def test_flush_all_writes_waiting_groups_at_shutdown(store: Store, clock: ManualClock) -> None:
    router = make_router(store, clock, alerts_config(["chat"], group_wait="1h"))
    await router.route(make_signal(1, rule="a"))
    await router.route(make_signal(1, rule="b"))
    assert await router.flush_all() == 2
    assert len(await outbox_rows(store)) == 2


async def test_status_and_dead_letter_api(store: Store, clock: ManualClock) -> None:
    config = alerts_config(["chat"], group_wait=0, max_attempts=1)
    router = make_router(store, clock, config)
    woken: list[int] = []
    router.on_alerts = lambda: woken.append(1)
    await router.route(make_signal(1))
    sink = ScriptedSink("chat", [SinkError("HTTP 500")])
    dispatcher = Dispatcher(
        store=store,
        sinks={"chat": sink},
        config=config,
        clock=clock,
        sleep=FakeSleep(clock),
        rng=random.Random(1),
        metrics=Metrics(),
    )
    await dispatcher.deliver_due()
    status = await router.status()
    assert status["outbox"] == {"pending": 0, "delivered": 0, "dead": 1}
    assert status["dead_letters"] == 1 and status["per_sink"]["chat"]["dead"] == 1
    (dead,) = await router.dead_letters()
    assert dead["sink"] == "chat" and dead["last_error"] == "HTTP 500" and dead["attempts"] == 1
    assert await router.resend_dead(key=dead["key"]) == 1 and len(woken) == 2
    assert (await router.status())["backlog"] == 1
    assert await dispatcher.deliver_due() == 1
    assert sink.delivered == [dead["key"]]


async def test_store_errors_are_retried_without_losing_the_signal(
    store: Store, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    router = make_router(store, clock, alerts_config(["chat"], group_wait=0))
    router.sleep = FakeSleep(clock)
    real_save, real_flush = store.save_signal_and_stage, store.flush_group
    failures = {"save": 1, "flush": 1}

    async def flaky_save(*args: Any, **kwargs: Any) -> bool:
        if failures["save"]:
            failures["save"] -= 1
            raise StoreError("store: database is locked")
        return await real_save(*args, **kwargs)

    async def flaky_flush(*args: Any, **kwargs: Any) -> bool:
        if failures["flush"]:
            failures["flush"] -= 1
            raise StoreError("store: disk full")
        return await real_flush(*args, **kwargs)

    monkeypatch.setattr(store, "save_signal_and_stage", flaky_save)
    monkeypatch.setattr(store, "flush_group", flaky_flush)
    await router._route_until_stored(make_signal(1))  # first save fails, the retry stores it
    assert router.signals == 1 and await outbox_rows(store) == []  # then the flush failed: kept
    assert router.next_flush_at() == clock.now().timestamp() + 1.0
    clock.advance(1.0)
    assert await router.flush_due() == 1
    assert [ids for _, ids in await outbox_rows(store)] == [[make_signal(1).id]]
    assert router.metrics.registry.get_sample_value("harvester_store_errors_total") == 2
