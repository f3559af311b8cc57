"""Fault tolerance of the whole daemon: kill -9 at random points of a replay, and hostile payloads.

The kill test runs real daemon processes (forked warm by tests/issue9_zygote.py, see why there)
against a replay file and a webhook receiver on 127.0.0.1, kills each with SIGKILL at a random
moment (during start-up, mid-batch, mid-delivery...), restarts it, and lets the last run finish.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sqlite3
from collections import Counter
from pathlib import Path

import pytest
from aiohttp import web

from harvester.sources.synthetic_text import BRAND_KEYWORDS
from tests.fake_sink_servers import FakeHttpServer
from tests.issue9_helpers import Zygote, synthetic_replay_file, wait_for_log_line

KILLS = 20
POSTS = 8000

CONFIG = """
state_dir: {state}
stats_interval: 0.25s
log: {{format: json}}
engine:
  sentiment_workers: 0
  volume_spike:
    {{bucket: 5s, window_buckets: 3, warmup_buckets: 4, min_count: 10, threshold: 5, cooldown: 15s}}
store: {{batch_max_posts: 100, batch_max_delay: 50ms, snapshot_interval: 1s}}
sources:
  - type: replay
    name: rp
    path: {replay}
    speed: 100
rules:
{rules}
alerts:
  group_wait: 0.3s
  cooldown: 15s
  retry_base: 0.2s
  poll_interval: 0.2s
  sinks:
    - type: webhook
      name: hook
      url: {url}/in
      secret: ${{HOOK_SECRET}}
"""


def brand_rules() -> str:
    return "\n".join(
        f"  - {{name: brand-{i}, keywords: [{json.dumps(keyword)}]}}"
        for i, keyword in enumerate(BRAND_KEYWORDS.values())
    )


def stored(db: Path) -> tuple[list[str], dict[str, str]]:
    with sqlite3.connect(db) as conn:
        uids = [uid for (uid,) in conn.execute("SELECT uid FROM posts")]
        outbox = dict(conn.execute("SELECT key, status FROM outbox"))
    return uids, outbox


@pytest.mark.timeout(180)
async def test_kill_9_twenty_times_during_a_replay(tmp_path: Path) -> None:
    ids = synthetic_replay_file(tmp_path / "posts.jsonl", POSTS, every=30)
    # The receiver answers after a short pause, so some kills land while a delivery is in flight.
    receiver = FakeHttpServer()
    original = receiver._handle

    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(0.2)
        return await original(request)

    receiver._handle = slow  # type: ignore[method-assign]
    await receiver.start()
    config = tmp_path / "harvester.yaml"
    config.write_text(
        CONFIG.format(
            state=tmp_path / "state", replay=tmp_path / "posts.jsonl", rules=brand_rules(), url=receiver.url
        )
    )
    zygote = Zygote({"HOOK_SECRET": "s3cret-hook"})
    await zygote.start()
    rng = random.Random(9)
    log = tmp_path / "daemon.log"
    kill_points = []
    progress = []
    try:
        for _ in range(KILLS):
            pid = await zygote.run(config, log)
            # Anywhere from the middle of start-up to well into the run.
            kill_points.append(rng.uniform(0.05, 1.2))
            await asyncio.sleep(kill_points[-1])
            os.kill(pid, signal.SIGKILL)
            assert await zygote.wait(pid) == -signal.SIGKILL
            if (tmp_path / "state" / "harvester.db").exists():
                progress.append(len(stored(tmp_path / "state" / "harvester.db")[0]))
        pid = await zygote.run(config, log)
        await wait_for_log_line(log, lambda line: line.get("event") == "replay finished", within=90)
        os.kill(pid, signal.SIGTERM)
        assert await zygote.wait(pid) == 0
    finally:
        await zygote.close()
        await receiver.close()

    uids, outbox = stored(tmp_path / "state" / "harvester.db")
    print(f"posts stored after each kill: {progress}")
    counts = Counter(uids)
    assert not [uid for uid, n in counts.items() if n > 1], "a post was stored twice"
    assert set(uids) == {f"rp:{i}" for i in ids}, "a post was lost"
    assert progress[-1] < POSTS, "the replay ended before the last kill: the kills did not test much"

    keys = [r.key for r in receiver.requests if r.path == "/in"]
    received = Counter(keys)
    resent = sum(n - 1 for n in received.values())
    print(
        f"{len(received)} alerts, {len(keys)} webhook requests, {resent} re-sent after a kill "
        f"(same Idempotency-Key), outbox {Counter(outbox.values())}"
    )
    assert received, "no alert reached the receiver: the test would prove nothing"
    # Nothing lost: every alert in the outbox was delivered and reached the receiver, and the receiver
    # got nothing the outbox does not know about.
    assert set(outbox.values()) == {"delivered"}
    assert set(received) == set(outbox)
    # At most once per key at the receiver, deduplicating by Idempotency-Key: a re-send happens only
    # for a delivery a kill interrupted before the outbox recorded it, so at most one per kill.
    assert resent <= KILLS
    # And no alert twice under two keys: one alert per signal, one signal per (rule, kind, window).
    with sqlite3.connect(tmp_path / "state" / "harvester.db") as conn:
        signals = conn.execute("SELECT rule, kind, at FROM signals").fetchall()
    print(f"{len(signals)} signals: {Counter(kind for _, kind, _ in signals)}")
    assert len(signals) == len(set(signals))


T0 = 1_780_000_000.0


def _line(record: object) -> bytes:
    return json.dumps(record).encode() + b"\n"


def hostile_file(path: Path, extra: bytes = b"") -> tuple[set[str], int, set[str]]:
    """Valid posts with hostile lines between them: (valid ids, malformed lines, ids of huge posts)."""
    valid: set[str] = set()
    huge = {"big-text", "emoji-storm", "emoji-mixed"}
    malformed = [
        b"{not json at all\n",
        b'\xff\xfe{"id": "bad-utf8", "text": "acme air", "created_at": 1}\n',
        b'{"id": "bad-utf8-inside", "text": "acme \xc3\x28 air", "created_at": 1}\n',
        b"[1, 2, 3]\n",
        b'"just a string"\n',
        _line({"id": "no-text", "created_at": T0}),
        _line({"text": "acme air without an id", "created_at": T0}),
        _line({"id": "no-time", "text": "acme air"}),
        _line({"id": {"nested": 1}, "text": "acme air", "created_at": T0}),
        _line({"id": "bad-time", "text": "acme air", "created_at": "yesterday-ish"}),
        _line({"id": "bad-count", "text": "acme air", "created_at": T0, "likes": 12.5}),
        _line({"id": "inf-time", "text": "acme air", "created_at": 1e308}),
        b'{"id": "truncated", "text": "acme a\n',
    ]
    texts = {
        "big-text": "acme air is late again " * 46_000,  # about 1 MB
        "emoji-storm": "acme air " + "\U0001f621\U0001f525" * 250_000,
        "emoji-mixed": "acme air \U0001f44d\U0001f3fd\u200d" * 20_000,
        "nul-byte": "acme\u0000air",
        "rtl-and-combining": "acme air \u202e\u0301\u0301\u0301",
    }
    hostile_valid = [
        _line({"id": name, "text": text, "created_at": T0 + 50 + 10 * i})
        for i, (name, text) in enumerate(texts.items())
    ]
    with path.open("wb") as out:
        for n in range(300):
            out.write(_line({"id": f"ok-{n}", "text": f"acme air flight {n} was fine", "created_at": T0 + n}))
            valid.add(f"ok-{n}")
            if n % 20 == 5:
                out.write(malformed[(n // 20) % len(malformed)])
            if n % 50 == 7 and n // 50 < len(hostile_valid):
                line = hostile_valid[n // 50]
                out.write(line)
                valid.add(json.loads(line)["id"])
        for line in malformed:  # and every kind at least once, at the end too
            out.write(line)
        if extra:
            out.write(extra)
            valid.add(json.loads(extra)["id"])
        out.write(_line({"id": "last", "text": "acme air after the storm", "created_at": T0 + 400}))
        valid.add("last")
    count = 300 // 20 + len(malformed)
    return valid, count, huge


@pytest.mark.timeout(60)
async def test_hostile_payloads_are_counted_skipped_and_the_stream_goes_on(tmp_path: Path) -> None:
    from harvester.app import App
    from harvester.config.loader import LoadedConfig
    from harvester.config.schema import Config, EngineConfig, RuleConfig
    from harvester.models import MAX_TEXT_CHARS
    from harvester.sources.replay import ReplayConfig

    valid, malformed, huge = hostile_file(tmp_path / "hostile.jsonl")
    config = Config(
        state_dir=tmp_path / "state",
        engine=EngineConfig(clock="event", sentiment_workers=0),
        sources=[ReplayConfig(name="rp", path=tmp_path / "hostile.jsonl")],
        rules=[RuleConfig(name="acme", keywords=["acme air"])],
        stats_interval=3600,
    )
    app = App(LoadedConfig(config, None), exit_when_sources_finish=True)
    await app.run()
    health = app.health.sources["rp"]
    assert health.state.value == "finished"
    assert health.malformed == malformed
    assert health.posts == len(valid)
    with sqlite3.connect(config.db_path) as conn:
        rows = dict(conn.execute("SELECT native_id, length(text) FROM posts"))
    assert set(rows) == valid, (set(rows) ^ valid)
    for native_id in huge:
        assert rows[native_id] <= MAX_TEXT_CHARS
    assert app.processor is not None and app.processor.matched >= 300


@pytest.mark.timeout(60)
async def test_a_lone_surrogate_in_a_json_text_does_not_stop_the_daemon(tmp_path: Path) -> None:
    from harvester.app import App
    from harvester.config.loader import LoadedConfig
    from harvester.config.schema import Config, EngineConfig, RuleConfig
    from harvester.sources.replay import ReplayConfig

    surrogate = b'{"id": "lone-surrogate", "text": "acme air \\ud800 pair", "created_at": 1780000500}\n'
    valid, _, _ = hostile_file(tmp_path / "hostile.jsonl", surrogate)
    config = Config(
        state_dir=tmp_path / "state",
        engine=EngineConfig(clock="event", sentiment_workers=0),
        sources=[ReplayConfig(name="rp", path=tmp_path / "hostile.jsonl")],
        rules=[RuleConfig(name="acme", keywords=["acme air"])],
        stats_interval=3600,
    )
    await App(LoadedConfig(config, None), exit_when_sources_finish=True).run()
    with sqlite3.connect(config.db_path) as conn:
        stored_ids = {native_id for (native_id,) in conn.execute("SELECT native_id FROM posts")}
    # Stored with the broken half replaced (U+FFFD), or counted as malformed: either, but not a crash.
    assert stored_ids >= valid - {"lone-surrogate"}
