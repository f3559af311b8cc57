"""The daemon end to end with a real sink: synthetic crisis -> engine -> router -> outbox -> webhook
sink -> a local receiver, with signatures, idempotency keys and example posts from the store."""

from __future__ import annotations

from pathlib import Path

import harvester.alerts.sinks.webhook  # noqa: F401 - registers the sink (plugins.py wiring comes later)
from harvester.alerts.sinks.webhook import WebhookSinkConfig, verify
from harvester.app import App
from harvester.config.loader import LoadedConfig
from harvester.config.schema import AlertsConfig, Config, EngineConfig, StoreConfig, VolumeSpikeConfig
from harvester.sources.synthetic import SyntheticConfig, SyntheticScenarios
from tests.fake_sink_servers import FakeHttpServer
from tests.test_app import demo_rules, stored_numbers


async def test_a_synthetic_crisis_reaches_a_local_webhook_once_per_key(tmp_path: Path) -> None:
    receiver = await FakeHttpServer().start()
    try:
        sink = WebhookSinkConfig(type="webhook", name="hook", url=f"{receiver.url}/in", secret="k")  # type: ignore[arg-type]
        config = Config(
            state_dir=tmp_path,
            engine=EngineConfig(
                clock="event",
                volume_spike=VolumeSpikeConfig(
                    bucket=5, window_buckets=3, warmup_buckets=4, min_count=10, threshold=5, cooldown=120
                ),
            ),
            store=StoreConfig(batch_max_posts=200),
            sources=[
                SyntheticConfig(
                    name="demo",
                    rate=25,
                    pace="max",
                    limit=25 * 200,
                    seed=42,
                    scenarios=SyntheticScenarios(
                        first_after=60,
                        every=1000,
                        duration=60,
                        kinds=["brand_crisis"],
                    ),
                )
            ],
            rules=demo_rules(),
            alerts=AlertsConfig(sinks=[sink], cooldown=60, group_wait=2),
            stats_interval=3600,
        )
        app = App(LoadedConfig(config, None), exit_when_sources_finish=True)
        await app.run()
    finally:
        await receiver.close()
    assert len(stored_numbers(config.db_path)) == 25 * 200
    assert receiver.requests, "no alert reached the webhook"
    keys = [r.key for r in receiver.requests]
    assert len(keys) == len(set(keys))
    for request in receiver.requests:
        assert verify(
            b"k",
            request.headers["X-Harvester-Timestamp"],
            request.body,
            request.headers["X-Harvester-Signature"],
        )
    brand = [r.json() for r in receiver.requests if r.json()["alert"]["rule"].startswith("brand-")]
    assert brand, [r.json()["alert"]["summary"] for r in receiver.requests]
    examples = [e for doc in brand for e in doc["alert"]["examples"]]
    assert examples and all(e["author"] and e["text"] for e in examples)  # looked up in the store
