"""Signals -> alerts: routes, groups, inhibition, silences and repeat suppression, ahead of the outbox.

Each signal is stored and, in the same transaction, staged in the routing groups it belongs to (a
group is one route, one sink and the values of the route's `group_by` labels). A group waits
`group_wait` after its first signal, so a burst becomes one message; after a message it waits
`group_interval` before the next. A rule and kind that alerted through a group is not alerted again
there for `repeat_interval` (the route's, else `alerts.cooldown`). When a group flushes, its signals
become ONE outbox row, written before any attempt to send it; its idempotency key is that of the
group's first signal for that sink, so a restart that re-stages the same signals writes nothing new.

Staged signals survive a crash (the router restores them at start-up); silences created at run time
are kept in the store. Inhibitors and repeat memory are kept in memory only: after a restart a muted
alert may be sent once more, never lost.

This is also the Python API that the web layer calls for silences, dead letters and status.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog

from harvester.alerts.labels import matches, signal_labels
from harvester.alerts.notification import encode_group
from harvester.alerts.silences import Silence, config_silences, new_silence_id
from harvester.clock import Clock, Sleep, real_sleep
from harvester.config.alerts import InhibitConfig, RouteConfig
from harvester.config.schema import AlertsConfig
from harvester.errors import StoreError
from harvester.metrics import Metrics
from harvester.models import Alert, Severity, Signal
from harvester.queues import BoundedQueue
from harvester.store import OutboxEntry, Store

log = structlog.get_logger(__name__)

STORE_RETRY_S = 1.0

# An idle group (nothing staged, last message long ago) is forgotten after this many group intervals.
IDLE_GROUP_INTERVALS = 4


@dataclass
class Group:
    key: str
    sink: str
    labels: dict[str, str]
    wait: float
    interval: float
    repeat: float
    members: list[tuple[Signal, float]] = field(default_factory=list)  # (signal, staged_at)
    flush_at: float | None = None
    last_flush: float | None = None

    def schedule(self, now: float) -> None:
        if self.flush_at is None:
            self.flush_at = (
                now + self.wait if self.last_flush is None else max(now, self.last_flush + self.interval)
            )


@dataclass(frozen=True, slots=True)
class Target:
    key: str
    sink: str
    labels: dict[str, str]
    wait: float
    interval: float
    repeat: float


@dataclass(frozen=True, slots=True)
class Inhibitor:
    rule: InhibitConfig
    signal_id: str
    labels: dict[str, str]
    severity: Severity
    until: float

    def mutes(self, signal: Signal, labels: Mapping[str, str]) -> bool:
        if signal.id == self.signal_id or not matches(self.rule.target, labels):
            return False
        if any(labels.get(name) != self.labels.get(name) for name in self.rule.equal):
            return False
        return not self.rule.only_lower or signal.severity.rank < self.severity.rank


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
        sleep: Sleep = real_sleep,
    ) -> None:
        self.store = store
        self.sinks = list(sinks)
        self.config = config
        self.clock = clock
        self.metrics = metrics
        self.queue = queue
        self.on_alerts = on_alerts
        self.on_latency = on_latency
        self.sleep = sleep
        self.signals = 0
        self.suppressed = 0
        self.silenced = 0
        self.inhibited = 0
        self.notifications = 0
        self.groups: dict[str, Group] = {}
        self.inhibitors: list[Inhibitor] = []
        self.silences: list[Silence] = config_silences(config.silences)
        self._min_severity = dict(self.sinks)
        self._routes = self._effective_routes()
        self._notified: dict[tuple[str, str, str], float] = {}  # (group key, rule, kind) -> when
        self._changed = asyncio.Event()

    def _effective_routes(self) -> list[tuple[str, RouteConfig]]:
        routes = self.config.routes or [
            RouteConfig(name="default", sinks=[name for name, _ in self.sinks] or ["-"])
        ]
        return [(route.name or f"route{index}", route) for index, route in enumerate(routes)]

    def now(self) -> float:
        return self.clock.now().timestamp()

    # ------------------------------------------------------------------------------------- running

    async def restore(self) -> int:
        """Reload run-time silences and the signals staged before a stop or crash; returns how many."""
        now = self.now()
        self.silences = config_silences(self.config.silences) + [
            Silence.from_record(r) for r in await self.store.load_silences(now)
        ]
        staged = await self.store.staged_signals()
        for item in staged:
            labels = signal_labels(item.signal, self.config.labels)
            target = next((t for t in self._targets(item.signal, labels) if t.key == item.group_key), None)
            if target is None:  # the route changed since: deliver it with the defaults
                target = Target(
                    item.group_key,
                    item.sink,
                    {},
                    self.config.group_wait,
                    self.config.group_interval,
                    self.config.cooldown,
                )
            group = self._group(target)
            group.members.append((item.signal, item.staged_at))
            due = item.staged_at + group.wait
            group.flush_at = due if group.flush_at is None else min(group.flush_at, due)
        self._changed.set()
        return len(staged)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._consume(), name="router:consume")
            tasks.create_task(self._flusher(), name="router:flush")

    async def _consume(self) -> None:
        while True:
            signal, enqueued = await self.queue.get()
            try:
                latency = time.perf_counter() - enqueued
                self.metrics.post_to_signal.observe(latency)
                if self.on_latency is not None:
                    self.on_latency(latency)
                await self._route_until_stored(signal)
            finally:
                self.queue.task_done()

    async def _route_until_stored(self, signal: Signal) -> None:
        # A locked or full database must not lose the signal: retry, and let the bounded signal queue
        # push back on the engine meanwhile.
        while True:
            try:
                await self.route(signal)
                return
            except StoreError as exc:
                self.metrics.store_errors.inc()
                log.error("store error while routing a signal, retrying", error=str(exc), rule=signal.rule)
                await self.sleep(STORE_RETRY_S)

    async def _flusher(self) -> None:
        while True:
            self._changed.clear()
            await self.flush_due()
            waits: list[asyncio.Future[object]] = [asyncio.ensure_future(self._changed.wait())]
            next_at = self.next_flush_at()
            if next_at is not None:
                # At least 1 ms, so a clock of microsecond resolution cannot stop a hair short and spin.
                waits.append(asyncio.ensure_future(self.sleep(max(0.001, next_at - self.now()))))
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waits:
                    waiter.cancel()

    # ------------------------------------------------------------------------------------- routing

    def _targets(self, signal: Signal, labels: Mapping[str, str]) -> list[Target]:
        targets: list[Target] = []
        for route_name, route in self._routes:
            if signal.severity.rank < Severity(route.min_severity).rank or not matches(route.match, labels):
                continue
            group_by = route.group_by if route.group_by is not None else self.config.group_by
            group_labels = {name: labels.get(name, "") for name in group_by}
            for sink in route.sinks:
                minimum = self._min_severity.get(sink)
                if minimum is None or signal.severity.rank < minimum.rank:
                    continue
                key = f"{route_name}/{sink}/" + json.dumps(
                    group_labels, sort_keys=True, separators=(",", ":")
                )
                targets.append(
                    Target(
                        key,
                        sink,
                        group_labels,
                        self.config.group_wait if route.group_wait is None else route.group_wait,
                        self.config.group_interval if route.group_interval is None else route.group_interval,
                        self.config.cooldown if route.repeat_interval is None else route.repeat_interval,
                    )
                )
            if not route.continue_:
                break
        return targets

    def _group(self, target: Target) -> Group:
        group = self.groups.get(target.key)
        if group is None:
            group = self.groups[target.key] = Group(
                target.key, target.sink, dict(target.labels), target.wait, target.interval, target.repeat
            )
        return group

    def _muted(self, signal: Signal, labels: Mapping[str, str], now: float) -> str | None:
        if any(s.mutes(labels, now) for s in self.silences):
            return "silenced"
        if any(i.until > now and i.mutes(signal, labels) for i in self.inhibitors):
            return "inhibited"
        return None

    async def route(self, signal: Signal) -> bool:
        """Store the signal and stage it for its sinks; True if it will be part of an alert."""
        now = self.now()
        labels = signal_labels(signal, self.config.labels)
        self.inhibitors = [i for i in self.inhibitors if i.until > now]
        muted = self._muted(signal, labels, now)
        targets: list[Target] = []
        repeats = 0
        if muted is None:
            for target in self._targets(signal, labels):
                last = self._notified.get((target.key, signal.rule, signal.kind))
                if last is not None and now < last + target.repeat:
                    repeats += 1
                else:
                    targets.append(target)
        is_new = await self.store.save_signal_and_stage(signal, [(t.key, t.sink) for t in targets], now)
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
            muted=muted,
        )
        if muted == "silenced":
            self.silenced += 1
            self.metrics.alerts_silenced.labels(signal.rule).inc()
        elif muted == "inhibited":
            self.inhibited += 1
            self.metrics.alerts_inhibited.labels(signal.rule).inc()
        elif repeats and not targets:
            self.suppressed += 1
            self.metrics.alerts_suppressed.labels(signal.rule).inc()
        await self._start_inhibiting(signal, labels, now)
        for target in targets:
            group = self._group(target)
            group.members.append((signal, now))
            group.schedule(now)
        if targets:
            await self.flush_due()
            self._changed.set()
        return bool(targets)

    async def _start_inhibiting(self, signal: Signal, labels: dict[str, str], now: float) -> None:
        """If `signal` is an inhibitor, remember it and drop the staged signals it mutes."""
        for rule in self.config.inhibit:
            if not matches(rule.source, labels):
                continue
            inhibitor = Inhibitor(rule, signal.id, labels, signal.severity, now + rule.for_)
            self.inhibitors.append(inhibitor)
            for group in list(self.groups.values()):  # a copy: the flusher may drop idle groups meanwhile
                dropped = [
                    s for s, _ in group.members if inhibitor.mutes(s, signal_labels(s, self.config.labels))
                ]
                if not dropped:
                    continue
                ids = {s.id for s in dropped}
                group.members = [(s, at) for s, at in group.members if s.id not in ids]
                if not group.members:
                    group.flush_at = None
                with contextlib.suppress(StoreError):  # left staged, they only cost a message after a restart
                    await self.store.unstage(group.key, sorted(ids))
                self.inhibited += len(dropped)
                for s in dropped:
                    self.metrics.alerts_inhibited.labels(s.rule).inc()

    # ------------------------------------------------------------------------------------ flushing

    def next_flush_at(self) -> float | None:
        due = [g.flush_at for g in self.groups.values() if g.flush_at is not None and g.members]
        return min(due) if due else None

    async def flush_due(self) -> int:
        """Write every group that is due as one outbox row; returns the rows written."""
        now = self.now()
        written = 0
        for group in sorted(self.groups.values(), key=lambda g: (g.flush_at or 0.0, g.key)):
            if group.members and group.flush_at is not None and group.flush_at <= now:
                written += await self._flush(group, now)
        self._forget_idle(now)
        return written

    async def flush_all(self) -> int:
        """Flush every group now, whatever its timers say: the daemon is stopping, and an alert held
        back by group_wait must not wait for a restart that may never come."""
        now = self.now()
        written = 0
        for group in sorted(self.groups.values(), key=lambda g: (g.flush_at or 0.0, g.key)):
            if group.members:
                written += await self._flush(group, now)
        return written

    async def _flush(self, group: Group, now: float) -> int:
        members = group.members
        group.members, group.flush_at = [], None
        kept = [
            (s, at) for s, at in members if self._muted(s, signal_labels(s, self.config.labels), now) is None
        ]
        dropped = [s.id for s, _ in members if all(s.id != k.id for k, _ in kept)]
        if not kept:
            await self.store.unstage(group.key, dropped)
            return 0
        signals = [s for s, _ in kept]
        first, created_at = kept[0]
        key = Alert.make_key(first.id, group.sink)
        try:
            inserted = await self.store.flush_group(
                key=key,
                sink=group.sink,
                group_key=group.key,
                lead_signal_id=first.id,
                payload=encode_group(signals, group.labels),
                signal_ids=[s.id for s, _ in members],
                created_at=created_at,
                now=now,
            )
        except StoreError as exc:
            # Nothing was committed and the signals are still staged: put them back and try again soon.
            self.metrics.store_errors.inc()
            log.error("store error while writing an alert group, retrying", error=str(exc), group=group.key)
            group.members = members + group.members
            group.flush_at = now + STORE_RETRY_S
            return 0
        group.last_flush = now
        for s in signals:
            self._notified[(group.key, s.rule, s.kind)] = now
        if not inserted:
            return 0
        self.notifications += 1
        self.metrics.alerts_grouped.labels(group.sink).observe(len(signals))
        self.on_alerts()
        return 1

    def _forget_idle(self, now: float) -> None:
        for key, group in list(self.groups.items()):
            idle_for = max(group.interval * IDLE_GROUP_INTERVALS, group.repeat)
            if not group.members and (group.last_flush is None or now - group.last_flush > idle_for):
                del self.groups[key]
        for fingerprint, at in list(self._notified.items()):
            owner = self.groups.get(fingerprint[0])
            if owner is None or now - at > owner.repeat:
                del self._notified[fingerprint]

    # --------------------------------------------------------------------- API for the web and CLI

    async def create_silence(
        self,
        matchers: Mapping[str, str],
        *,
        ends_at: datetime | None = None,
        duration: float | None = None,
        starts_at: datetime | None = None,
        comment: str = "",
        created_by: str = "",
    ) -> Silence:
        """Silence signals matching `matchers` (label -> glob) from `starts_at` (default now) until
        `ends_at`, or for `duration` seconds, or until expired. Persisted: it survives a restart."""
        if not matchers:
            raise ValueError("a silence needs at least one matcher")
        now = self.now()
        start = starts_at.timestamp() if starts_at else now
        end = ends_at.timestamp() if ends_at else (start + duration if duration is not None else None)
        if end is not None and end <= start:
            raise ValueError("a silence must end after it starts")
        silence = Silence(new_silence_id(), dict(matchers), start, end, comment, created_by)
        await self.store.save_silence(silence.record(now))
        self.silences.append(silence)
        log.info("silence created", id=silence.id, matchers=silence.matchers, ends_at=end)
        return silence

    async def expire_silence(self, silence_id: str) -> bool:
        """End a run-time silence now; False if unknown, already over, or declared in the config."""
        now = self.now()
        for index, silence in enumerate(self.silences):
            if (
                silence.id == silence_id
                and silence.origin == "api"
                and (silence.ends_at is None or now < silence.ends_at)
            ):
                self.silences[index] = Silence(
                    silence.id, silence.matchers, silence.starts_at, now, silence.comment, silence.created_by
                )
                await self.store.expire_silence(silence_id, now)
                log.info("silence expired", id=silence_id)
                return True
        return False

    def list_silences(self, include_expired: bool = False) -> list[dict[str, Any]]:
        now = self.now()
        return [
            s.as_dict(now) for s in self.silences if include_expired or s.ends_at is None or now < s.ends_at
        ]

    async def dead_letters(self, sink: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        return [dead_letter_dict(e) for e in await self.store.dead_letters(sink, limit)]

    async def resend_dead(self, *, key: str | None = None, sink: str | None = None) -> int:
        count = await self.store.requeue_dead(self.now(), sink=sink, key=key)
        if count:
            self.on_alerts()
        return count

    async def status(self) -> dict[str, Any]:
        """Outbox and routing state as a JSON-ready dict, for /health."""
        now = self.now()
        outbox = await self.store.outbox_status()
        per_sink = outbox["per_sink"]
        totals = {
            status: sum(c[status] for c in per_sink.values()) for status in ("pending", "delivered", "dead")
        }
        oldest = outbox["oldest_pending_created_at"]
        return {
            "outbox": totals,
            "per_sink": per_sink,
            "backlog": totals["pending"] + outbox["staged"],
            "staged": outbox["staged"],
            "oldest_pending_age_s": None if oldest is None else round(max(0.0, now - oldest), 3),
            "dead_letters": totals["dead"],
            "groups_waiting": sum(1 for g in self.groups.values() if g.members),
            "silences_active": sum(1 for s in self.silences if s.active(now)),
            "inhibitors_active": sum(1 for i in self.inhibitors if i.until > now),
            "signals": self.signals,
            "notifications": self.notifications,
            "suppressed": self.suppressed,
            "silenced": self.silenced,
            "inhibited": self.inhibited,
        }


def dead_letter_dict(entry: OutboxEntry) -> dict[str, Any]:
    def iso(ts: float | None) -> str | None:
        return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()

    return {
        "key": entry.key,
        "sink": entry.sink,
        "signal_id": entry.signal_id,
        "attempts": entry.attempts,
        "created_at": iso(entry.created_at),
        "last_error": entry.last_error,
        "group": entry.group_key,
    }
