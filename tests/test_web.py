"""The web server: config refusals, /healthz /readyz /health, /metrics, the JSON API and the token."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr, ValidationError

from harvester.app import App
from harvester.config.loader import LoadedConfig, load_config
from harvester.config.web import WebConfig
from harvester.errors import ConfigError
from tests.web_helpers import config, finished, running, url, wait_until

REPO = Path(__file__).resolve().parent.parent


async def get(session: aiohttp.ClientSession, address: str, **kw: Any) -> tuple[int, Any]:
    async with session.get(address, **kw) as response:
        body = await response.json() if response.content_type == "application/json" else await response.text()
        return response.status, body


# ------------------------------------------------------------------------------------------- config


def test_web_config_defaults_are_loopback_and_off() -> None:
    web = WebConfig()
    assert (web.enabled, web.host, web.port, web.token) == (False, "127.0.0.1", 8080, None)
    assert WebConfig(enabled=True, host="::1").host == "::1"  # loopback needs no token
    assert WebConfig(enabled=True, host="0.0.0.0", token=SecretStr("x")).token is not None


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.com", "::"])
def test_exposed_host_without_token_is_a_config_error(host: str) -> None:
    with pytest.raises(ValidationError, match=r"not a loopback address and web\.token is not set"):
        WebConfig(enabled=True, host=host)


def test_daemon_bound_to_all_addresses_without_token_exits_78_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "h.yaml"
    path.write_text(f"state_dir: {tmp_path}\nweb:\n  enabled: true\n  host: 0.0.0.0\n  port: 0\n")
    with pytest.raises(ConfigError):
        load_config(path)
    done = subprocess.run(
        [sys.executable, "-m", "harvester", "run", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )
    assert done.returncode == 78
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "web.token is not set" in lines[0], done.stderr


def test_token_from_the_environment_is_a_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HW_TOKEN", "s3cret-value")
    path = tmp_path / "h.yaml"
    path.write_text(
        f"state_dir: {tmp_path}\nweb:\n  enabled: true\n  host: 0.0.0.0\n  token: ${{HW_TOKEN}}\n"
    )
    loaded = load_config(path)
    assert "s3cret-value" in loaded.secrets
    assert "s3cret-value" not in repr(loaded.config.web)


# ------------------------------------------------------------------------------------------- health


def test_not_ready_before_start(tmp_path: Path) -> None:
    from harvester.web.state import DaemonView

    view = DaemonView(App(LoadedConfig(config(tmp_path), None)))
    assert view.ready() is False


async def test_health_endpoints_report_sources_queues_and_alerts(tmp_path: Path) -> None:
    secrets = frozenset({"very-secret-key"})
    async with running(config(tmp_path), secrets=secrets) as app, aiohttp.ClientSession() as s:
        await wait_until(finished(app))
        status, alive = await get(s, url(app, "/healthz"))
        assert status == 200 and alive["status"] == "alive" and alive["uptime_s"] > 0
        assert await get(s, url(app, "/readyz")) == (200, {"ready": True})
        app.health.sources["demo"].last_error = "GET https://api?key=very-secret-key failed"
        status, body = await get(s, url(app, "/health"))
        assert status == 200
        assert body["status"] in ("ok", "degraded")
        demo = body["sources"]["demo"]
        assert demo["state"] == "finished" and demo["posts"] == 600
        assert demo["last_error"] == "GET https://api?key=*** failed"
        assert "very-secret-key" not in str(body)
        assert demo["last_post_age_s"] is not None and demo["reconnects"] == 0
        assert set(body["queues"]) >= {"inbox", "signals", "batches", "inbox_capacity"}
        assert {"backlog", "dead_letters", "outbox"} <= set(body["alerts"])
        assert body["uptime_s"] > 0 and body["ready"] is True


def test_errors_lose_whole_secrets_and_the_token_parts_of_secret_urls(tmp_path: Path) -> None:
    from harvester.web.state import DaemonView

    hook = "https://hooks.slack.com/services/T000/B000/XyZsecretTokenPart123"
    cfg = config(tmp_path, token="web-token-abcdef")
    view = DaemonView(App(LoadedConfig(cfg, None, frozenset({hook, "plain-secret-1"}))))
    assert view.redact(f"POST {hook} failed") == "POST *** failed"
    assert view.redact("404 on /services/T000/B000/XyZsecretTokenPart123") == "404 on /services/T000/B000/***"
    assert view.redact("auth plain-secret-1 / web-token-abcdef") == "auth *** / ***"
    assert view.redact("nothing secret here") == "nothing secret here"


async def test_health_is_failing_when_every_source_failed(tmp_path: Path) -> None:
    from harvester.health import SourceState

    async with running(config(tmp_path)) as app, aiohttp.ClientSession() as s:
        await wait_until(finished(app))
        app.health.sources["demo"].state = SourceState.FAILED
        status, body = await get(s, url(app, "/health"))
        assert (status, body["status"]) == (503, "failing")
        assert "source demo is failed" in body["problems"]


def test_health_names_failing_store_writes_as_a_problem(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from harvester.web.state import DaemonView

    app = App(LoadedConfig(config(tmp_path), None))
    view = DaemonView(app)
    # The writer sets `failing` while batches cannot be committed (disk full, database locked), and
    # clears it on the next commit that succeeds.
    app.writer = SimpleNamespace(failing=True)  # type: ignore[assignment]
    assert any("store writes failing" in p for p in view._problems({}, {}, True))
    app.writer = SimpleNamespace(failing=False)  # type: ignore[assignment]
    assert not any("store writes failing" in p for p in view._problems({}, {}, True))


# ------------------------------------------------------------------------------------------ metrics


def promtool(text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30, check=False
    )


def families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(fams: dict[str, Any], family: str, sample: str, **labels: str) -> float:
    for s in fams[family].samples:
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
            return float(s.value)
    raise AssertionError(f"no sample {sample} {labels}")


async def test_metrics_parse_and_count_the_pipeline(tmp_path: Path) -> None:
    async with running(config(tmp_path)) as app, aiohttp.ClientSession() as s:
        await wait_until(finished(app))
        await wait_until(lambda: app.processor is not None and app.processor.processed == 600)
        assert app.writer is not None
        await app.writer.wait_idle()  # the lag gauge is read from committed posts
        for reason in ("network", "network", "rate_limited"):  # as a source reports its reconnects
            app.health.sources["demo"].reconnected(reason)
        async with s.get(url(app, "/metrics")) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            text = await response.text()
    fams = families(text)
    assert value(fams, "harvester_posts_received", "harvester_posts_received_total", source="demo") == 600
    assert value(fams, "harvester_source_up", "harvester_source_up", source="demo") == 1
    reconnects = ("harvester_source_reconnects", "harvester_source_reconnects_total")
    assert value(fams, *reconnects, source="demo", reason="network") == 2
    assert value(fams, *reconnects, source="demo", reason="rate_limited") == 1
    assert value(fams, "harvester_source_lag_seconds", "harvester_source_lag_seconds", source="demo") > 0
    assert value(fams, "harvester_queue_depth", "harvester_queue_depth", queue="inbox") == 0
    assert "harvester_event_loop_lag_seconds" in fams
    assert value(fams, "process_resident_memory_bytes", "process_resident_memory_bytes") > 1e6
    assert fams["harvester_post_to_signal_seconds"].type == "histogram"
    expected = ["harvester_outbox_backlog", "harvester_alerts_sent", "harvester_signals"]
    expected.append("harvester_dedup_hits")
    for name in expected:
        assert name in fams, name
    if shutil.which("promtool"):
        checked = await asyncio.to_thread(promtool, text)
        assert checked.returncode == 0 and not checked.stdout.strip() and not checked.stderr.strip(), (
            checked.stdout + checked.stderr
        )


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian's prometheus) not installed")
def test_promtool_would_catch_a_bad_metric() -> None:
    # The check above is only worth something if promtool complains about a convention we break.
    bad = "# HELP foo_bytes_count x\n# TYPE foo_bytes_count counter\nfoo_bytes_count 1\n"
    checked = promtool(bad)
    assert checked.returncode != 0 or checked.stdout.strip() or checked.stderr.strip()


def test_grafana_dashboard_uses_only_metrics_the_daemon_exports() -> None:
    import json
    import re

    from prometheus_client import generate_latest

    from harvester.metrics import Metrics

    dashboard = json.loads((REPO / "config" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"\b((?:harvester|process)_[a-z_]+)\b", e)}
    text = generate_latest(Metrics().registry).decode()
    exported = set(re.findall(r"^# TYPE (\S+) ", text, flags=re.M))
    exported |= {f"{name}_total" for name in exported} | {f"{name}_bucket" for name in exported}
    assert used and used <= exported, sorted(used - exported)
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])


@pytest.mark.timeout(90)
async def test_harvester_run_serves_healthz_on_a_free_port_and_stops_on_sigterm(tmp_path: Path) -> None:
    import signal

    from tests.test_daemon import Daemon

    cfg = tmp_path / "harvester.yaml"
    cfg.write_text((REPO / "config" / "harvester.yaml").read_text() + "\nweb:\n  enabled: true\n  port: 0\n")
    daemon = Daemon(cfg, tmp_path / "state")
    await daemon.start()
    try:
        listening = await daemon.wait_for(lambda line: line.get("event") == "web server listening", within=30)
        await daemon.wait_for(lambda line: line.get("event") == "harvester starting", within=30)
        async with aiohttp.ClientSession() as s:
            status, alive = await get(s, f"{listening['url']}/healthz")
            assert status == 200 and alive["status"] == "alive"
            async with asyncio.timeout(20):  # ready once the sources are started: soon after this line
                while (await get(s, f"{listening['url']}/readyz"))[0] != 200:  # noqa: ASYNC110 - another process
                    await asyncio.sleep(0.05)
            status, report = await get(s, f"{listening['url']}/health")
            assert status == 200 and report["sources"]["demo"]["state"] in ("connecting", "connected")
    finally:
        code = await daemon.stop(signal.SIGTERM, within=30)
    assert code == 0
    events = [line.get("event") for line in daemon.lines]
    # the web server goes down after the pipeline has stopped
    assert events.index("web server stopped") > events.index("harvester stopped")
