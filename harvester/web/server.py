"""`WebServer`: the aiohttp application inside the daemon, its routes, start and stop."""

from __future__ import annotations

import asyncio
import contextlib
import time
from importlib import resources
from typing import TYPE_CHECKING

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from harvester.config.web import is_loopback
from harvester.errors import ConfigError
from harvester.web import api, health
from harvester.web.auth import Handler, make_middleware
from harvester.web.feed import Feed
from harvester.web.state import DaemonView
from harvester.web.ws import Hub

if TYPE_CHECKING:
    from harvester.app import App

log = structlog.get_logger(__name__)

STATIC_FILES = {"index.html": "text/html", "dashboard.js": "text/javascript", "dashboard.css": "text/css"}


def _static(name: str) -> bytes:
    return resources.files("harvester.web").joinpath("static", name).read_bytes()


class WebServer:
    def __init__(self, app: App) -> None:
        self.app = app
        self.config = app.config.web
        if self.config.token is None and not is_loopback(self.config.host):
            # The config validator refuses this already; a Config built in code gets the same answer.
            raise ConfigError("web", f"host {self.config.host!r} is not loopback and web.token is not set")
        m = app.metrics
        self.view = DaemonView(app)
        self.hub = Hub(
            self.config.ws_buffer_bytes,
            on_message=m.ws_messages.inc,
            on_dropped=m.ws_dropped.inc,
            on_clients=m.ws_clients.set,
        )
        self.feed = Feed(app, self.view, self.hub)
        self.runner: web.AppRunner | None = None
        self.port: int | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def url(self) -> str:
        host = self.config.host if ":" not in self.config.host else f"[{self.config.host}]"
        return f"http://{host}:{self.port}"

    def build(self) -> web.Application:
        application = web.Application(middlewares=[self._count, make_middleware(self.config)])
        application.add_routes(health.routes(self.view))
        application.add_routes(api.routes(self.app, self.feed))
        application.add_routes(
            [
                web.get("/metrics", self.metrics),
                web.get("/ws", self.websocket),
                web.get("/", self.page),
                *[web.get(f"/static/{name}", self.page) for name in STATIC_FILES],
            ]
        )
        return application

    @web.middleware
    async def _count(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        route = request.match_info.route.resource.canonical if request.match_info.route.resource else "other"
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            self.app.metrics.http_requests.labels(route, str(exc.status)).inc()
            raise
        self.app.metrics.http_requests.labels(route, str(response.status)).inc()
        return response

    async def metrics(self, request: web.Request) -> web.Response:
        await self.view.refresh_metrics()
        body = generate_latest(self.app.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def websocket(self, request: web.Request) -> web.StreamResponse:
        return await self.hub.serve(request, self.feed.hello)

    async def page(self, request: web.Request) -> web.Response:
        name = request.path.rsplit("/", 1)[-1] or "index.html"
        return web.Response(
            body=_static(name),
            content_type=STATIC_FILES[name],
            headers={
                "Cache-Control": "no-cache",
                # Everything the page needs comes from here: no CDN, no inline script, no framing.
                "Content-Security-Policy": "default-src 'self'; connect-src 'self' ws: wss:; "
                "img-src 'self' data:; frame-ancestors 'none'",
                "X-Content-Type-Options": "nosniff",
            },
        )

    async def start(self) -> None:
        self.runner = web.AppRunner(self.build(), access_log=None, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.config.host, self.config.port, reuse_address=True)
        try:
            await site.start()
        except OSError:
            await self.runner.cleanup()
            self.runner = None
            raise
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self.config.port
        self._tasks = [
            asyncio.create_task(self.feed.run(), name="web:feed"),
            asyncio.create_task(self.view.monitor_loop_lag(), name="web:loop-lag"),
        ]
        log.info(
            "web server listening",
            url=self.url,
            token=self.config.token is not None,
            started_in_ms=round((time.monotonic() - self.view.started_monotonic) * 1000, 1),
        )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.hub.close_all()
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
        log.info("web server stopped")


async def start_web(app: App) -> WebServer | None:
    """Start the web server if the config enables it; None if disabled or the address is taken
    (logged: collecting goes on without the web side rather than not at all)."""
    if not app.config.web.enabled:
        return None
    server = WebServer(app)
    try:
        await server.start()
    except OSError as exc:
        log.error(
            "web server could not listen; running without it",
            host=app.config.web.host,
            port=app.config.web.port,
            error=str(exc),
        )
        return None
    return server
