"""`harvester run` as a real process with a twitter source against the fake X API: SIGTERM closes the
stream before the process exits, and two restarts mid-stream lose and duplicate nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fake_twitter import FakeX
from tests.test_source_twitter_gaps import Producer

REPO = Path(__file__).resolve().parent.parent
TOKEN = "token-for-the-daemon-test-7f3a"
# plugins.py does not list the twitter module yet (the lead wires it); import it before the CLI runs.
LAUNCH = "import sys, harvester.sources.twitter; from harvester.cli import main; sys.exit(main())"


@pytest.fixture
async def fake() -> AsyncIterator[FakeX]:
    server = FakeX()
    await server.start()
    yield server
    await server.stop()


def write_config(tmp_path: Path, base: str) -> Path:
    path = tmp_path / "harvester.yaml"
    path.write_text(
        f"""
state_dir: {tmp_path / "state"}
log: {{format: json}}
engine: {{sentiment_workers: 0}}
stats_interval: 1h
sources:
  - type: twitter
    name: x
    bearer_tokens: ["${{X_TOKEN}}"]
    api_base: {base}
    backfill: {{delay: 0s}}
rules:
  - name: acme
    keywords: [acme air]
""",
        encoding="utf-8",
    )
    return path


def stored(db: Path) -> list[str]:
    if not db.exists():
        return []
    with sqlite3.connect(db) as conn:
        return [uid.split(":", 1)[1] for (uid,) in conn.execute("SELECT uid FROM posts")]


async def wait_until(condition: object, within: float = 30.0) -> None:
    assert callable(condition)
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - the daemon is another process; poll, bounded
            await asyncio.sleep(0.05)


@pytest.mark.timeout(120)
async def test_sigterm_closes_the_stream_and_restarts_resume(fake: FakeX, tmp_path: Path) -> None:
    config = write_config(tmp_path, fake.base)
    db = tmp_path / "state" / "harvester.db"
    env = {**os.environ, "X_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1"}
    producer = Producer(fake, "acme", 0.01)
    output: list[bytes] = []
    for run in range(3):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", LAUNCH, "run", "--config", str(config),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env, cwd=REPO,
        )  # fmt: skip
        try:
            await fake.wait_connections(run + 1, within=30)
            if run == 0:
                producer.start()
            count = len(producer.published)
            await wait_until(lambda n=count: len(stored(db)) >= n + 5)  # the stream delivers
            if run == 2:
                await producer.stop()
                await wait_until(lambda: set(stored(db)) >= set(producer.published))
            connection = fake.connections[-1]
            proc.send_signal(signal.SIGTERM)
            # The stream is closed before the process is gone: X would count it against the app.
            closed = asyncio.ensure_future(connection.closed.wait())
            exited = asyncio.ensure_future(proc.wait())
            done, _ = await asyncio.wait({closed, exited}, timeout=20, return_when=asyncio.FIRST_COMPLETED)
            assert closed in done, "the daemon exited (or hung) without closing its stream"
            assert await asyncio.wait_for(exited, 20) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            assert proc.stdout is not None
            output.append(await proc.stdout.read())

    uids = stored(db)
    assert len(uids) == len(set(uids)) == len(producer.published)
    assert set(uids) == set(producer.published)
    assert len([r for r in fake.search_requests if "since_id" in r]) >= 2  # both restarts backfilled
    assert TOKEN.encode() not in b"".join(output)  # the secret never reached the log
