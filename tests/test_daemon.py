"""The daemon as a user runs it: a real process, real signals, real kill -9."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest

REPO = Path(__file__).resolve().parent.parent


def parse(raw: bytes) -> dict[str, Any]:
    """A JSON log line; anything else (after a kill -9, Python's resource tracker reports the
    semaphores it cleaned up) is kept as raw text."""
    return json.loads(raw) if raw.startswith(b"{") else {"raw": raw.decode(errors="replace")}


class Daemon:
    """`harvester run` in a subprocess, with its JSON log lines read as they come."""

    started: ClassVar[list[Daemon]] = []  # killed after each test, whatever became of the test

    def __init__(self, config: Path, state_dir: Path) -> None:
        self.config = config
        self.env = {**os.environ, "HARVESTER_STATE_DIR": str(state_dir), "PYTHONUNBUFFERED": "1"}
        self.proc: asyncio.subprocess.Process | None = None
        self.lines: list[dict[str, Any]] = []
        Daemon.started.append(self)

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "harvester",
            "run",
            "--config",
            str(self.config),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=self.env,
            cwd=REPO,
        )

    async def wait_for(self, predicate: Callable[[dict[str, Any]], bool], within: float) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        try:
            async with asyncio.timeout(within):
                while True:
                    raw = await self.proc.stdout.readline()
                    if not raw:
                        raise AssertionError(f"daemon exited; last lines: {self.lines[-5:]}")
                    line = parse(raw)
                    self.lines.append(line)
                    if predicate(line):
                        return line
        except TimeoutError:
            raise AssertionError(f"nothing matched in {within} s; last lines: {self.lines[-8:]}") from None

    async def stop(self, sig: int, within: float) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        async with asyncio.timeout(within):
            assert self.proc.stdout is not None
            while raw := await self.proc.stdout.readline():
                self.lines.append(parse(raw))
            return await self.proc.wait()


@pytest.fixture(autouse=True)
async def _no_daemon_left_running() -> AsyncIterator[None]:
    yield
    # Killed and reaped here, in the test's own loop: a process left to the garbage collector warns
    # (ResourceWarning) in whichever test runs next, and warnings are errors.
    for daemon in Daemon.started:
        if daemon.proc is not None and daemon.proc.returncode is None:
            daemon.proc.kill()
            await daemon.proc.wait()
    Daemon.started.clear()


def pipeline_posts(min_posts: int) -> Callable[[dict[str, Any]], bool]:
    return lambda line: line.get("event") == "pipeline" and line.get("posts", 0) >= min_posts


@pytest.mark.timeout(150)
async def test_readme_demo_alerts_within_a_minute_and_stops_on_sigterm(tmp_path: Path) -> None:
    daemon = Daemon(REPO / "config" / "harvester.yaml", tmp_path / "state")
    loop = asyncio.get_running_loop()
    started = loop.time()
    await daemon.start()
    await daemon.wait_for(pipeline_posts(1), within=30)
    alert = await daemon.wait_for(lambda line: str(line.get("event", "")).startswith("ALERT"), within=90)
    assert loop.time() - started < 60
    assert alert["severity"] in {"low", "medium", "high", "critical"} and alert["rule"]
    stopping = loop.time()
    assert await daemon.stop(signal.SIGTERM, within=10) == 0
    assert loop.time() - stopping < 10
    assert any(line.get("event") == "harvester stopped" for line in daemon.lines)
    assert (tmp_path / "state").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "state" / "harvester.db").stat().st_mode & 0o777 == 0o600


FAST = """
state_dir: ${HARVESTER_STATE_DIR}
stats_interval: 0.5s
log: {format: json}
sources:
  - type: synthetic
    name: fast
    rate: 2000
    seed: 3
rules:
  - name: brands
    keywords: [acme air, globex bank, initech, hooli]
alerts:
  sinks:
    - type: log
"""


def check_invariants(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        numbers = sorted(int(uid.split(":")[1]) for (uid,) in conn.execute("SELECT uid FROM posts"))
        (cursor,) = conn.execute("SELECT cursor FROM cursors WHERE source = 'fast'").fetchone()
    assert numbers == list(range(1, len(numbers) + 1)), "a post was lost or stored twice"
    assert int(cursor) == numbers[-1], "the cursor does not match the posts committed with it"
    return len(numbers)


@pytest.mark.timeout(120)
async def test_kill_9_at_2000_posts_per_second_then_resume(tmp_path: Path) -> None:
    config = tmp_path / "fast.yaml"
    config.write_text(FAST)
    state = tmp_path / "state"
    first = Daemon(config, state)
    await first.start()
    await first.wait_for(pipeline_posts(3000), within=40)
    assert await first.stop(signal.SIGKILL, within=10) == -signal.SIGKILL
    after_kill = check_invariants(state / "harvester.db")
    assert after_kill >= 2000

    second = Daemon(config, state)
    await second.start()
    started = await second.wait_for(lambda line: line.get("event") == "harvester starting", within=30)
    assert started["resumed_cursors"] == 1
    await second.wait_for(pipeline_posts(3000), within=40)
    assert await second.stop(signal.SIGTERM, within=10) == 0
    assert check_invariants(state / "harvester.db") >= after_kill + 3000
