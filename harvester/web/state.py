"""What the web side reads from the daemon, in one place: health, queue depths, per-rule counters.

`DaemonView` holds a reference to the `App` and reads its parts as they come up (the store and the
router exist only after start-up); every reader copes with a part that is not there yet. It also keeps
the few samples the web side needs over time: posts per source (posts per minute), matched posts per
rule (the dashboard's sparklines) and the event loop's lag.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from harvester import __version__
from harvester.health import SourceState

if TYPE_CHECKING:
    from harvester.app import App

UP_STATES = (SourceState.CONNECTED, SourceState.FINISHED)
PPM_WINDOW_S = 60.0
# Writes waiting this long without one succeeding make /health degraded. A healthy store commits a
# batch in milliseconds; a database locked by another process keeps each write waiting for the whole
# busy timeout (5 s) before it even fails, and /health should say so before that.
STORE_STALL_AFTER_S = 2.0


def secret_url_parts(secret: str) -> set[str]:
    """The pieces of a secret URL that an error may quote without the rest (a webhook's token path
    segment in a proxy's 404 page, its query string): long path segments and the query."""
    parts = urlsplit(secret)
    if not parts.scheme or not parts.netloc:
        return set()
    found = {segment for segment in parts.path.split("/") if len(segment) >= 16}
    if len(parts.query) >= 16:
        found.add(parts.query)
    return found


class DaemonView:
    def __init__(self, app: App) -> None:
        self.app = app
        self.config = app.config.web
        self.started_monotonic = time.monotonic()
        self.started_at = datetime.now(UTC)
        self.loop_lag = 0.0
        # (monotonic time, {source: posts}) samples, enough to cover PPM_WINDOW_S
        self._source_samples: deque[tuple[float, dict[str, int]]] = deque()
        self._reconnects_seen: dict[tuple[str, str], int] = {}
        self._newest_created: dict[str, float] = {}
        self._lag_rowid: int | None = None
        secrets = {s for s in app.loaded.secrets if s}
        if self.config.token is not None:
            secrets.add(self.config.token.get_secret_value())
        # Longest first, so a secret containing another is replaced whole.
        secrets |= {part for secret in secrets for part in secret_url_parts(secret)}
        self._secrets = sorted(secrets, key=len, reverse=True)


    # ------------------------------------------------------------------------------ small helpers
    def redact(self, text: str | None) -> str | None:
        """A source's error text with every configured secret replaced: errors quote URLs and headers."""
        if text is None:
            return None
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    @property
    def uptime(self) -> float:
        return time.monotonic() - self.started_monotonic

    def ready(self) -> bool:
        app = self.app
        return app.started.is_set() and app.store is not None and not app.stop_requested.is_set()

    def queue_depths(self) -> dict[str, int]:
        app = self.app
        depths: dict[str, int] = {}
        if app.inbox is not None:
            depths["inbox"] = app.inbox.qsize()
        if app.processor is not None:
            depths["batches"] = app.processor.jobs.qsize()
        if app.router is not None:
            depths["signals"] = app.router.queue.qsize()
        return depths

    # ---------------------------------------------------------------------------------- sampling
    def sample_sources(self) -> None:
        now = time.monotonic()
        self._source_samples.append((now, {n: h.posts for n, h in self.app.health.sources.items()}))
        while len(self._source_samples) > 2 and now - self._source_samples[1][0] >= PPM_WINDOW_S:
            self._source_samples.popleft()

    def posts_per_minute(self, source: str) -> float | None:
        if len(self._source_samples) < 2:
            return None
        (t0, first), (t1, last) = self._source_samples[0], self._source_samples[-1]
        if t1 - t0 <= 0:
            return None
        return round((last.get(source, 0) - first.get(source, 0)) * 60.0 / (t1 - t0), 1)

    async def monitor_loop_lag(self, interval: float = 0.5) -> None:
        """Measure how late a timer fires: a loop busy with work shows it here before anywhere else."""
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + interval
            await asyncio.sleep(interval)
            self.loop_lag = max(0.0, loop.time() - due)
            self.app.metrics.event_loop_lag.set(self.loop_lag)

    # ------------------------------------------------------------------------------------ health
    def source_report(self, wall: float) -> dict[str, dict[str, Any]]:
        report = {}
        for name, h in self.app.health.sources.items():
            age = None if h.last_post_at is None else round(max(0.0, wall - h.last_post_at.timestamp()), 3)
            report[name] = {
                "type": h.type,
                "state": h.state.value,
                "state_since": h.state_since.isoformat() if h.state_since else None,
                "last_error": self.redact(h.last_error),
                "last_post_age_s": age,
                "posts": h.posts,
                "posts_per_minute": self.posts_per_minute(name),
                "reconnects": h.reconnects,
                "malformed": h.malformed,
                "dropped": h.dropped,
            }
        return report

    async def health(self) -> dict[str, Any]:
        app = self.app
        wall = app.clock.now().timestamp()
        sources = self.source_report(time.time())
        alerts: dict[str, Any] = {}
        store_ok = app.store is not None
        if store_ok:
            try:
                alerts = await app.alert_status()
            except Exception as exc:
                store_ok = False
                alerts = {"error": self.redact(str(exc))}
        problems = self._problems(sources, alerts, store_ok)
        if (
            not app.started.is_set()
            or not store_ok
            or (sources and all(s["state"] == SourceState.FAILED.value for s in sources.values()))
        ):
            status = "failing"
        elif problems:
            status = "degraded"
        else:
            status = "ok"
        capacity = app.config.inbox.capacity
        return {
            "store": self.store_report(),
            "status": status,
            "problems": problems,
            "version": __version__,
            "started_at": self.started_at.isoformat(),
            "uptime_s": round(self.uptime, 3),
            "ready": self.ready(),
            "clock": datetime.fromtimestamp(wall, UTC).isoformat(),
            "sources": sources,
            "queues": {**self.queue_depths(), "inbox_capacity": capacity},
            "alerts": alerts,
            "event_loop_lag_s": round(self.loop_lag, 4),
        }

    def store_report(self) -> dict[str, Any]:
        """The write side's state, from memory: reading the store to learn whether it is stuck would
        wait behind the very writes that are stuck."""
        store, writer = self.app.store, self.app.writer
        return {
            "writes_failing": writer is not None and writer.failing,
            "writes_waiting": 0 if store is None else store.writes_waiting,
            "write_stalled_s": 0.0 if store is None else round(store.write_stalled_for(), 3),
        }

    def _problems(
        self, sources: dict[str, dict[str, Any]], alerts: dict[str, Any], store_ok: bool
    ) -> list[str]:
        problems = []
        if not self.app.started.is_set():
            problems.append("starting" if not self.app.stop_requested.is_set() else "stopping")
        if not store_ok:
            problems.append("store unavailable")
        writer = self.app.writer
        if writer is not None and writer.failing:
            # Disk full, database locked: posts wait in memory (and push back) until writes succeed.
            problems.append("store writes failing; posts held in memory until they succeed")
        stalled = 0.0 if self.app.store is None else self.app.store.write_stalled_for()
        if stalled >= STORE_STALL_AFTER_S:
            problems.append(f"store writes stalled for {stalled:.0f} s (database locked or busy)")
        for name, s in sources.items():
            if s["state"] in (SourceState.FAILED.value, SourceState.BACKOFF.value):
                problems.append(f"source {name} is {s['state']}")
            elif (
                s["state"] == SourceState.CONNECTED.value
                and s["last_post_age_s"] is not None
                and s["last_post_age_s"] > self.config.stale_after
            ):
                problems.append(f"source {name} sent nothing for {s['last_post_age_s']:.0f} s")
        if alerts.get("dead_letters"):
            problems.append(f"{alerts['dead_letters']} dead-lettered alerts")
        inbox = self.app.inbox
        if inbox is not None and inbox.qsize() >= 0.9 * self.app.config.inbox.capacity:
            problems.append("inbox over 90% full")
        return problems

    # ----------------------------------------------------------------------------------- metrics
    async def refresh_metrics(self) -> None:
        """Set the gauges that mirror state (source up, lag, queue depths) just before a scrape."""
        m = self.app.metrics
        for name, h in self.app.health.sources.items():
            m.source_up.labels(name).set(1.0 if h.state in UP_STATES else 0.0)
            for reason, count in list(h.reconnect_reasons.items()):
                seen = self._reconnects_seen.get((name, reason), 0)
                if count > seen:
                    m.source_reconnects.labels(name, reason).inc(count - seen)
                    self._reconnects_seen[(name, reason)] = count
        for queue, depth in self.queue_depths().items():
            m.queue_depth.labels(queue).set(depth)
        store = self.app.store
        if store is not None:
            now = time.time()
            try:
                newest, self._lag_rowid = await store.newest_created(self._lag_rowid)
                counts = await store.outbox_counts()
            except Exception:
                return
            for source, created in newest.items():
                self._newest_created[source] = max(created, self._newest_created.get(source, created))
            for source, created in self._newest_created.items():
                m.source_lag.labels(source).set(max(0.0, now - created))
            for status, count in counts.items():
                m.outbox_backlog.labels(status).set(count)
