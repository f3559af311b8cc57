"""A fake X API v2 on 127.0.0.1 for the real tweepy, speaking the wire protocol the real one does.

* `GET /2/tweets/search/stream`: a chunked NDJSON stream, lines ending in `\\r\\n`, a bare `\\r\\n`
  keep-alive whenever nothing was sent for `keepalive_interval`. Each connection follows the next
  `StreamPlan` in `plans` (an HTTP error with X's JSON body and rate-limit headers, lines sent first,
  an abrupt disconnect or a clean close after some tweets, a stall) or, when none is queued, streams
  live tweets until the client leaves.
* `GET|POST /2/tweets/search/stream/rules`: list, add and delete rules, as X answers them.
* `GET /2/tweets/search/recent`: `query` (a rule's value), `since_id`, `max_results`, `next_token`
  pagination from a snapshot, newest first, with `includes.users` and `meta`.

Tweets are published with `publish()`: each goes to the timeline (for search) and to every open
stream whose active rules include its tag. The fake records what clients did (connections and when
they closed, rule requests, search requests, the tokens used), so tests can assert on it.

`DilatedTime` is the clock and sleep the tests inject: every requested sleep is recorded exactly and
lasts `scale` times as long in real time, and the clock runs 1/scale times faster than real time, so
a 320 s backoff takes a third of a second and the clock and the sleeps always agree.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from tests.helpers import T0

ID_BASE = 1_800_000_000_000_000_000
USERS = [
    {"id": f"{n}", "username": f"user{n}", "public_metrics": {"followers_count": 100 * n}}
    for n in range(1, 6)
]


class DilatedTime:
    """An injected clock and sleep on a dilated timeline (see the module docstring)."""

    def __init__(self, scale: float, start: datetime = T0) -> None:
        self.scale = scale
        self.start = start
        self.origin = time.monotonic()
        self.calls: list[float] = []

    def now(self) -> datetime:
        return self.start + timedelta(seconds=(time.monotonic() - self.origin) / self.scale)

    async def sleep(self, seconds: float) -> None:
        self.calls.append(seconds)
        await asyncio.sleep(seconds * self.scale)


class FixedRandom(random.Random):
    """A random source whose `random()` is always `value`, so jittered delays are exact."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


@dataclass
class StreamPlan:
    """What one stream connection does."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    preamble: list[bytes] = field(default_factory=list)  # raw lines sent before live tweets
    end_after: int | None = None  # live tweets sent before ending the connection
    end: str = "abort"  # "abort": drop the TCP connection mid-stream; "close": end the chunked body
    stall: bool = False  # send the headers (and the preamble), then nothing at all
    drop: bool = False  # close the TCP connection without answering (a network error)


@dataclass
class Connection:
    token: str
    params: dict[str, str]
    status: int
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    tweets_sent: int = 0


def error_body(status: int) -> dict[str, Any]:
    titles = {401: "Unauthorized", 403: "Forbidden", 429: "Too Many Requests", 503: "Service Unavailable"}
    title = titles.get(status, "Error")
    return {"title": title, "detail": title, "type": "about:blank", "status": status}


class FakeX:
    def __init__(self) -> None:
        self.timeline: list[dict[str, Any]] = []
        self.rules: dict[str, dict[str, str]] = {}
        self.value_tag: dict[str, str | None] = {}
        self.plans: list[StreamPlan] = []
        self.connections: list[Connection] = []
        self.rule_requests: list[dict[str, Any]] = []
        self.search_requests: list[dict[str, str]] = []
        self.search_failures: list[int] = []  # statuses answered to the next search requests
        self.token_status: dict[str, int] = {}  # token -> status answered to every request with it
        self.keepalive_interval = 0.02
        self.clock: Any = None  # what x-rate-limit-reset is computed from (default: the wall clock)
        self.disconnect_every: int | None = None  # end every live connection after this many tweets
        self.disconnect_kinds = ("abort", "close")
        self.connected = asyncio.Condition()
        self._subscribers: dict[int, tuple[asyncio.Queue[bytes], Connection]] = {}
        self._next_rule = 1
        self._next_id = 0
        self._runner: web.AppRunner | None = None
        self.base = ""

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> str:
        app = web.Application()
        app.router.add_get("/2/tweets/search/stream", self._stream)
        app.router.add_get("/2/tweets/search/stream/rules", self._get_rules)
        app.router.add_post("/2/tweets/search/stream/rules", self._post_rules)
        app.router.add_get("/2/tweets/search/recent", self._search)
        self._runner = web.AppRunner(app, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base = f"http://127.0.0.1:{port}"
        return self.base

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # -- what tests use --------------------------------------------------------------------------
    def add_rule(self, value: str, tag: str | None) -> str:
        rule_id = str(1000 + self._next_rule)
        self._next_rule += 1
        rule = {"id": rule_id, "value": value}
        if tag is not None:
            rule["tag"] = tag
        self.rules[rule_id] = rule
        self.value_tag[value] = tag
        return rule_id

    def tweet(self, tag: str, text: str | None = None, **extra: Any) -> dict[str, Any]:
        self._next_id += 1
        n = self._next_id
        user = USERS[n % len(USERS)]
        tweet = {
            "id": str(ID_BASE + n),
            "text": text or f"tweet {n} about {tag}",
            "author_id": user["id"],
            "created_at": (T0 + timedelta(seconds=n)).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "lang": "en",
            "conversation_id": str(ID_BASE + n),
            "public_metrics": {"like_count": n % 7, "retweet_count": 1, "reply_count": 0, "quote_count": 0},
            **extra,
        }
        return {"tweet": tweet, "tag": tag}

    def publish(self, tag: str, text: str | None = None, **extra: Any) -> str:
        """A new tweet matching the rule tagged `tag`: to the timeline and every open stream."""
        entry = self.tweet(tag, text, **extra)
        self.timeline.append(entry)
        active = {r.get("tag") for r in self.rules.values()}
        if tag in active:
            line = self.stream_line(entry)
            for queue, _conn in self._subscribers.values():
                queue.put_nowait(line)
        return str(entry["tweet"]["id"])

    def stream_line(self, entry: dict[str, Any]) -> bytes:
        tweet = entry["tweet"]
        rule_ids = [r["id"] for r in self.rules.values() if r.get("tag") == entry["tag"]]
        payload = {
            "data": tweet,
            "includes": {"users": [u for u in USERS if u["id"] == tweet["author_id"]]},
            "matching_rules": [{"id": rid, "tag": entry["tag"]} for rid in rule_ids],
        }
        return json.dumps(payload).encode() + b"\r\n"

    def published_ids(self) -> list[str]:
        return [str(e["tweet"]["id"]) for e in self.timeline]

    async def wait_connections(self, count: int, within: float = 20.0) -> None:
        """Until `count` stream connections have been answered with 200."""
        async with asyncio.timeout(within), self.connected:
            await self.connected.wait_for(lambda: self.open_count() >= count)

    def open_count(self) -> int:
        return sum(1 for c in self.connections if c.status == 200)

    # -- handlers --------------------------------------------------------------------------------
    def _auth(self, request: web.Request) -> tuple[str, int | None]:
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ")
        if not header.startswith("Bearer ") or not token:
            return token, 401
        return token, self.token_status.get(token)

    def _error(self, status: int, headers: dict[str, str] | None = None) -> web.Response:
        reset = str(int(self.clock.now().timestamp() if self.clock is not None else time.time()))
        base = {"x-rate-limit-limit": "50", "x-rate-limit-remaining": "0", "x-rate-limit-reset": reset}
        return web.json_response(error_body(status), status=status, headers={**base, **(headers or {})})

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        token, refused = self._auth(request)
        plan = StreamPlan(status=refused) if refused else self.plans.pop(0) if self.plans else StreamPlan()
        status = plan.status
        conn = Connection(token=token, params=dict(request.query), status=status)
        self.connections.append(conn)
        if plan.drop:
            conn.status = 0
            conn.closed.set()
            assert request.transport is not None
            request.transport.abort()
            return web.Response()
        if status != 200:
            conn.closed.set()
            return self._error(status, plan.headers)
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._subscribers[id(conn)] = (queue, conn)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        try:
            await response.prepare(request)
            async with self.connected:
                self.connected.notify_all()
            for line in plan.preamble:
                await response.write(line + b"\r\n")
            if plan.stall:
                await self._until_closed(request)
                return response
            end_after = plan.end_after
            end = plan.end
            if end_after is None and self.disconnect_every is not None:
                end_after = self.disconnect_every
                end = self.disconnect_kinds[len(self.connections) % len(self.disconnect_kinds)]
            while end_after is None or conn.tweets_sent < end_after:
                try:
                    line = await asyncio.wait_for(queue.get(), self.keepalive_interval)
                except TimeoutError:
                    await response.write(b"\r\n")
                    continue
                await response.write(line)
                conn.tweets_sent += 1
            if end == "close":
                await response.write_eof()
            else:
                assert request.transport is not None
                request.transport.abort()
            return response
        except ConnectionError:  # the client left while we wrote
            return response
        finally:
            self._subscribers.pop(id(conn), None)
            conn.closed.set()

    async def _until_closed(self, request: web.Request) -> None:
        # With handler_cancellation, aiohttp cancels this handler when the client goes away.
        await asyncio.Event().wait()

    async def _get_rules(self, request: web.Request) -> web.Response:
        _token, refused = self._auth(request)
        if refused:
            return self._error(refused)
        self.rule_requests.append({"method": "GET"})
        rules = list(self.rules.values())
        body: dict[str, Any] = {"meta": {"sent": _now(), "result_count": len(rules)}}
        if rules:
            body["data"] = rules
        return web.json_response(body)

    async def _post_rules(self, request: web.Request) -> web.Response:
        _token, refused = self._auth(request)
        if refused:
            return self._error(refused)
        payload = await request.json()
        self.rule_requests.append({"method": "POST", **payload})
        if "delete" in payload:
            ids = payload["delete"]["ids"]
            deleted = [i for i in ids if self.rules.pop(i, None) is not None]
            summary = {"deleted": len(deleted), "not_deleted": len(ids) - len(deleted)}
            return web.json_response({"meta": {"sent": _now(), "summary": summary}})
        created: list[dict[str, str]] = []
        errors: list[dict[str, Any]] = []
        for rule in payload.get("add", []):
            value = rule["value"]
            if any(r["value"] == value for r in self.rules.values()):
                errors.append({"value": value, "id": "x", "title": "DuplicateRule", "type": "about:blank"})
                continue
            if "INVALID" in value:
                errors.append(
                    {
                        "value": value,
                        "details": ["Reference to invalid operator"],
                        "title": "UnprocessableEntity",
                    }
                )
                continue
            rid = self.add_rule(value, rule.get("tag"))
            created.append(self.rules[rid])
        summary = {"created": len(created), "not_created": len(errors), "valid": len(created), "invalid": 0}
        body: dict[str, Any] = {"meta": {"sent": _now(), "summary": summary}}
        if created:
            body["data"] = created
        if errors:
            body["errors"] = errors
        return web.json_response(body)

    async def _search(self, request: web.Request) -> web.Response:
        _token, refused = self._auth(request)
        query = dict(request.query)
        self.search_requests.append({**query, "token": _token})
        if refused:
            return self._error(refused)
        if self.search_failures:
            return self._error(self.search_failures.pop(0))
        tag = self.value_tag.get(query.get("query", ""), "\0no such rule")
        since = int(query["since_id"]) if "since_id" in query else None
        size = int(query.get("max_results", "10"))
        if not 10 <= size <= 100:
            return web.json_response(error_body(400), status=400)
        until, offset = None, 0
        if "next_token" in query:
            until_text, offset_text = query["next_token"].split(":")
            until, offset = int(until_text), int(offset_text)
        matching = [
            e["tweet"]
            for e in reversed(self.timeline)
            if e["tag"] == tag
            and (since is None or int(e["tweet"]["id"]) > since)
            and (until is None or int(e["tweet"]["id"]) <= until)
        ]
        if until is None and matching:
            until = int(matching[0]["id"])
        page = matching[offset : offset + size]
        meta: dict[str, Any] = {"result_count": len(page)}
        body: dict[str, Any] = {"meta": meta}
        if page:
            meta["newest_id"], meta["oldest_id"] = page[0]["id"], page[-1]["id"]
            body["data"] = page
            authors = {t["author_id"] for t in page}
            body["includes"] = {"users": [u for u in USERS if u["id"] in authors]}
        if offset + size < len(matching):
            meta["next_token"] = f"{until}:{offset + size}"
        return web.json_response(body)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


@contextlib.asynccontextmanager
async def running_fake() -> Any:
    fake = FakeX()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()
