"""SIGHUP: re-read the configuration and apply rules, routes and sinks to the running daemon.

What a reload changes: the rules (the engine keeps the windows, baselines and detector state of every
rule whose settings did not change: `Engine.load_rules`), the sources that filter at the platform
(`reload_rules(rules)`, the X stream: only the difference is synced, the connection stays up), the
alert routing (routes, grouping, cooldowns, labels, inhibition, config silences) and the sinks (a sink
whose settings changed is replaced, a new one started, a removed one closed; alerts already in the
outbox for a removed sink become dead letters that `harvester dead-letters resend` can revive).

What it does not change: sources and their connections, the inbox, dedup, store and engine settings,
the state directory, logging. Those need a restart, and the reload says so in its log line.

A new config that fails to load (bad YAML, a validation error, a rule X would refuse, a sink that
cannot start) is rejected with one log line naming the problem, and the running config stays.
Reloads run one at a time; a SIGHUP during a reload waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import structlog

from harvester.alerts.ratelimit import TokenBucket
from harvester.alerts.silences import config_silences
from harvester.alerts.sinks.base import Sink
from harvester.config.loader import LoadedConfig, load_config
from harvester.config.schema import AlertsConfig, Config
from harvester.engine import Engine
from harvester.errors import ConfigError
from harvester.logging import configure_logging
from harvester.models import Severity
from harvester.plugins import SINKS

if TYPE_CHECKING:
    from harvester.app import App

log = structlog.get_logger(__name__)

# Sections applied by a reload; any other difference is reported as needing a restart.
RELOADED = ("rules", "rules_file", "alerts")

_locks: weakref.WeakKeyDictionary[App, asyncio.Lock] = weakref.WeakKeyDictionary()
_tasks: set[asyncio.Task[bool]] = set()  # a reference to each running reload, so it is not collected


def schedule_reload(app: App) -> asyncio.Task[bool] | None:
    """Start a reload in the background (a signal handler cannot await). None before start-up."""
    if not app.started.is_set() or app.stop_requested.is_set():
        log.warning("reload ignored: the daemon is starting or stopping")
        return None
    task = asyncio.get_running_loop().create_task(reload_config(app), name="reload")
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
    return task


async def reload_config(app: App) -> bool:
    """Re-read `app.loaded.path` and apply it; True when applied, False when rejected."""
    lock = _locks.setdefault(app, asyncio.Lock())
    async with lock:
        app.notifier.reloading()
        try:
            return await _reload(app)
        finally:
            app.notifier.ready()


async def _reload(app: App) -> bool:
    path = app.loaded.path
    if path is None:
        log.error("reload rejected: the daemon was not started from a config file")
        return False
    try:
        # Off the loop: reading files, resolving ${VAR}s and compiling regexes can take a moment.
        loaded = await asyncio.to_thread(load_config, path)
        new = loaded.config
        Engine(new.rules, app.config.engine)  # compiles every rule: refuse here, not half-way through
    except ConfigError as exc:
        log.error("reload rejected; running config kept", error=str(exc))
        return False
    except Exception as exc:  # a bug in a validator must not end the daemon either
        log.error("reload rejected; running config kept", error=f"{type(exc).__name__}: {exc}")
        return False
    old = app.config
    started, replaced, kept = await _start_sinks(app.sinks, new.alerts)
    if started is None:
        return False
    # Everything below only assigns: nothing is left half-applied.
    await _reload_source_rules(app, new)
    assert app.engine is not None and app.router is not None and app.dispatcher is not None
    old_rules = {rule.name: rule for rule in old.rules}
    app.engine.load_rules(new.rules)
    sinks = {**kept, **started}
    _reconfigure_router(app, new.alerts)
    _reconfigure_dispatcher(app, new.alerts, sinks)
    app.sinks = sinks
    app.config = old.model_copy(update={key: getattr(new, key) for key in RELOADED})
    secrets = app.loaded.secrets | loaded.secrets
    if secrets != app.loaded.secrets:
        # New secrets must be redacted from now on; the old ones may still sit in a retried error.
        configure_logging(old.log.level, old.log.format, secrets)
    app.loaded = LoadedConfig(app.config, path, secrets)
    for sink in replaced.values():
        with contextlib.suppress(Exception):
            await sink.close()
    new_rules = {rule.name: rule for rule in new.rules}
    log.info(
        "config reloaded",
        config=str(path),
        rules=len(new.rules),
        rules_added=sorted(new_rules.keys() - old_rules.keys()),
        rules_removed=sorted(old_rules.keys() - new_rules.keys()),
        rules_changed=sorted(n for n in new_rules.keys() & old_rules.keys() if new_rules[n] != old_rules[n]),
        sinks=sorted(sinks),
        sinks_started=sorted(started),
        sinks_closed=sorted(replaced),
        needs_restart=_not_reloaded(old, new),
    )
    return True


async def _start_sinks(
    running: Mapping[str, Sink], alerts: AlertsConfig
) -> tuple[dict[str, Sink] | None, dict[str, Sink], dict[str, Sink]]:
    """(new sinks started, running sinks to close, running sinks kept as they are); None when a new
    sink fails to build or start (then none of the new ones stays open)."""
    wanted = {config.instance_name: config for config in alerts.sinks}
    kept = {name: sink for name, sink in running.items() if name in wanted and sink.config == wanted[name]}
    started: dict[str, Sink] = {}
    try:
        for name, config in wanted.items():
            if name not in kept:
                sink = SINKS.get(config.type).factory(config)
                await sink.start()
                started[name] = sink
    except Exception as exc:
        log.error("reload rejected; running config kept", error=f"sink {name!r} cannot start: {exc}")
        for sink in started.values():
            with contextlib.suppress(Exception):
                await sink.close()
        return None, {}, {}
    replaced = {name: sink for name, sink in running.items() if name not in kept}
    return started, replaced, kept


async def _reload_source_rules(app: App, new: Config) -> None:
    for supervisor in app.supervisors:
        # A source restarted by its supervisor later starts from these.
        supervisor.ctx.rules = tuple(new.rules)
        reload_rules = getattr(supervisor.source, "reload_rules", None)
        if reload_rules is None:
            continue
        try:
            await reload_rules(new.rules)
        except Exception as exc:  # checked at load time; what is left is the platform being unreachable
            log.warning(
                "source did not take the new rules; it keeps its previous ones",
                source=supervisor.ctx.name,
                error=f"{type(exc).__name__}: {exc}",
            )


def _reconfigure_router(app: App, alerts: AlertsConfig) -> None:
    # Groups waiting out group_wait keep their targets: what they hold is already promised to a sink.
    router = app.router
    assert router is not None
    router.config = alerts
    router.sinks = [(s.instance_name, Severity(s.min_severity)) for s in alerts.sinks]
    router._min_severity = dict(router.sinks)
    router._routes = router._effective_routes()
    runtime = [silence for silence in router.silences if silence.origin != "config"]
    router.silences = config_silences(alerts.silences) + runtime
    router._changed.set()


def _reconfigure_dispatcher(app: App, alerts: AlertsConfig, sinks: dict[str, Sink]) -> None:
    dispatcher = app.dispatcher
    assert dispatcher is not None
    now = dispatcher.now()
    # A kept sink keeps its token bucket: a reload must not refill a rate limit mid-storm.
    buckets = {
        name: (
            dispatcher.buckets[name]
            if name in dispatcher.buckets and dispatcher.sinks.get(name) is sink
            else TokenBucket(sink.config.rate_limit, now)
        )
        for name, sink in sinks.items()
        if sink.config.rate_limit is not None
    }
    dispatcher.config = alerts
    dispatcher.sinks = dict(sinks)
    dispatcher.buckets = buckets
    dispatcher.wake()


def _not_reloaded(old: Config, new: Config) -> list[str]:
    fields: dict[str, Any] = type(old).model_fields
    return sorted(key for key in fields if key not in RELOADED and getattr(old, key) != getattr(new, key))
