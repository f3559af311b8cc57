"""Delivers what the outbox holds: at most one attempt per alert at a time, retries with exponential
backoff and full jitter (or the server's Retry-After), dead letters after `max_attempts`.

An alert is marked delivered only after its sink returned; after a crash the undelivered ones are
simply still pending, and delivered ones are never sent again.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping

import structlog

from harvester.alerts.sinks.base import Sink
from harvester.clock import Clock, Sleep
from harvester.config.schema import AlertsConfig
from harvester.errors import SinkError
from harvester.metrics import Metrics
from harvester.models import Alert, Signal
from harvester.store import OutboxEntry, Store

log = structlog.get_logger(__name__)


class Dispatcher:
    def __init__(
        self,
        *,
        store: Store,
        sinks: Mapping[str, Sink],
        config: AlertsConfig,
        clock: Clock,
        sleep: Sleep,
        rng: random.Random,
        metrics: Metrics,
    ) -> None:
        self.store = store
        self.sinks = dict(sinks)
        self.config = config
        self.clock = clock
        self.sleep = sleep
        self.rng = rng
        self.metrics = metrics
        self.delivered = 0
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    def retry_delay(self, attempts: int, retry_after: float | None) -> float:
        if retry_after is not None:
            # The server knows best when to come back, within reason: a broken or hostile Retry-After
            # must not park an alert for days.
            return min(max(retry_after, 0.0), self.config.retry_cap * 4)
        ceiling = min(self.config.retry_cap, self.config.retry_base * 2 ** (attempts - 1))
        return max(self.config.retry_base / 4, self.rng.uniform(0, ceiling))

    async def run(self) -> None:
        while True:
            self._wake.clear()
            await self.deliver_due()
            next_at = await self.store.next_due_at()
            waits: list[asyncio.Future[object]] = [asyncio.ensure_future(self._wake.wait())]
            if next_at is not None:
                waits.append(
                    asyncio.ensure_future(self.sleep(max(0.0, next_at - self.clock.now().timestamp())))
                )
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waits:
                    waiter.cancel()

    async def deliver_due(self) -> int:
        """Attempt every alert that is due now; returns how many were delivered."""
        delivered = 0
        for entry in await self.store.due_alerts(self.clock.now().timestamp()):
            if await self._attempt(entry):
                delivered += 1
        return delivered

    async def _attempt(self, entry: OutboxEntry) -> bool:
        sink = self.sinks.get(entry.sink)
        now = self.clock.now().timestamp()
        if sink is None:
            await self.store.mark_dead(
                entry.key, entry.attempts, f"sink {entry.sink!r} is no longer configured", now
            )
            self.metrics.alerts_dead.labels(entry.sink).inc()
            return False
        alert = Alert(entry.key, entry.sink, Signal.from_json_text(entry.payload), self.clock.now())
        attempts = entry.attempts + 1
        try:
            await sink.send(alert)
        except SinkError as exc:
            return await self._failed(entry, attempts, exc)
        except Exception as exc:  # a bug in a sink must not stop delivery to the others
            log.exception("sink raised an unexpected error", sink=entry.sink)
            return await self._failed(entry, attempts, SinkError(f"unexpected error: {exc!r}"))
        await self.store.mark_delivered(entry.key, self.clock.now().timestamp())
        self.metrics.alerts_sent.labels(entry.sink).inc()
        self.delivered += 1
        return True

    async def _failed(self, entry: OutboxEntry, attempts: int, exc: SinkError) -> bool:
        now = self.clock.now().timestamp()
        self.metrics.alerts_failed.labels(entry.sink).inc()
        age = now - entry.created_at
        if exc.permanent or attempts >= self.config.max_attempts:
            await self.store.mark_dead(entry.key, attempts, str(exc), now)
            self.metrics.alerts_dead.labels(entry.sink).inc()
            log.error(
                "alert dead-lettered",
                sink=entry.sink,
                key=entry.key,
                attempts=attempts,
                error=str(exc),
                age_s=age,
            )
            return False
        delay = self.retry_delay(attempts, exc.retry_after)
        await self.store.mark_retry(entry.key, attempts, now + delay, str(exc))
        log.warning(
            "alert delivery failed, will retry",
            sink=entry.sink,
            attempts=attempts,
            retry_in_s=round(delay, 2),
            error=str(exc),
        )
        return False
