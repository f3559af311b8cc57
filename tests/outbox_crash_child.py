"""Child process for the outbox's kill -9 test (run by tests/test_outbox.py, not collected by pytest).

Usage: python outbox_crash_child.py DB_PATH WEBHOOK_URL COUNT

Routes COUNT signals of one rule (each its own alert: group_wait and group_interval are 0), so all of
them are in the outbox, prints `routed`, then delivers them to the webhook one after the other. The
parent makes the receiver hang on one request and kills this process with SIGKILL while it waits.
"""

from __future__ import annotations

import asyncio
import random
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog

from harvester.alerts.dispatcher import Dispatcher
from harvester.alerts.router import Router
from harvester.alerts.sinks.webhook import WebhookSink, WebhookSinkConfig
from harvester.clock import SystemClock, real_sleep
from harvester.config.schema import AlertsConfig
from harvester.metrics import Metrics
from harvester.models import Severity, Signal
from harvester.queues import BoundedQueue
from harvester.store import Store

START = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def crash_signal(n: int) -> Signal:
    start = START + timedelta(minutes=n)
    return Signal(
        id=Signal.make_id("crash", "volume_spike", start),
        rule="crash",
        kind="volume_spike",
        severity=Severity.HIGH,
        at=start,
        window_start=start,
        window_end=start,
        observed=10,
        baseline=1,
        score=5,
        summary=f"signal {n}",
    )


def alerts_config(url: str) -> tuple[AlertsConfig, WebhookSinkConfig]:
    sink = WebhookSinkConfig(type="webhook", name="hook", url=url, timeout=30)
    config = AlertsConfig(sinks=[sink], group_wait=0, group_interval=0, cooldown=0)
    return config, sink


async def main(path: Path, url: str, count: int) -> None:
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))  # stdout is our channel
    store = await Store.open(path)
    config, sink_config = alerts_config(url)
    sink = WebhookSink(sink_config)
    metrics = Metrics()
    clock = SystemClock()
    dispatcher = Dispatcher(
        store=store,
        sinks={"hook": sink},
        config=config,
        clock=clock,
        sleep=real_sleep,
        rng=random.Random(0),
        metrics=metrics,
    )
    router = Router(
        store=store,
        sinks=[("hook", Severity.INFO)],
        config=config,
        clock=clock,
        metrics=metrics,
        queue=BoundedQueue(1),
    )
    for n in range(count):
        await router.route(crash_signal(n))
    sys.stdout.write("routed\n")
    sys.stdout.flush()
    await sink.start()
    await dispatcher.deliver_due()  # the parent kills us in here
    await sink.close()
    await store.close()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])))
