"""SIGHUP reload: rules, routes and sinks change; sources, connections and window state stay."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar, Literal

import pytest
from pydantic import BaseModel
from structlog.testing import capture_logs

from harvester.alerts.sinks.base import Sink
from harvester.app import App, Hooks
from harvester.config.loader import load_config
from harvester.config.schema import RuleConfig, SinkConfig, SourceConfig
from harvester.models import Alert
from harvester.plugins import SINKS, SOURCES
from harvester.reload import reload_config
from harvester.sources.base import Source, SourceContext
from tests.helpers import make_post
from tests.issue9_helpers import DaemonProcess, NotifySocket


class ProbeSinkConfig(SinkConfig):
    type: Literal["probe"] = "probe"


class ProbeSink(Sink):
    config_class = ProbeSinkConfig
    started: ClassVar[list[ProbeSink]] = []
    closed: ClassVar[list[ProbeSink]] = []

    async def start(self) -> None:
        ProbeSink.started.append(self)

    async def close(self) -> None:
        ProbeSink.closed.append(self)

    async def send(self, alert: Alert) -> None:
        pass


class HeldSourceConfig(SourceConfig):
    type: Literal["held"] = "held"


class HeldSource(Source):
    """Emits a few posts and then holds its 'connection' open; takes new rules like the X stream."""

    config_class = HeldSourceConfig
    instances: ClassVar[list[HeldSource]] = []

    def __init__(self, config: BaseModel) -> None:
        assert isinstance(config, HeldSourceConfig)
        super().__init__(config)
        self.runs = 0
        self.cancelled = 0
        self.rule_updates: list[list[str]] = []
        self.emitted = asyncio.Event()
        HeldSource.instances.append(self)

    async def run(self, ctx: SourceContext) -> None:
        self.runs += 1
        for n in range(1, 21):
            await ctx.emit(make_post(n, "acme air delayed again", source=self.name), str(n))
        self.emitted.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise

    async def reload_rules(self, rules: Sequence[RuleConfig]) -> None:
        self.rule_updates.append([rule.name for rule in rules])


@pytest.fixture(autouse=True)
def plugins() -> object:
    SINKS.register("probe", ProbeSinkConfig, ProbeSink)
    SOURCES.register("held", HeldSourceConfig, HeldSource)
    ProbeSink.started.clear()
    ProbeSink.closed.clear()
    HeldSource.instances.clear()
    yield
    SINKS.unregister("probe")
    SOURCES.unregister("held")


BASE = """
state_dir: {state}
log: {{format: json}}
stats_interval: 1h
sources:
  - type: held
    name: held
rules_file: rules.yaml
alerts:
  sinks:
    - {{type: probe, name: keep}}
{sinks}
{routes}
"""

RULES = """
- name: steady
  keywords: [acme air]
- name: tuned
  keywords: [globex]
  volume_spike: {{threshold: {threshold}}}
{extra}
"""


def write(
    tmp_path: Path,
    *,
    threshold: float = 5,
    extra: str = "",
    sinks: str = "    - {type: probe, name: change}",
    routes: str = "",
) -> Path:
    (tmp_path / "rules.yaml").write_text(RULES.format(threshold=threshold, extra=extra))
    config = tmp_path / "harvester.yaml"
    config.write_text(BASE.format(state=tmp_path / "state", sinks=sinks, routes=routes))
    return config


async def started_app(config: Path) -> tuple[App, asyncio.Task[None]]:
    """The app running, with the source's 20 posts through the engine (so windows hold state)."""
    processed = asyncio.Event()
    count = 0

    def seen(_enqueued: float, _signalled: bool) -> None:
        nonlocal count
        count += 1
        if count == 20:
            processed.set()

    app = App(load_config(config), hooks=Hooks(on_processed=seen))
    task = asyncio.create_task(app.run())
    await asyncio.wait_for(app.started.wait(), 30)
    await asyncio.wait_for(processed.wait(), 20)
    return app, task


async def stop(app: App, task: asyncio.Task[None]) -> None:
    app.request_stop()
    await asyncio.wait_for(task, 30)


@pytest.mark.timeout(60)
async def test_reload_applies_rules_routes_and_sinks_and_keeps_sources_and_state(tmp_path: Path) -> None:
    config = write(tmp_path)
    app, task = await started_app(config)
    try:
        assert app.engine is not None and app.router is not None and app.dispatcher is not None
        assert app.processor is not None
        steady_before = dict(app.engine.detectors("steady"))
        steady_volume = app.engine.detectors("steady")["volume_spike"]
        tuned_volume = app.engine.detectors("tuned")["volume_spike"]
        keep, change = app.sinks["keep"], app.sinks["change"]

        write(
            tmp_path,
            threshold=8,
            extra="- name: added\n  keywords: [initech]",
            sinks="    - {type: probe, name: change, min_severity: high}\n    - {type: probe, name: extra}",
            routes="  routes:\n    - {name: only-extra, sinks: [extra]}",
        )
        with capture_logs() as logs:
            assert await reload_config(app)
        reloaded = [e for e in logs if e["event"] == "config reloaded"]
        assert len(reloaded) == 1
        assert reloaded[0]["rules_added"] == ["added"] and reloaded[0]["rules_changed"] == ["tuned"]
        assert reloaded[0]["sinks_started"] == ["change", "extra"]
        assert reloaded[0]["sinks_closed"] == ["change"]
        assert reloaded[0]["needs_restart"] == []

        # Rules: the unchanged rule keeps its detectors (windows, baselines); the retuned one is rebuilt.
        assert set(app.engine.rules) == {"steady", "tuned", "added"}
        after = app.engine.detectors("steady")
        assert after.keys() == steady_before.keys() and all(after[k] is d for k, d in steady_before.items())
        assert app.engine.detectors("steady")["volume_spike"] is steady_volume
        assert app.engine.detectors("tuned")["volume_spike"] is not tuned_volume
        assert [rule.name for rule in app.config.rules] == ["steady", "tuned", "added"]
        # Sinks: the unchanged one is the same object, the changed one replaced and closed, one added.
        assert app.sinks["keep"] is keep and keep not in ProbeSink.closed
        assert app.sinks["change"] is not change and change in ProbeSink.closed
        assert app.sinks["extra"] in ProbeSink.started
        assert app.dispatcher.sinks == app.sinks
        assert ("change", "high") in [(name, sev.value) for name, sev in app.router.sinks]
        assert [name for name, _ in app.router._routes] == ["only-extra"]
        # Sources: still on their first run, never cancelled, and told about the new rules.
        source = HeldSource.instances[0]
        assert len(HeldSource.instances) == 1 and source.runs == 1 and source.cancelled == 0
        assert source.rule_updates == [["steady", "tuned", "added"]]
        assert [r.name for r in app.supervisors[0].ctx.rules] == ["steady", "tuned", "added"]
    finally:
        await stop(app, task)
    # Every sink still running at the stop is closed exactly once.
    assert sorted(id(s) for s in ProbeSink.closed) == sorted(
        [id(change), *(id(s) for s in app.sinks.values())]
    )


BROKEN = [
    ("- name: broken\n  keywords: [acme\n", "invalid YAML"),
    ("- name: bad-regex\n  regex: ['(unclosed']\n", "regex"),
    ("- name: steady\n  keywords: [x]\n- name: steady\n  keywords: [y]\n", "steady"),
    ("- name: no-matcher\n", "a rule needs keywords"),
]


@pytest.mark.timeout(60)
async def test_an_invalid_config_is_rejected_with_one_line_and_the_old_one_kept(tmp_path: Path) -> None:
    config = write(tmp_path)
    app, task = await started_app(config)
    try:
        before_config, before_sinks = app.config, dict(app.sinks)
        assert app.engine is not None
        before_rules = dict(app.engine.rules)
        for rules, complaint in BROKEN:
            (tmp_path / "rules.yaml").write_text(rules)
            with capture_logs() as logs:
                assert not await reload_config(app)
            assert [e["event"] for e in logs] == ["reload rejected; running config kept"], rules
            assert complaint in logs[0]["error"], logs[0]["error"]
            assert app.config is before_config and app.sinks == before_sinks
            assert app.engine.rules == before_rules
        assert HeldSource.instances[0].rule_updates == []
        assert ProbeSink.closed == []
    finally:
        await stop(app, task)


@pytest.mark.timeout(60)
async def test_a_sink_that_cannot_start_rejects_the_reload(tmp_path: Path) -> None:
    config = write(tmp_path)
    app, task = await started_app(config)

    async def refuse(self: ProbeSink) -> None:
        raise OSError("connection refused")

    try:
        write(tmp_path, sinks="    - {type: probe, name: change}\n    - {type: probe, name: extra}")
        ProbeSink.start = refuse  # type: ignore[method-assign]
        with capture_logs() as logs:
            assert not await reload_config(app)
        assert [e["event"] for e in logs] == ["reload rejected; running config kept"]
        assert "'extra' cannot start: connection refused" in logs[0]["error"]
        assert set(app.sinks) == {"keep", "change"}
    finally:
        del ProbeSink.start
        await stop(app, task)


DAEMON = """
state_dir: ${{HARVESTER_STATE_DIR}}
stats_interval: 0.3s
log: {{format: json}}
sources:
  - type: synthetic
    name: demo
    rate: 300
    seed: 9
rules_file: rules.yaml
alerts:
  sinks:
    - type: log
"""


@pytest.mark.timeout(120)
async def test_sighup_to_a_running_daemon(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text("- name: brands\n  keywords: [acme air]\n")
    config = tmp_path / "harvester.yaml"
    config.write_text(DAEMON.format())
    notify = NotifySocket()
    daemon = DaemonProcess(config, tmp_path / "state", env=notify.env())
    await daemon.start()
    try:
        await notify.until(lambda m: "READY" in m, within=45)
        first = await daemon.wait_for(lambda line: line.get("event") == "pipeline" and line["posts"] > 0, 30)

        (tmp_path / "rules.yaml").write_text(
            "- name: brands\n  keywords: [acme air]\n- name: banks\n  keywords: [globex bank]\n"
        )
        daemon.send(signal.SIGHUP)
        reloaded = await daemon.wait_for(daemon.event("config reloaded"), within=20)
        assert reloaded["rules_added"] == ["banks"] and reloaded["rules"] == 2
        assert (await notify.until(lambda m: "RELOADING" in m, within=5))["RELOADING"] == "1"
        assert "READY" in await notify.until(lambda m: "READY" in m, within=5)

        (tmp_path / "rules.yaml").write_text("- name: brands\n  keywords: [acme air\n")
        daemon.send(signal.SIGHUP)
        rejected = await daemon.wait_for(daemon.event("reload rejected; running config kept"), within=20)
        assert "invalid YAML" in rejected["error"] and rejected["level"] == "error"
        later = await daemon.wait_for(
            lambda line: line.get("event") == "pipeline" and line["posts"] > first["posts"] + 300, 30
        )
        assert later["sources"] == {"demo": "connected"}
        assert await daemon.stop(signal.SIGTERM, within=20) == 0
    finally:
        daemon.kill()
        notify.close()
    events = [line.get("event") for line in daemon.lines]
    assert events.count("harvester starting") == 1
    assert events.count("reload rejected; running config kept") == 1
    assert events.count("config reloaded") == 1
    assert not [line for line in daemon.lines if line.get("event") == "source failed; restarting"]
    assert not [line for line in daemon.lines if line.get("level") == "error" and line is not rejected]
