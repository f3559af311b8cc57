"""The daemon's HTTP side: health, Prometheus metrics, a JSON API, a live WebSocket feed, a dashboard.

One aiohttp application per daemon (`server.WebServer`), started before the pipeline and stopped after
it, so /healthz answers during start-up and shutdown. Each job has its own module: `auth` (token and
Host checks), `health` (/healthz, /readyz, /health), `state` (what the daemon exposes, sampled for
metrics and counters), `api` (JSON), `ws` (the fan-out hub), `feed` (finds new signals and alerts and
publishes them), `bench` (the WebSocket benchmark command).
"""
