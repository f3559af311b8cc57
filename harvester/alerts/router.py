"""Signals -> alerts: a cooldown per (rule, kind), one alert per sink that wants its severity,
written to the outbox (with the signal, in one transaction) before any attempt to send.

Grouping, inhibition and silences come with the full alerting work; this is the durable core.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import structlog

from harvester.clock import Clock
from harvester.config.schema import AlertsConfig
from harvester.metrics import Metrics
from harvester.models import Alert, Severity, Signal
from harvester.queues import BoundedQueue
from harvester.store import Store

log = structlog.get_logger(__name__)


class Router:
    def __init__(
        self,
        *,
        store: Store,
        sinks: Sequence[tuple[str, Severity]],
        config: AlertsConfig,
        clock: Clock,
        metrics: Metrics,
        queue: BoundedQueue[tuple[Signal, float]],
        on_alerts: Callable[[], None] = lambda: None,
        on_latency: Callable[[float], None] | None = None,
    ) -> None:
        self.store = store
        self.sinks = list(sinks)
        self.config = config
        self.clock = clock
        self.metrics = metrics
        self.queue = queue
        self.on_alerts = on_alerts
        self.on_latency = on_latency
        self.signals = 0
        self.suppressed = 0
        self._cooldown_until: dict[tuple[str, str], float] = {}

    async def run(self) -> None:
        while True:
            signal, enqueued = await self.queue.get()
            try:
                latency = time.perf_counter() - enqueued
                self.metrics.post_to_signal.observe(latency)
                if self.on_latency is not None:
                    self.on_latency(latency)
                await self.route(signal)
            finally:
                self.queue.task_done()

    async def route(self, signal: Signal) -> bool:
        """Store the signal and its alerts; returns True if alerts were queued for delivery."""
        now = self.clock.now().timestamp()
        key = (signal.rule, signal.kind)
        in_cooldown = now < self._cooldown_until.get(key, float("-inf"))
        alerts = []
        if not in_cooldown:
            alerts = [
                Alert(Alert.make_key(signal.id, sink), sink, signal, self.clock.now())
                for sink, min_severity in self.sinks
                if signal.severity.rank >= min_severity.rank
            ]
        is_new = await self.store.save_signal_and_alerts(signal, alerts, now)
        if not is_new:
            return False
        self.signals += 1
        self.metrics.signals.labels(signal.rule, signal.kind).inc()
        log.info(
            "signal",
            rule=signal.rule,
            kind=signal.kind,
            severity=signal.severity.value,
            summary=signal.summary,
        )
        if in_cooldown:
            self.suppressed += 1
            self.metrics.alerts_suppressed.labels(signal.rule).inc()
            return False
        self._cooldown_until[key] = now + self.config.cooldown
        if alerts:
            self.on_alerts()
        return bool(alerts)
