"""The live feed: every `push_interval`, new signals and alerts from the store and per-rule counters.

Reading the store rather than hooking the router keeps the pipeline unaware of the web side: the
router and dispatcher already write every signal and alert there, and a rowid cursor makes "what is
new since the last look" one indexed query. Counters come from the matched-posts metric (volume, right
even when posts are not stored) and the stored posts' sentiment.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog

from harvester.alerts.notification import decode_group
from harvester.models import Signal
from harvester.store.records import OutboxEntry

if TYPE_CHECKING:
    from harvester.app import App
    from harvester.web.state import DaemonView
    from harvester.web.ws import Hub

log = structlog.get_logger(__name__)

RECENT = 20  # signals and alerts a newly connected dashboard is sent


def iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


Redact = Callable[[str | None], str | None]


def alert_dict(entry: OutboxEntry, redact: Redact = lambda text: text) -> dict[str, Any]:
    """An outbox row for the API and the feed: its lead signal's rule, kind, severity and summary,
    how many signals it groups, and the group labels."""
    try:
        signals, labels = decode_group(entry.payload)
    except (ValueError, KeyError, TypeError):
        signals, labels = (), {}
    lead = signals[0] if signals else None
    return {
        "key": entry.key,
        "sink": entry.sink,
        "signal_id": entry.signal_id,
        "status": entry.status,
        "attempts": entry.attempts,
        "created_at": iso(entry.created_at),
        "delivered_at": iso(entry.delivered_at),
        "last_error": redact(entry.last_error),  # a sink's error may quote its URL
        "group": entry.group_key,
        "labels": labels,
        "signals": len(signals),
        "rule": lead.rule if lead else None,
        "kind": lead.kind if lead else None,
        "severity": lead.severity.value if lead else None,
        "summary": lead.summary if lead else None,
    }


class Feed:
    def __init__(self, app: App, view: DaemonView, hub: Hub) -> None:
        self.app = app
        self.view = view
        self.hub = hub
        self.interval = app.config.web.push_interval
        self.history: deque[dict[str, Any]] = deque(maxlen=app.config.web.history)
        self.recent_signals: deque[dict[str, Any]] = deque(maxlen=RECENT)
        self.recent_alerts: deque[dict[str, Any]] = deque(maxlen=RECENT)
        self._signal_rowid: int | None = None
        self._alert_rowid: int | None = None
        self._matched: dict[str, float] = {}
        self._last_tick = time.time()

    async def with_examples(self, signal: Signal) -> dict[str, Any]:
        data = signal.to_json()
        uids = signal.evidence.get("example_uids") or []
        posts: dict[str, dict[str, Any]] = {}
        if uids and self.app.store is not None:
            posts = await self.app.store.posts_by_uid([str(u) for u in uids][:10])
        data["examples"] = [
            {
                k: posts[u].get(k)
                for k in ("uid", "source", "author", "text", "url", "created_at", "sentiment")
            }
            for u in uids
            if u in posts
        ]
        return data

    def matched_totals(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for family in self.app.metrics.posts_matched.collect():
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    totals[sample.labels["rule"]] = sample.value
        return totals

    def rules(self) -> list[str]:
        return [rule.name for rule in self.app.config.rules]

    async def run(self) -> None:
        await self.app.started.wait()
        while True:
            try:
                await self._start()
                break
            except Exception as exc:  # a locked store at start must not end the feed for good
                log.warning("web feed could not read the store; trying again", error=str(exc))
                await asyncio.sleep(self.interval)
        while True:
            await asyncio.sleep(self.interval)
            store = self.app.store
            if store is not None and store.closed:
                continue  # the daemon is stopping: the web server outlives the store by a moment
            try:
                await self.tick()
            except Exception as exc:  # the feed must outlive a locked or closing store
                if store is None or not store.closed:
                    log.warning("web feed could not read the store", error=str(exc))

    async def _start(self) -> None:
        store = self.app.store
        assert store is not None
        start = await store.last_rowids()
        # Fill the dashboard's first view with what is already stored, then follow from there.
        for sig in reversed(await store.search_signals(limit=RECENT)):
            self.recent_signals.append(await self.with_examples(sig))
        for entry in reversed(await store.search_alerts(limit=RECENT)):
            self.recent_alerts.append(alert_dict(entry, self.view.redact))
        self._signal_rowid, self._alert_rowid = start["signals"], start["outbox"]
        self._matched = self.matched_totals()

    async def tick(self) -> None:
        store = self.app.store
        assert store is not None and self._signal_rowid is not None and self._alert_rowid is not None
        self.view.sample_sources()
        for rowid, sig in await store.signals_after(self._signal_rowid):
            self._signal_rowid = rowid
            data = await self.with_examples(sig)
            self.recent_signals.append(data)
            self.hub.publish({"type": "signal", "signal": data})
        for rowid, entry in await store.alerts_after(self._alert_rowid):
            self._alert_rowid = rowid
            data = alert_dict(entry, self.view.redact)
            self.recent_alerts.append(data)
            self.hub.publish({"type": "alert", "alert": data})
        self.hub.publish(await self.counters())

    async def counters(self) -> dict[str, Any]:
        now = time.time()
        totals = self.matched_totals()
        store = self.app.store
        sentiment: dict[str, tuple[int, float | None]] = {}
        if store is not None:
            sentiment = await store.rule_sentiment(self._last_tick)
        rules = {
            rule: {
                "posts": int(totals.get(rule, 0.0) - self._matched.get(rule, 0.0)),
                "sentiment": None if sentiment.get(rule) is None else _round(sentiment[rule][1]),
            }
            for rule in self.rules()
        }
        self._matched, self._last_tick = totals, now
        message = {
            "type": "counters",
            "at": iso(now),
            "interval_s": self.interval,
            "rules": rules,
            "sources": {
                name: {"state": s["state"], "posts_per_minute": s["posts_per_minute"], "posts": s["posts"]}
                for name, s in self.view.source_report(now).items()
            },
        }
        self.history.append(message)
        return message

    async def hello(self) -> dict[str, Any]:
        return {
            "type": "hello",
            "rules": self.rules(),
            "interval_s": self.interval,
            "history": list(self.history),
            "signals": list(self.recent_signals),
            "alerts": list(self.recent_alerts),
            "health": await self.view.health(),
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
