"""Benchmark: latency from a signal reaching the router to the sink's HTTP request arriving at a healthy
local webhook receiver, through the real store (outbox write first), dispatcher and webhook sink.

    python -m harvester.alerts.bench [--signals N] [--json]

Prints p50 / p90 / p99 / max in milliseconds. A figure, not a test: the goal is p99 < 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog
from aiohttp import web

from harvester.alerts.dispatcher import Dispatcher
from harvester.alerts.router import Router
from harvester.alerts.sinks.webhook import WebhookSink, WebhookSinkConfig
from harvester.clock import SystemClock, real_sleep
from harvester.config.schema import AlertsConfig
from harvester.metrics import Metrics
from harvester.models import Severity, Signal
from harvester.queues import BoundedQueue
from harvester.store import Store


def _signal(n: int) -> Signal:
    start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=n)
    rule = f"bench-{n}"
    return Signal(
        id=Signal.make_id(rule, "volume_spike", start),
        rule=rule,
        kind="volume_spike",
        severity=Severity.HIGH,
        at=start,
        window_start=start,
        window_end=start,
        observed=40,
        baseline=4,
        score=8,
        summary=f"bench signal {n}",
    )


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def measure(count: int) -> dict[str, float]:
    arrived: dict[str, float] = {}
    events: dict[str, asyncio.Event] = {}

    async def receive(request: web.Request) -> web.Response:
        await request.read()
        key = request.headers["Idempotency-Key"]
        arrived[key] = time.perf_counter()
        events[key].set()
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/hook", receive)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = int(runner.addresses[0][1])
    sink_config = WebhookSinkConfig(
        type="webhook", name="hook", url=f"http://127.0.0.1:{port}/hook", secret=None
    )
    config = AlertsConfig(sinks=[sink_config], group_wait=0, group_interval=0, cooldown=0)
    with tempfile.TemporaryDirectory() as tmp:
        store = await Store.open(Path(tmp) / "bench.db")
        sink = WebhookSink(sink_config)
        await sink.start()
        metrics, clock = Metrics(), SystemClock()
        dispatcher = Dispatcher(
            store=store,
            sinks={"hook": sink},
            config=config,
            clock=clock,
            sleep=real_sleep,
            rng=random.Random(1),
            metrics=metrics,
        )
        router = Router(
            store=store,
            sinks=[("hook", Severity.INFO)],
            config=config,
            clock=clock,
            metrics=metrics,
            queue=BoundedQueue(1),
            on_alerts=dispatcher.wake,
        )
        task = asyncio.create_task(dispatcher.run())
        latencies = []
        try:
            for n in range(count):
                signal = _signal(n)
                key = f"{signal.id}:hook"
                events[key] = asyncio.Event()
                started = time.perf_counter()
                await router.route(signal)
                await asyncio.wait_for(events[key].wait(), 10)
                latencies.append((arrived[key] - started) * 1000)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await sink.close()
            await store.close()
            await runner.cleanup()
    return {
        "signals": float(count),
        "p50_ms": round(statistics.median(latencies), 2),
        "p90_ms": round(_percentile(latencies, 0.90), 2),
        "p99_ms": round(_percentile(latencies, 0.99), 2),
        "max_ms": round(max(latencies), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--signals", type=int, default=500)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))  # quiet: warnings only
    figures = asyncio.run(measure(args.signals))
    if args.json:
        print(json.dumps(figures))
    else:
        print(
            f"signal -> webhook request over {int(figures['signals'])} signals: p50 {figures['p50_ms']} ms, "
            f"p90 {figures['p90_ms']} ms, p99 {figures['p99_ms']} ms, max {figures['max_ms']} ms"
        )


if __name__ == "__main__":
    main()
