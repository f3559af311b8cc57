"""Delivers what the outbox holds: at most one attempt per alert at a time, retries with exponential
backoff and full jitter (or the server's Retry-After), dead letters after `max_attempts` or `max_age`.

An alert is marked delivered only after its sink returned; after a crash the undelivered ones are
simply still pending, and delivered ones are never sent again. Sinks are worked concurrently (a slow
one does not hold up the others), each sink's alerts one after the other, and an alert waits while an
older one of its group is pending (the store's `due_alerts` sees to that), so groups arrive in order.
A sink's rate limit defers a send without counting an attempt.

A store that refuses `mark_delivered` after a successful send (database locked, disk full) must not
make the alert go out again: the key is kept in memory as sent (`unmarked`), never attempted again,
and its mark is retried before every pass until the store takes it. Only a daemon that dies before
then re-sends it at its next start (same idempotency key): the store is the only durable memory.
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, datetime

import structlog

from harvester.alerts.notification import ExamplePost, Notification, decode_group, lead_signal
from harvester.alerts.ratelimit import TokenBucket
from harvester.alerts.sinks.base import Sink
from harvester.clock import Clock, Sleep
from harvester.config.schema import AlertsConfig
from harvester.errors import SinkError, StoreError
from harvester.metrics import Metrics
from harvester.store import OutboxEntry, Store

log = structlog.get_logger(__name__)

MAX_EXAMPLES = 5


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
        # Sent, but the store refused to record it: key -> when it was delivered.
        self.unmarked: dict[str, float] = {}
        self._wake = asyncio.Event()
        now = self.now()
        self.buckets = {
            name: TokenBucket(sink.config.rate_limit, now)
            for name, sink in self.sinks.items()
            if sink.config.rate_limit is not None
        }

    def now(self) -> float:
        return self.clock.now().timestamp()

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
            try:
                await self.deliver_due()
                next_at = await self.store.next_due_at()
                await self._update_backlog()
            except StoreError as exc:  # a locked or full database: try again at the next poll
                log.error("outbox unavailable, retrying", error=str(exc))
                next_at = None
            # Poll as well: `harvester dead-letters resend` requeues from another process.
            delay = self.config.poll_interval
            # An unmarked alert is still pending in the store, due in the past: waking for it would
            # spin. Its mark is retried at the poll interval instead.
            if next_at is not None and not self.unmarked:
                # At least 1 ms: a clock with microsecond resolution could otherwise land a hair before
                # the due time and spin.
                delay = min(delay, max(0.001, next_at - self.now()))
            waits: list[asyncio.Future[object]] = [
                asyncio.ensure_future(self._wake.wait()),
                asyncio.ensure_future(self.sleep(delay)),
            ]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waits:
                    waiter.cancel()

    async def _update_backlog(self) -> None:
        for status, count in (await self.store.outbox_counts()).items():
            self.metrics.outbox_backlog.labels(status).set(count)

    async def deliver_due(self) -> int:
        """Attempt every alert that is due now; returns how many were delivered.

        One pass sends at most the head of each group (the next one waits for it), so passes repeat
        while they deliver something.
        """
        total = 0
        await self.settle_marks()
        while True:
            by_sink: dict[str, list[OutboxEntry]] = defaultdict(list)
            for entry in await self.store.due_alerts(self.now()):
                if entry.key not in self.unmarked:  # sent already: it must not go out twice
                    by_sink[entry.sink].append(entry)
            if not by_sink:
                return total
            delivered = sum(await asyncio.gather(*(self._deliver_sink(e) for e in by_sink.values())))
            total += delivered
            if delivered == 0:
                return total

    async def settle_marks(self) -> int:
        """Record the deliveries the store refused earlier; return how many it took now.

        Stops at the first refusal: the store is still locked or full, the rest wait for next time.
        """
        settled = 0
        for key, delivered_at in list(self.unmarked.items()):
            try:
                await self.store.mark_delivered(key, delivered_at)
            except StoreError as exc:
                log.warning(
                    "delivered alerts still not recorded, the store refused it",
                    unmarked=len(self.unmarked),
                    error=str(exc),
                )
                break
            del self.unmarked[key]
            settled += 1
        if settled:
            log.info("delivered alerts recorded", recorded=settled, unmarked=len(self.unmarked))
        return settled

    async def _deliver_sink(self, entries: list[OutboxEntry]) -> int:
        delivered = 0
        for entry in entries:
            if await self._attempt(entry):
                delivered += 1
        return delivered

    async def notification(self, entry: OutboxEntry) -> Notification:
        """The message an outbox row stands for, with its example posts looked up in the store."""
        signals, group_labels = decode_group(entry.payload)
        lead = lead_signal(signals)
        uids = [str(u) for u in lead.evidence.get("example_uids") or []][:MAX_EXAMPLES]
        posts = await self.store.posts_by_uid(uids) if uids else {}
        examples = tuple(
            ExamplePost(uid, str(p["author"]), str(p["text"]), p["url"], str(p["source"]))
            for uid in uids
            if (p := posts.get(uid)) is not None
        )
        return Notification(
            entry.key,
            entry.sink,
            lead,
            datetime.fromtimestamp(entry.created_at, UTC),
            signals=signals,
            group_labels=group_labels,
            examples=examples,
            dashboard_url=self.config.dashboard_url,
            attempt=entry.attempts + 1,
        )

    async def _attempt(self, entry: OutboxEntry) -> bool:
        sink = self.sinks.get(entry.sink)
        now = self.now()
        if sink is None:
            await self.store.mark_dead(
                entry.key, entry.attempts, f"sink {entry.sink!r} is no longer configured", now
            )
            self.metrics.alerts_dead.labels(entry.sink).inc()
            return False
        bucket = self.buckets.get(entry.sink)
        if bucket is not None and not bucket.take(now):
            wait = bucket.wait(now)
            await self.store.mark_retry(
                entry.key, entry.attempts, now + wait, "deferred by the sink's rate_limit"
            )
            self.metrics.alerts_rate_limited.labels(entry.sink).inc()
            return False
        attempts = entry.attempts + 1
        try:
            alert = await self.notification(entry)
        except (ValueError, KeyError, TypeError) as exc:  # a corrupt row can never be sent
            return await self._failed(
                entry, attempts, SinkError(f"unreadable outbox payload: {exc!r}", permanent=True)
            )
        try:
            await sink.send(alert)
        except SinkError as exc:
            return await self._failed(entry, attempts, exc)
        except Exception as exc:  # a bug in a sink must not stop delivery to the others
            log.exception("sink raised an unexpected error", sink=entry.sink)
            return await self._failed(entry, attempts, SinkError(f"unexpected error: {exc!r}"))
        delivered = self.now()
        try:
            await self.store.mark_delivered(entry.key, delivered)
        except StoreError as exc:
            # Sent all the same: remember it, so it is not sent again, and record it later.
            self.unmarked[entry.key] = delivered
            log.warning(
                "alert delivered but not recorded, the store refused it; will record it later",
                sink=entry.sink,
                key=entry.key,
                error=str(exc),
            )
        self.metrics.alerts_sent.labels(entry.sink).inc()
        # A live signal's time is when its post was processed. A replay's signals carry event time,
        # days or years back: those are not latencies, and max_age is as old as a live one can be.
        latency = delivered - min(s.at for s in alert.signals or (alert.signal,)).timestamp()
        if 0 <= latency <= self.config.max_age:
            self.metrics.post_to_alert.observe(latency)
        self.delivered += 1
        return True

    async def _failed(self, entry: OutboxEntry, attempts: int, exc: SinkError) -> bool:
        now = self.now()
        self.metrics.alerts_failed.labels(entry.sink).inc()
        age = now - entry.created_at
        if exc.permanent or attempts >= self.config.max_attempts or age >= self.config.max_age:
            await self.store.mark_dead(entry.key, attempts, str(exc), now)
            self.metrics.alerts_dead.labels(entry.sink).inc()
            log.error(
                "alert dead-lettered",
                sink=entry.sink,
                key=entry.key,
                attempts=attempts,
                error=str(exc),
                age_s=round(age, 1),
            )
            return False
        delay = self.retry_delay(attempts, exc.retry_after)
        await self.store.mark_retry(entry.key, attempts, now + delay, str(exc))
        self.metrics.alerts_retried.labels(entry.sink).inc()
        log.warning(
            "alert delivery failed, will retry",
            sink=entry.sink,
            attempts=attempts,
            retry_in_s=round(delay, 2),
            error=str(exc),
        )
        return False
