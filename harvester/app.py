"""Wires the stages together, owns the task group, and shuts down in reverse data-flow order.

sources -> inbox -> processor (dedup, engine) -> writer (store) ; processor -> signal queue -> router
-> outbox -> dispatcher -> sinks. On stop: sources stop -> inbox drains -> processor stops -> writer
commits (posts with their cursors) -> engine state saved -> signals routed -> one last delivery pass
-> sinks and store closed; all within `shutdown_timeout`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from harvester.alerts.dispatcher import Dispatcher
from harvester.alerts.router import Router
from harvester.alerts.sinks.base import Sink
from harvester.clock import Clock, Sleep, SystemClock, real_sleep
from harvester.config.loader import LoadedConfig
from harvester.config.schema import Config
from harvester.dedup import SeenSet
from harvester.engine import Engine
from harvester.engine.sentiment_pool import SentimentPool, default_workers
from harvester.errors import StoreError
from harvester.health import HealthRegistry, SourceState
from harvester.malloc import pin_mmap_threshold
from harvester.metrics import Metrics
from harvester.models import Severity, Signal
from harvester.pipeline import LatencyHook, Processor, drain, tuned_gc
from harvester.plugins import SINKS, SOURCES
from harvester.queues import BoundedQueue, FullPolicy
from harvester.reload import schedule_reload
from harvester.sd_notify import Notifier
from harvester.sources.base import Envelope, Source, SourceContext
from harvester.store import Store
from harvester.supervisor import Supervisor
from harvester.web.server import WebServer, start_web
from harvester.writer import BatchWriter

log = structlog.get_logger(__name__)

ENGINE_STATE = "engine"
SIGNAL_QUEUE_CAPACITY = 1000


@dataclass
class Hooks:
    """Optional observers used by the benchmark and tests; the daemon runs without them."""

    on_processed: LatencyHook | None = None
    on_signal_latency: Callable[[float], None] | None = None
    on_started: Callable[[App], None] | None = None


class App:
    def __init__(
        self,
        loaded: LoadedConfig,
        *,
        clock: Clock | None = None,
        sleep: Sleep | None = None,
        rng: random.Random | None = None,
        hooks: Hooks | None = None,
        exit_when_sources_finish: bool = False,
        notifier: Notifier | None = None,
    ) -> None:
        self.loaded = loaded
        self.config: Config = loaded.config
        self.clock = clock or SystemClock()
        self.sleep = sleep or real_sleep
        self.rng = rng or random.Random()
        self.hooks = hooks or Hooks()
        self.exit_when_sources_finish = exit_when_sources_finish
        self.metrics = Metrics()
        self.health = HealthRegistry()
        self.started = asyncio.Event()
        self.stop_requested = asyncio.Event()
        self.store: Store | None = None
        self.processor: Processor | None = None
        self.writer: BatchWriter | None = None
        self.router: Router | None = None
        self.dispatcher: Dispatcher | None = None
        self.engine: Engine | None = None
        self.inbox: BoundedQueue[Envelope] | None = None
        self.sentiment = SentimentPool(0)
        self.web: WebServer | None = None
        # systemd Type=notify: READY, WATCHDOG, RELOADING, STOPPING (a no-op outside systemd).
        self.notifier = notifier or Notifier.from_env()
        self.supervisors: list[Supervisor] = []
        self.sinks: dict[str, Sink] = {}  # the running sinks; a SIGHUP reload replaces them

    def request_reload(self) -> None:
        """SIGHUP: re-read the config and apply rules, routes and sinks (see harvester.reload)."""
        schedule_reload(self)

    def request_stop(self) -> None:
        self.stop_requested.set()

    # -- building ---------------------------------------------------------------------------------
    def _build_sinks(self) -> dict[str, Sink]:
        sinks: dict[str, Sink] = {}
        for sink_config in self.config.alerts.sinks:
            sinks[sink_config.instance_name] = SINKS.get(sink_config.type).factory(sink_config)
        return sinks

    def _count_drop(self, envelope: Envelope) -> None:
        self.metrics.posts_dropped.labels(envelope.source, "inbox").inc()
        health = self.health.sources.get(envelope.source)
        if health is not None:
            health.dropped += 1

    async def run(self) -> None:
        # The web server comes up first and goes down last: /healthz answers through start and stop.
        self.web = await start_web(self)
        try:
            await self._run_daemon()
        finally:
            if self.web is not None:
                await self.web.stop()

    async def _run_daemon(self) -> None:
        cfg = self.config
        # Before the first big table: glibc would otherwise keep freed big blocks in its heap.
        pin_mmap_threshold()
        store = self.store = await Store.open(cfg.db_path)
        workers = cfg.engine.sentiment_workers
        self.sentiment = SentimentPool(
            default_workers() if workers == "auto" else workers, cfg.engine.lexicon_file
        )
        sinks: dict[str, Sink] = {}
        try:
            self.sentiment.start()
            sinks = self.sinks = self._build_sinks()
            for sink in sinks.values():
                await sink.start()
            with tuned_gc():
                await self._run_stages(store, sinks)
        finally:
            for sink in (self.sinks or sinks).values():
                with contextlib.suppress(Exception):
                    await sink.close()
            self.sentiment.close()
            await store.close()
            self.notifier.close()

    async def _run_stages(self, store: Store, sinks: dict[str, Sink]) -> None:
        cfg = self.config
        wall = self.clock.now().timestamp()
        cursors = await store.load_cursors()
        seen = SeenSet(cfg.dedup.capacity, cfg.dedup.ttl)
        seen.load(await store.load_seen(wall - cfg.dedup.ttl, cfg.dedup.capacity))
        engine = self.engine = Engine(cfg.rules, cfg.engine)
        snapshot = await store.load_state(ENGINE_STATE)
        restored = engine.restore(snapshot) if snapshot else 0

        inbox = self.inbox = BoundedQueue[Envelope](cfg.inbox.capacity, cfg.inbox.when_full, self._count_drop)
        signals = BoundedQueue[tuple[Signal, float]](SIGNAL_QUEUE_CAPACITY, FullPolicy.BLOCK)
        writer = self.writer = BatchWriter(
            store,
            self.metrics,
            max_posts=cfg.store.batch_max_posts,
            max_delay=cfg.store.batch_max_delay,
            sleep=self.sleep,
            rng=random.Random(self.rng.random()),
        )
        supervisors = self.supervisors = self._build_supervisors(inbox, cursors)
        event_time = self.uses_event_time([s.source for s in supervisors])
        processor = self.processor = Processor(
            inbox=inbox,
            seen=seen,
            engine=engine,
            sentiment=self.sentiment,
            writer=writer,
            signals=signals,
            metrics=self.metrics,
            clock=self.clock,
            event_time=event_time,
            store_posts=cfg.store.posts,
            on_processed=self.hooks.on_processed,
        )
        dispatcher = self.dispatcher = Dispatcher(
            store=store,
            sinks=sinks,
            config=cfg.alerts,
            clock=self.clock,
            sleep=self.sleep,
            rng=random.Random(self.rng.random()),
            metrics=self.metrics,
        )
        router = self.router = Router(
            store=store,
            sinks=[(s.instance_name, Severity(s.min_severity)) for s in cfg.alerts.sinks],
            config=cfg.alerts,
            clock=self.clock,
            metrics=self.metrics,
            queue=signals,
            on_alerts=dispatcher.wake,
            on_latency=self.hooks.on_signal_latency,
            sleep=self.sleep,
        )
        regrouped = await router.restore()
        log.info(
            "harvester starting",
            config=str(self.loaded.path) if self.loaded.path else None,
            db=str(cfg.db_path),
            sources=[s.ctx.name for s in supervisors],
            rules=len(cfg.rules),
            sinks=list(sinks),
            alerts_regrouped=regrouped,
            resumed_cursors=len(cursors),
            dedup_loaded=len(seen),
            engine_rules_restored=restored,
            clock="event" if event_time else "wall",
            sentiment_workers=self.sentiment.workers,
        )

        async with asyncio.TaskGroup() as group:
            stage_tasks = {
                "processor": group.create_task(processor.run(), name="processor"),
                "detectors": group.create_task(processor.finish(), name="detectors"),
                "writer": group.create_task(writer.run(), name="writer"),
                "router": group.create_task(router.run(), name="router"),
                "dispatcher": group.create_task(dispatcher.run(), name="dispatcher"),
                "housekeeping": group.create_task(self._housekeeping(), name="housekeeping"),
            }
            source_tasks = [group.create_task(s.run(), name=f"source:{s.ctx.name}") for s in supervisors]
            watchdog = group.create_task(self.notifier.run_watchdog(), name="watchdog")
            self.started.set()
            self.notifier.ready(f"running: {len(supervisors)} sources, {len(cfg.rules)} rules")
            if self.hooks.on_started is not None:
                self.hooks.on_started(self)
            await self._wait_for_stop(source_tasks)
            await self._drain(source_tasks, stage_tasks, inbox, signals)
            watchdog.cancel()  # pinged through the drain: TimeoutStopSec, not the watchdog, bounds it

    def uses_event_time(self, sources: list[Source]) -> bool:
        clock = self.config.engine.clock
        if clock == "auto":
            return bool(sources) and all(source.event_time for source in sources)
        return clock == "event"

    def _build_supervisors(self, inbox: BoundedQueue[Envelope], cursors: dict[str, str]) -> list[Supervisor]:
        supervisors = []
        for index, source_config in enumerate(self.config.sources):
            source = SOURCES.get(source_config.type).factory(source_config)
            name = source_config.instance_name
            ctx = SourceContext(
                name=name,
                put=inbox.put,
                health=self.health.source(name, source_config.type),
                clock=self.clock,
                sleep=self.sleep,
                rng=random.Random(self.rng.random() + index),
                cursor=cursors.get(name),
                on_malformed=self._count_malformed,
                rules=self.config.rules,
            )
            supervisors.append(
                Supervisor(source, ctx, on_restart=functools.partial(self._count_restart, name))
            )
        return supervisors

    def _count_malformed(self, source: str) -> None:
        self.metrics.posts_malformed.labels(source).inc()

    def _count_restart(self, source: str, reason: str) -> None:
        self.metrics.source_restarts.labels(source, reason).inc()

    async def _wait_for_stop(self, source_tasks: list[asyncio.Task[None]]) -> None:
        if not (self.exit_when_sources_finish and source_tasks):
            await self.stop_requested.wait()
            return
        stop = asyncio.ensure_future(self.stop_requested.wait())
        running = set(source_tasks)
        try:
            while running and not stop.done():
                await asyncio.wait([stop, *running], return_when=asyncio.FIRST_COMPLETED)
                running = {task for task in running if not task.done()}
        finally:
            stop.cancel()

    async def _drain(
        self,
        source_tasks: list[asyncio.Task[None]],
        stages: dict[str, asyncio.Task[None]],
        inbox: BoundedQueue[Envelope],
        signals: BoundedQueue[tuple[Signal, float]],
    ) -> None:
        assert self.writer is not None and self.engine is not None and self.store is not None
        assert self.processor is not None
        assert self.dispatcher is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.shutdown_timeout

        def remaining() -> float:
            return max(0.0, deadline - loop.time())

        log.info("harvester stopping", deadline_s=self.config.shutdown_timeout)
        self.notifier.stopping(f"draining (deadline {self.config.shutdown_timeout:g} s)")
        await _cancel(source_tasks, remaining())
        for health in self.health.sources.values():
            if health.state not in (SourceState.FAILED, SourceState.FINISHED):
                health.set_state(SourceState.STOPPED, self.clock.now())
        inbox_drained = await drain(inbox, remaining()) and await drain(self.processor.jobs, remaining())
        await _cancel([stages["processor"], stages["detectors"]], remaining())
        try:
            await asyncio.wait_for(self.writer.wait_idle(), remaining())
        except TimeoutError:
            log.error("store writes did not finish before the deadline; uncommitted posts will be re-read")
        await _cancel([stages["writer"]], remaining())
        await self.save_engine_state()
        await drain(signals, remaining())
        await _cancel([stages["router"]], remaining())
        assert self.router is not None
        try:
            # Groups still waiting out group_wait go to the outbox now: durable, and sent below if
            # time allows, instead of waiting for a restart that may never come.
            await asyncio.wait_for(self.router.flush_all(), remaining())
        except TimeoutError:
            log.warning("alert groups not flushed before the deadline; they stay staged for the next start")
        await _cancel([stages["dispatcher"], stages["housekeeping"]], remaining())
        if remaining() > 0:
            try:
                await asyncio.wait_for(self.dispatcher.deliver_due(), remaining())
            except TimeoutError:
                log.warning(
                    "alert delivery cut short by the shutdown deadline; undelivered alerts stay in the outbox"
                )
        if self.dispatcher.unmarked:
            log.error(
                "alerts delivered but not recorded by the store; they will be sent again at the next start",
                alerts=len(self.dispatcher.unmarked),
            )
        log.info("harvester stopped", inbox_drained=inbox_drained, posts=self.processor.processed)

    async def alert_status(self) -> dict[str, object]:
        """The outbox, dead letters and routing state as a dict, for /health (None before start)."""
        if self.router is None:
            return {}
        return await self.router.status()

    async def save_engine_state(self) -> None:
        assert self.engine is not None and self.store is not None
        try:
            await self.store.save_state(ENGINE_STATE, self.engine.snapshot(), self.clock.now().timestamp())
        except StoreError as exc:
            # Locked or full: the previous snapshot stays, the next interval (or shutdown) tries again.
            log.warning("engine state not saved, the store refused it", error=str(exc))

    # -- periodic work ------------------------------------------------------------------------------
    async def _housekeeping(self) -> None:
        cfg = self.config
        last_stats = last_snapshot = last_prune = time.monotonic()
        last_received = 0.0
        tick = min(1.0, cfg.stats_interval)
        while True:
            await self.sleep(tick)
            assert self.processor is not None and self.store is not None
            await self.processor.tick()
            now = time.monotonic()
            if now - last_stats >= cfg.stats_interval:
                received = sum(h.posts for h in self.health.sources.values())
                self._log_stats(received - last_received, now - last_stats)
                last_stats, last_received = now, received
            if now - last_snapshot >= cfg.store.snapshot_interval:
                last_snapshot = now
                await self.save_engine_state()
            if now - last_prune >= cfg.store.prune_interval:
                last_prune = now
                try:
                    pruned = await self.store.prune(
                        self.clock.now().timestamp(), cfg.store.post_retention, cfg.dedup.ttl
                    )
                except StoreError as exc:  # locked or full: what is old now is still old next time
                    log.warning("store not pruned, the store refused it", error=str(exc))
                    continue
                if any(pruned.values()):
                    log.info("store pruned", **pruned)

    def _log_stats(self, received: float, seconds: float) -> None:
        assert self.processor is not None and self.inbox is not None and self.router is not None
        assert self.dispatcher is not None
        log.info(
            "pipeline",
            posts_per_s=round(received / max(seconds, 1e-9), 1),
            posts=sum(h.posts for h in self.health.sources.values()),
            matched=self.processor.matched,
            duplicates=self.processor.duplicates,
            dropped=self.inbox.dropped,
            malformed=sum(h.malformed for h in self.health.sources.values()),
            inbox=self.inbox.qsize(),
            signals=self.router.signals,
            alerts_sent=self.dispatcher.delivered,
            sources={h.name: h.state.value for h in self.health.sources.values()},
        )
        self.notifier.status(
            f"running: {sum(h.posts for h in self.health.sources.values())} posts, "
            f"{self.router.signals} signals, {self.dispatcher.delivered} alerts sent"
        )


async def _cancel(tasks: list[asyncio.Task[None]], within: float) -> None:
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=max(within, 0.01))
