"""The JSON API under /api: signals, alerts, posts, rules, silences, dead letters, routing status.

Bad query parameters are a 400 with {"error": ...}; a store that is not open (start-up, shutdown) or
fails is a 503. Times in and out are ISO 8601 (epoch seconds are accepted in queries).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web

from harvester.config.durations import parse_duration
from harvester.errors import StoreError
from harvester.store import Store
from harvester.web.feed import alert_dict

if TYPE_CHECKING:
    from harvester.alerts.router import Router
    from harvester.app import App
    from harvester.web.feed import Feed

log = structlog.get_logger(__name__)

MAX_LIMIT = 500
STATUSES = ("pending", "delivered", "dead")


class BadRequest(Exception):
    pass


class Unavailable(Exception):
    pass


def _int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise BadRequest(f"{name} must be between {low} and {high}, got {value}")
    return value


def parse_time(raw: str, name: str) -> float:
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"{name} must be ISO 8601 or epoch seconds, got {raw!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def _time(request: web.Request, name: str) -> float | None:
    raw = request.query.get(name)
    return None if raw in (None, "") else parse_time(raw, name)


def _text(request: web.Request, name: str) -> str | None:
    value = request.query.get(name)
    return value or None


def _page(request: web.Request, default: int) -> tuple[int, int]:
    return _int(request, "limit", default, 1, MAX_LIMIT), _int(request, "offset", 0, 0, 10_000_000)


def _next(offset: int, limit: int, got: int) -> int | None:
    return offset + got if got == limit else None


ApiHandler = Callable[[web.Request], Awaitable[Any]]


def routes(app: App, feed: Feed) -> list[web.RouteDef]:
    def store() -> Store:
        if app.store is None or not app.started.is_set():
            raise Unavailable("the store is not open yet")
        return app.store

    def router() -> Router:
        if app.router is None:
            raise Unavailable("the alert router is not running yet")
        return app.router

    def endpoint(handler: ApiHandler, status: int = 200) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def wrapped(request: web.Request) -> web.Response:
            try:
                return web.json_response(await handler(request), status=status)
            except BadRequest as exc:
                return web.json_response({"error": str(exc)}, status=400)
            except Unavailable as exc:
                return web.json_response({"error": str(exc)}, status=503)
            except StoreError as exc:
                log.warning("api store error", path=request.path, error=str(exc))
                return web.json_response({"error": "store error"}, status=503)
            except ValueError as exc:  # the router's own checks (a silence that ends before it starts)
                return web.json_response({"error": str(exc)}, status=400)

        return wrapped

    async def signals(request: web.Request) -> dict[str, Any]:
        limit, offset = _page(request, 100)
        found = await store().search_signals(
            rule=_text(request, "rule"),
            kind=_text(request, "kind"),
            since=_time(request, "since"),
            until=_time(request, "until"),
            limit=limit,
            offset=offset,
        )
        items = [await feed.with_examples(s) for s in found]
        return {"signals": items, "next_offset": _next(offset, limit, len(items))}

    async def alerts(request: web.Request) -> dict[str, Any]:
        limit, offset = _page(request, 100)
        status = _text(request, "status")
        if status is not None and status not in STATUSES:
            raise BadRequest(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
        found = await store().search_alerts(
            status=status, sink=_text(request, "sink"), limit=limit, offset=offset
        )
        items = [alert_dict(e, feed.view.redact) for e in found]
        return {"alerts": items, "next_offset": _next(offset, limit, len(found))}

    async def posts(request: web.Request) -> dict[str, Any]:
        limit, offset = _page(request, 50)
        found = await store().search_posts(
            rule=_text(request, "rule"), text=_text(request, "q"), limit=limit, offset=offset
        )
        return {"posts": found, "next_offset": _next(offset, limit, len(found))}

    async def rules(request: web.Request) -> dict[str, Any]:
        totals = feed.matched_totals()
        return {
            "rules": [
                {**rule.model_dump(mode="json", exclude_none=True), "matched": int(totals.get(rule.name, 0))}
                for rule in app.config.rules
            ]
        }

    async def silences(request: web.Request) -> dict[str, Any]:
        expired = request.query.get("include_expired", "") in ("1", "true", "yes")
        return {"silences": router().list_silences(include_expired=expired)}

    async def create_silence(request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            raise BadRequest("the body must be a JSON object") from None
        if not isinstance(body, dict):
            raise BadRequest("the body must be a JSON object")
        unknown = set(body) - {"matchers", "duration", "ends_at", "starts_at", "comment", "created_by"}
        if unknown:
            raise BadRequest(f"unknown fields: {', '.join(sorted(unknown))}")
        matchers = body.get("matchers")
        if not isinstance(matchers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in matchers.items()
        ):
            raise BadRequest("matchers must be an object of label -> glob strings")
        duration = body.get("duration")
        seconds: float | None = None
        if duration is not None:
            try:
                seconds = (
                    float(duration) if isinstance(duration, int | float) else parse_duration(str(duration))
                )
            except ValueError as exc:
                raise BadRequest(f"duration: {exc}") from None
        ends = body.get("ends_at")
        starts = body.get("starts_at")
        for field in ("comment", "created_by"):
            if not isinstance(body.get(field, ""), str):
                raise BadRequest(f"{field} must be a string")
        silence = await router().create_silence(
            matchers,
            duration=seconds,
            ends_at=None if ends is None else datetime.fromtimestamp(parse_time(str(ends), "ends_at"), UTC),
            starts_at=None
            if starts is None
            else datetime.fromtimestamp(parse_time(str(starts), "starts_at"), UTC),
            comment=body.get("comment", ""),
            created_by=body.get("created_by", "api"),
        )
        return {"silence": silence.as_dict(router().now())}

    async def expire_silence(request: web.Request) -> dict[str, Any]:
        silence_id = request.match_info["id"]
        if not await router().expire_silence(silence_id):
            raise web.HTTPNotFound(
                text='{"error": "no active run-time silence with that id"}', content_type="application/json"
            )
        return {"expired": silence_id}

    async def dead_letters(request: web.Request) -> dict[str, Any]:
        limit = _int(request, "limit", 100, 1, MAX_LIMIT)
        letters = await router().dead_letters(_text(request, "sink"), limit)
        for letter in letters:
            letter["last_error"] = feed.view.redact(letter.get("last_error"))
        return {"dead_letters": letters}

    async def status(request: web.Request) -> dict[str, Any]:
        router()
        return await app.alert_status()

    return [
        web.get("/api/signals", endpoint(signals)),
        web.get("/api/alerts", endpoint(alerts)),
        web.get("/api/posts", endpoint(posts)),
        web.get("/api/rules", endpoint(rules)),
        web.get("/api/silences", endpoint(silences)),
        web.post("/api/silences", endpoint(create_silence, status=201)),
        web.delete("/api/silences/{id}", endpoint(expire_silence)),
        web.get("/api/dead-letters", endpoint(dead_letters)),
        web.get("/api/status", endpoint(status)),
    ]
