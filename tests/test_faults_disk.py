"""The disk fills up under a running daemon (a file-size limit), then space returns."""

from __future__ import annotations

import resource
import signal
import sqlite3
from pathlib import Path

import pytest

from tests.issue9_helpers import DaemonProcess

CONFIG = """
state_dir: ${HARVESTER_STATE_DIR}
stats_interval: 0.3s
log: {format: json}
engine:
  sentiment_workers: 0
  volume_spike: {bucket: 1s, window_buckets: 2, warmup_buckets: 3, min_count: 10, threshold: 4, cooldown: 5s}
store: {batch_max_posts: 200}
sources:
  - type: synthetic
    name: fast
    rate: 1500
    seed: 3
    scenarios: {first_after: 3s, every: 6s, duration: 3s}
rules:
  - name: brands
    keywords: [acme air, globex bank, initech, hooli]
alerts:
  group_wait: 0.2s
  poll_interval: 0.2s
  sinks:
    - type: log
"""


def ignore_sigxfsz() -> None:
    # Without SIG_IGN the kernel kills a process writing past RLIMIT_FSIZE (SIGXFSZ); ignored, the
    # write fails with EFBIG, which is what a full disk looks like to SQLite (an I/O error).
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


@pytest.mark.timeout(120)
async def test_disk_full_then_space_returns(tmp_path: Path) -> None:
    config = tmp_path / "harvester.yaml"
    config.write_text(CONFIG)
    state = tmp_path / "state"
    daemon = DaemonProcess(config, state)
    daemon.preexec = ignore_sigxfsz
    await daemon.start()
    assert daemon.proc is not None
    try:
        # The disk fills once alerts are flowing: from now on no file may grow past its size.
        await daemon.wait_for(lambda line: str(line.get("event", "")).startswith("ALERT"), within=60)
        full = max(p.stat().st_size for p in state.iterdir())
        resource.prlimit(daemon.proc.pid, resource.RLIMIT_FSIZE, (full, resource.RLIM_INFINITY))
        failed = await daemon.wait_for(daemon.event("store write failed, retrying"), within=60)
        assert "disk" in failed["error"] or "I/O" in failed["error"] or "full" in failed["error"], failed
        # Still running, still collecting (posts wait in memory, the inbox pushes back).
        stuck = await daemon.wait_for(lambda line: line.get("event") == "pipeline", within=10)
        assert stuck["sources"] == {"fast": "connected"}
        unlimited = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
        resource.prlimit(daemon.proc.pid, resource.RLIMIT_FSIZE, unlimited)  # space returns
        await daemon.wait_for(daemon.event("store writes recovered"), within=60)
        await daemon.wait_for(
            lambda line: line.get("event") == "pipeline" and line["posts"] > stuck["posts"] + 1000, within=30
        )
        assert await daemon.stop(signal.SIGTERM, within=30) == 0
    finally:
        daemon.kill()
    with sqlite3.connect(state / "harvester.db") as conn:
        numbers = sorted(int(uid.split(":")[1]) for (uid,) in conn.execute("SELECT uid FROM posts"))
        outbox = dict(conn.execute("SELECT status, count(*) FROM outbox GROUP BY status"))
    assert numbers == list(range(1, len(numbers) + 1)), "a post was lost or stored twice"
    assert len(numbers) > stuck["posts"]
    print(f"store error: {failed['error']}; posts {len(numbers)}; outbox {outbox}")
    assert set(outbox) == {"delivered"}, outbox  # alerts were raised, and every one was delivered
    errors = [line for line in daemon.lines if line.get("level") == "error"]
    assert not errors, errors[:3]
