"""/healthz (the loop answers), /readyz (store open, sources started) and /health (the full report)."""

from __future__ import annotations

from aiohttp import web

from harvester.web.state import DaemonView


def routes(view: DaemonView) -> list[web.RouteDef]:
    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "alive", "uptime_s": round(view.uptime, 3)})

    async def readyz(request: web.Request) -> web.Response:
        ready = view.ready()
        return web.json_response({"ready": ready}, status=200 if ready else 503)

    async def health(request: web.Request) -> web.Response:
        report = await view.health()
        # 200 while degraded: the daemon still works; a load balancer should only stop on failing.
        return web.json_response(report, status=503 if report["status"] == "failing" else 200)

    return [web.get("/healthz", healthz), web.get("/readyz", readyz), web.get("/health", health)]
