"""Who may ask: the token check and, without a token, a Host check against DNS rebinding.

The token is accepted as `Authorization: Bearer <token>`, as `?token=<token>` (a browser cannot set
headers on a WebSocket or on the link that opens the dashboard) or as the `harvester_token` cookie,
which the server sets when a page is opened with `?token=`, so the dashboard's own requests carry it.
Comparisons are constant-time.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from harvester.config.web import WebConfig, is_loopback

COOKIE = "harvester_token"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _offered(request: web.Request) -> list[str]:
    offered = []
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        offered.append(header[7:].strip())
    if "token" in request.query:
        offered.append(request.query["token"])
    if COOKIE in request.cookies:
        offered.append(request.cookies[COOKIE])
    return offered


def _host_allowed(request: web.Request, config: WebConfig) -> bool:
    """Without a token the server trusts whoever reaches loopback, so a page on another site must not
    reach it through a DNS name rebound to 127.0.0.1: only loopback names are accepted as Host."""
    host = (
        request.host.rsplit(":", 1)[0] if not request.host.startswith("[") else request.host[1:].split("]")[0]
    )
    return is_loopback(host) or host == config.host


def make_middleware(config: WebConfig) -> Middleware:
    token = config.token.get_secret_value().encode() if config.token is not None else None
    open_paths = {"/healthz"} if config.open_healthz else set()
    if config.open_metrics:
        open_paths.add("/metrics")

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if token is None:
            if not _host_allowed(request, config):
                return web.json_response({"error": "unexpected Host header"}, status=403)
            return await handler(request)
        if request.path in open_paths:
            return await handler(request)
        if not any(hmac.compare_digest(o.encode(), token) for o in _offered(request)):
            if request.path in ("/", "/index.html"):
                return web.Response(
                    status=401,
                    content_type="text/plain",
                    text="harvester: open this page with ?token=<web.token>\n",
                )
            return web.json_response({"error": "missing or wrong token"}, status=401)
        response = await handler(request)
        if "token" in request.query and not response.prepared:
            # Remember it for the dashboard's own fetches and WebSocket, without JavaScript seeing it.
            response.set_cookie(COOKIE, request.query["token"], httponly=True, samesite="Strict")
        return response

    return guard
