"""A fake Reddit API on 127.0.0.1 that speaks the wire protocol asyncpraw uses, with faults on demand.

It serves the tests of the `reddit` source and its benchmark (`harvester.sources.reddit_bench`), so the
real asyncpraw can be driven with no internet. It implements:

* `POST /api/v1/access_token`: HTTP Basic client id and secret, `grant_type=client_credentials`;
  wrong credentials get 401.
* `GET /r/{a+b+c}/new` and `GET /r/{a+b+c}/comments/`: Listing JSON, newest first, `limit` (max 100),
  `before` (the items *immediately newer* than a fullname, as Reddit pages) and `after` (older). A
  `before` naming an item that is no longer listed (removed) returns an empty listing, as Reddit does.
* `GET /api/info/?id=t3_a,t1_b`: the current state of those items (for engagement re-fetches).
* Rate limits: with `quota` set, `X-Ratelimit-Used/Remaining/Reset` headers over a window of the
  injected clock, and 429 (counted in `violations`) for a request beyond the quota.
* Faults: `inject(...)` queues a status (5xx, 429 with headers), a non-JSON 200 or a malformed body for
  the next matching requests; `stop()` and `start()` make the port refuse connections and come back.
* `endless=True` (the benchmark): listings are generated on the fly, an unbounded stream in which the
  page after `before=t3_N` is always N+1..N+limit, so nothing is stored per item.

Run standalone for the benchmark: `python -m harvester.sources.reddit_fake --port 0 --endless`
(prints the port it listens on as its first line).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

Stream = Literal["submissions", "comments"]
Target = Literal["token", "listing", "submissions", "comments", "info", "any"]
_PREFIX = {"submissions": "t3", "comments": "t1"}


def to36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
        if number == 0:
            return out


@dataclass
class Fault:
    target: Target
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None
    content_type: str = "application/json"


@dataclass(frozen=True, slots=True)
class Seen:
    """One request as the fake saw it, at the injected clock's time."""

    at: float
    method: str
    path: str
    query: dict[str, str]
    status: int


class FakeReddit:
    def __init__(
        self,
        *,
        client_id: str = "test-id",
        client_secret: str = "test-secret",
        clock: Callable[[], float] | None = None,
        quota: int | None = None,
        window: float = 600.0,
        endless: bool = False,
        log_size: int = 10_000,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.clock = clock or time.monotonic
        self.quota = quota
        self.window = window
        self.endless = endless
        self.items: dict[Stream, list[dict[str, Any]]] = {"submissions": [], "comments": []}
        self.removed: set[str] = set()
        self.faults: deque[Fault] = deque()
        self.requests: deque[Seen] = deque(maxlen=log_size)
        self.counts: dict[str, int] = {}
        self.tokens_issued = 0
        self.violations = 0
        self.stall: asyncio.Event | None = None  # set: listing requests hang until it is set
        self.stalled = 0
        self._next_id = {"submissions": 1, "comments": 1}
        self._window_start: float | None = None
        self._used = 0
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self.port = 0
        self.changed = asyncio.Condition()
        app = web.Application()
        app.router.add_post("/api/v1/access_token", self._token)
        app.router.add_get("/r/{subs}/new", self._new)
        app.router.add_get("/r/{subs}/comments/", self._comments)
        app.router.add_get("/api/info/", self._info)
        app.router.add_get("/api/info", self._info)
        self.app = app

    # -- lifecycle ---------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Listen (again, on the same port after `stop()`)."""
        self._runner = web.AppRunner(self.app, handle_signals=False, access_log=None)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await self._site.start()
        server = self._site._server
        assert isinstance(server, asyncio.base_events.Server)
        self.port = server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and drop every connection: clients now get 'connection refused'."""
        if self.stall is not None:
            self.stall.set()  # let hanging handlers finish, or cleanup waits for them
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- content -----------------------------------------------------------------------------------
    def add(
        self,
        stream: Stream,
        count: int = 1,
        *,
        subreddit: str = "python",
        text: str | None = None,
        score: int = 1,
        comments: int = 0,
        parent: str | None = None,
        created: float | None = None,
    ) -> list[str]:
        """Publish `count` new items (oldest first); returns their fullnames."""
        names = []
        for _ in range(count):
            number = self._next_id[stream]
            self._next_id[stream] = number + 1
            item_id = to36(number)
            name = f"{_PREFIX[stream]}_{item_id}"
            when = created if created is not None else 1_767_225_600.0 + number
            names.append(name)
            self.items[stream].append(
                self._item(stream, number, subreddit=subreddit, text=text, score=score, comments=comments,
                           parent=parent, when=when)
            )
        return names

    def _item(
        self,
        stream: Stream,
        number: int,
        *,
        subreddit: str,
        text: str | None,
        score: int,
        comments: int,
        parent: str | None,
        when: float,
    ) -> dict[str, Any]:
        item_id = to36(number)
        if stream == "submissions":
            return {
                "id": item_id,
                "name": f"t3_{item_id}",
                "title": text if text is not None else f"submission {number}",
                "selftext": f"body of {number}",
                "author": f"user{number % 97}",
                "subreddit": subreddit,
                "score": score,
                "num_comments": comments,
                "created_utc": when,
                "permalink": f"/r/{subreddit}/comments/{item_id}/s{number}/",
                "url": f"https://example.invalid/{item_id}",
            }
        return {
            "id": item_id,
            "name": f"t1_{item_id}",
            "body": text if text is not None else f"comment {number}",
            "author": f"user{number % 89}",
            "subreddit": subreddit,
            "score": score,
            "parent_id": parent or "t3_1",
            "link_id": parent or "t3_1",
            "created_utc": when,
            "permalink": f"/r/{subreddit}/comments/1/x/{item_id}/",
        }

    def update(self, fullname: str, **changes: Any) -> None:
        """Change an item's counts (score, num_comments) as engagement grows."""
        for stream in self.items.values():
            for item in stream:
                if item["name"] == fullname:
                    item.update(changes)
                    return
        raise KeyError(fullname)

    def inject(
        self,
        target: Target,
        status: int = 500,
        *,
        times: int = 1,
        headers: dict[str, str] | None = None,
        body: str | None = None,
        content_type: str = "application/json",
    ) -> None:
        """Answer the next `times` requests to `target` with this instead of the real thing."""
        for _ in range(times):
            self.faults.append(Fault(target, status, dict(headers or {}), body, content_type))

    def served(self, kind: str) -> int:
        return self.counts.get(kind, 0)

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Wait (bounded) until `predicate()` holds; re-checked after every request the fake serves."""
        async with asyncio.timeout(timeout):
            async with self.changed:
                await self.changed.wait_for(predicate)

    # -- handlers ----------------------------------------------------------------------------------
    def _fault_for(self, kind: str) -> Fault | None:
        if not self.faults:
            return None
        fault = self.faults[0]
        listing = kind in ("submissions", "comments")
        if fault.target in (kind, "any") or (fault.target == "listing" and listing):
            return self.faults.popleft()
        return None

    def _rate_headers(self, now: float) -> tuple[dict[str, str], bool]:
        """The X-Ratelimit-* headers for a request at `now`, and whether it exceeds the quota."""
        if self.quota is None:
            return {}, False
        if self._window_start is None or now >= self._window_start + self.window:
            self._window_start = now - (now % self.window) if self.window else now
            self._used = 0
        self._used += 1
        over = self._used > self.quota
        remaining = max(self.quota - self._used, 0)
        reset = max(int(self._window_start + self.window - now), 0)
        return {
            "x-ratelimit-used": str(self._used),
            "x-ratelimit-remaining": f"{float(remaining):.1f}",
            "x-ratelimit-reset": str(reset),
        }, over

    async def _respond(self, request: web.Request, kind: str, build: Callable[[], Any]) -> web.StreamResponse:
        now = self.clock()
        fault = self._fault_for(kind)
        headers: dict[str, str] = {}
        status = 200
        if kind != "token":
            headers, over = self._rate_headers(now)
            if over:
                self.violations += 1
                status = 429
        if fault is not None:
            status = fault.status
            headers = {**headers, **fault.headers}
        query = {key: request.query[key] for key in request.query}
        self.requests.append(Seen(now, request.method, request.path, query, status))
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if fault is not None and fault.body is not None:
            response: web.StreamResponse = web.Response(
                status=status, text=fault.body, content_type=fault.content_type, headers=headers
            )
        elif status != 200:
            response = web.Response(
                status=status, text=json.dumps({"message": "error", "error": status}),
                content_type="application/json", headers=headers,
            )
        else:
            response = web.Response(
                text=json.dumps(build()), content_type="application/json", headers=headers
            )
        async with self.changed:
            self.changed.notify_all()
        return response

    async def _token(self, request: web.Request) -> web.StreamResponse:
        expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        form = await request.post()
        if request.headers.get("Authorization") != f"Basic {expected}" or form.get("grant_type") != (
            "client_credentials"
        ):
            fault = Fault("token", 401, body=json.dumps({"message": "Unauthorized", "error": 401}))
            self.faults.appendleft(fault)
        else:
            self.tokens_issued += 1
        return await self._respond(
            request,
            "token",
            lambda: {
                "access_token": f"token-{self.tokens_issued}",
                "token_type": "bearer",
                "expires_in": 86400,
                "scope": "*",
            },
        )

    async def _maybe_stall(self) -> None:
        if self.stall is not None:
            self.stalled += 1
            async with self.changed:
                self.changed.notify_all()
            await self.stall.wait()

    async def _new(self, request: web.Request) -> web.StreamResponse:
        await self._maybe_stall()
        return await self._respond(request, "submissions", lambda: self._listing(request, "submissions"))

    async def _comments(self, request: web.Request) -> web.StreamResponse:
        await self._maybe_stall()
        return await self._respond(request, "comments", lambda: self._listing(request, "comments"))

    async def _info(self, request: web.Request) -> web.StreamResponse:
        def build() -> dict[str, Any]:
            wanted = [name for name in request.query.get("id", "").split(",") if name]
            found = []
            for name in wanted:
                item = self._lookup(name)
                if item is not None:
                    found.append(self._child(item))
            return self._wrap(found, None, None)

        return await self._respond(request, "info", build)

    def _lookup(self, fullname: str) -> dict[str, Any] | None:
        if fullname in self.removed:
            return None
        stream: Stream = "submissions" if fullname.startswith("t3_") else "comments"
        if self.endless:
            return self._bench_item(stream, int(fullname[3:], 36))
        for item in self.items[stream]:
            if item["name"] == fullname:
                return item
        return None

    def _bench_item(self, stream: Stream, number: int) -> dict[str, Any]:
        return self._item(stream, number, subreddit="bench", text=None, score=5 + number % 7, comments=1,
                          parent=None, when=1_767_225_600.0 + number)

    @staticmethod
    def _child(item: dict[str, Any]) -> dict[str, Any]:
        return {"kind": item["name"][:2], "data": item}

    @staticmethod
    def _wrap(children: list[dict[str, Any]], after: str | None, before: str | None) -> dict[str, Any]:
        return {
            "kind": "Listing",
            "data": {"after": after, "before": before, "dist": len(children), "children": children,
                     "modhash": None, "geo_filter": ""},
        }

    def _listing(self, request: web.Request, stream: Stream) -> dict[str, Any]:
        limit = max(1, min(int(request.query.get("limit", "25")), 100))
        before = request.query.get("before")
        after = request.query.get("after")
        if self.endless:
            return self._endless(stream, limit, before)
        subs = {name.lower() for name in request.match_info["subs"].split("+")}
        visible = [
            item for item in self.items[stream]
            if item["subreddit"].lower() in subs and item["name"] not in self.removed
        ]
        names = [item["name"] for item in visible]
        if before:
            if before not in names:
                return self._wrap([], None, None)
            start = names.index(before) + 1
            page = visible[start : start + limit]
        elif after:
            if after not in names:
                return self._wrap([], None, None)
            end = names.index(after)
            page = visible[max(0, end - limit) : end]
        else:
            page = visible[-limit:]
        if not page:
            return self._wrap([], None, None)
        first = names.index(page[0]["name"])
        newest_first = [self._child(item) for item in reversed(page)]
        older_exist = first > 0
        newer_exist = names.index(page[-1]["name"]) < len(names) - 1
        return self._wrap(
            newest_first,
            page[0]["name"] if older_exist else None,
            page[-1]["name"] if newer_exist and (before or after) else None,
        )

    def _endless(self, stream: Stream, limit: int, before: str | None) -> dict[str, Any]:
        """An unbounded stream: after item N always come N+1.., so the collector never waits."""
        start = int(before[3:], 36) + 1 if before else 1
        count = limit if before else 1
        items = [self._bench_item(stream, n) for n in range(start + count - 1, start - 1, -1)]
        return self._wrap([self._child(item) for item in items], None, None)


async def _serve(port: int, endless: bool) -> None:
    fake = FakeReddit(endless=endless, log_size=1)
    fake.port = port
    await fake.start()
    print(fake.port, flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await fake.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="a fake Reddit API on 127.0.0.1 (tests and benchmarks)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--endless", action="store_true", help="generate an unbounded stream")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.port, args.endless))
    return 0


if __name__ == "__main__":
    sys.exit(main())
