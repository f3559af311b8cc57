"""The `reddit` source: new submissions and comments of a set of subreddits, through asyncpraw.

```yaml
sources:
  - type: reddit
    client_id: ${REDDIT_CLIENT_ID}
    client_secret: ${REDDIT_CLIENT_SECRET}
    user_agent: "harvester:acme-monitor:v1 (by u/acme_ops)"
    subreddits: [wallstreetbets, stocks, investing]
```

A read-only script app: asyncpraw gets a client-credentials token itself. The subreddits are combined
into one multireddit (`r/a+b+c`), so each stream costs one request per poll however many subreddits
it watches. Two streams, each optional: submissions (`/r/a+b+c/new`) and comments
(`/r/a+b+c/comments/`).

**Why not asyncpraw's `stream_generator`.** It ends on any exception (connection errors are not
retried at all), raises a 429 at once, sleeps 1-16 s between empty polls on the real clock, and
forgets its `before` anchor and its seen-set when restarted, which produces duplicates. This module
polls the listings itself through the real asyncpraw client (`Reddit.request`, so asyncpraw's token
handling, error mapping and JSON decoding all apply) and keeps control of resume, timing and budget:

* **Resume.** Each stream's position is the fullname of the newest item handed to the pipeline. A
  poll asks for `before=<that fullname>`: the up to 100 items immediately newer, so a backlog drains
  page by page with no gap (a full page is followed at once by the next). The cursor is one compact
  JSON string holding both streams (`{"c":"t1_..","m":"a+b","s":"t3_.."}`) and is committed with each
  post, so after a restart each stream continues right after its last stored item. On the very first
  start the backlog is skipped (`backlog: 0`, the default) or its newest `backlog` items are emitted.
  Within a kind, Reddit ids grow in creation order, so the anchor is also a high-water mark: an item
  at or below it is never emitted again (no per-post dedup set needed).
* **A vanished anchor.** If the anchor item is removed, `before=` it returns nothing, forever. After
  `anchor_check_every` empty polls in a row the stream polls once without `before` and, if newer items
  exist, takes those above the high-water mark and re-anchors (counted in health as `anchor_resets`).
* **Resilience.** Every stream and the engagement re-fetch is its own job in one scheduler loop. A job
  that fails is retried after full-jitter exponential backoff (injected sleep, rng and clock); the
  others keep going. A connection failure also recycles the client session. Bad credentials, a
  private, banned or missing subreddit are permanent: the supervisor marks the source failed.
* **Budget.** One `RequestBudget` per source: every request of every stream (and token requests) goes
  through it; it honours `X-Ratelimit-*` and 429 (see `reddit_budget`).
* **Engagement.** Items that match one of the daemon's rules are re-fetched every
  `engagement.interval` for `engagement.duration` and re-emitted with fresh counts; the pipeline treats
  a re-seen uid as a re-observation for the viral detector (see `reddit_engagement`).
* **Bounded memory.** Pages are parsed and dropped; the tracker and every health figure are bounded;
  the aiohttp session (with no cookie jar) is replaced every `session_max_age`.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp
import asyncpraw
import structlog
from asyncpraw import exceptions as praw_errors
from asyncprawcore import exceptions as prawcore_errors
from pydantic import BaseModel, Field, PositiveInt, SecretStr, field_validator, model_validator

from harvester.config.durations import Duration
from harvester.config.schema import SourceConfig, Strict
from harvester.engine.rules import RuleMatcher
from harvester.errors import MalformedPayload, PermanentSourceError, TransientSourceError
from harvester.health import SourceState
from harvester.plugins import SOURCES
from harvester.sources.base import Source, SourceContext
from harvester.sources.reddit_budget import BudgetedRequestor, RequestBudget
from harvester.sources.reddit_engagement import MAX_PER_REQUEST, EngagementTracker
from harvester.wire.reddit import ListingChild, ListingPage, fullname_number, is_fullname, parse_listing

log = structlog.get_logger(__name__)

_SUBREDDIT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_]{1,20}")
PAGE_LIMIT = 100  # Reddit's maximum per listing request
StreamName = Literal["submissions", "comments"]
_CURSOR_KEYS: dict[StreamName, str] = {"submissions": "s", "comments": "c"}
_PATHS: dict[StreamName, str] = {"submissions": "r/{multi}/new", "comments": "r/{multi}/comments/"}
_KINDS: dict[StreamName, str] = {"submissions": "t3", "comments": "t1"}


class EngagementConfig(Strict):
    """Re-fetch items that match a rule so their score and comment growth reach the viral detector."""

    enabled: bool = True
    interval: Duration = Field(default=300.0, ge=10.0)
    duration: Duration = Field(default=21_600.0, gt=0)
    max_tracked: PositiveInt = Field(default=1000, le=100_000)
    streams: list[StreamName] = Field(default_factory=lambda: list[StreamName](["submissions"]))


class RedditConfig(SourceConfig):
    type: Literal["reddit"] = "reddit"
    client_id: SecretStr
    client_secret: SecretStr
    user_agent: str = Field(default="harvester:monitor:v0.1 (self-hosted)", min_length=8)
    subreddits: list[str] = Field(min_length=1)
    submissions: bool = True
    comments: bool = True
    poll_interval: Duration = Field(default=10.0, ge=0.5)
    backlog: int = Field(default=0, ge=0, le=PAGE_LIMIT)
    anchor_check_every: PositiveInt = 30
    max_requests_per_minute: float = Field(default=60.0, gt=0, le=600)
    rate_limit_pause: Duration = Field(default=60.0, gt=0)
    backoff_base: Duration = Field(default=1.0, gt=0)
    backoff_cap: Duration = Field(default=300.0, gt=0)
    request_timeout: Duration = Field(default=16.0, gt=0)
    session_max_age: Duration = Field(default=21_600.0, gt=0)
    oauth_url: str = "https://oauth.reddit.com"
    reddit_url: str = "https://www.reddit.com"
    engagement: EngagementConfig = Field(default_factory=EngagementConfig)

    @field_validator("subreddits", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        if isinstance(value, str):
            raise ValueError(f"expected a list of names, got {value!r}")
        if isinstance(value, list):
            out = []
            for name in value:
                if not isinstance(name, str):
                    raise ValueError(f"expected subreddit names, got {name!r}")
                bare = name.strip().removeprefix("/").removeprefix("r/")
                if not _SUBREDDIT.fullmatch(bare):
                    raise ValueError(f"not a subreddit name: {name!r} (letters, digits and _, 2-21 long)")
                out.append(bare)
            return out
        return value

    @field_validator("oauth_url", "reddit_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", value):
            raise ValueError(f"expected an http(s) URL, got {value!r}")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _something_to_do(self) -> RedditConfig:
        if not (self.submissions or self.comments):
            raise ValueError("enable at least one of submissions and comments")
        if self.backoff_cap < self.backoff_base:
            raise ValueError("backoff_cap must not be below backoff_base")
        return self

    @property
    def multireddit(self) -> str:
        """`a+b+c`, lower-cased and sorted so the cursor does not depend on how the list was written."""
        return "+".join(sorted({name.lower() for name in self.subreddits}))

    @property
    def streams(self) -> list[StreamName]:
        out: list[StreamName] = []
        if self.submissions:
            out.append("submissions")
        if self.comments:
            out.append("comments")
        return out


# -- cursor ------------------------------------------------------------------------------------------


def decode_cursor(cursor: str | None, multireddit: str) -> dict[StreamName, str]:
    """The committed positions: stream -> newest fullname, or "" (started on an empty listing).

    A stream missing from the result has never started: its backlog is skipped. A cursor written for
    other subreddits is ignored as a whole (those anchors mean nothing in the new multireddit).
    """
    if cursor is None:
        return {}
    try:
        data = json.loads(cursor)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise PermanentSourceError(f"reddit cursor is not ours: {cursor[:80]!r}")
    if data.get("m") != multireddit:
        log.info("reddit subreddits changed; starting the streams afresh", was=data.get("m"), now=multireddit)
        return {}
    out: dict[StreamName, str] = {}
    for stream, key in _CURSOR_KEYS.items():
        value = data.get(key)
        if value == "":
            out[stream] = ""
        elif is_fullname(value, _KINDS[stream]):
            out[stream] = value
    return out


def encode_cursor(positions: dict[StreamName, str], multireddit: str) -> str:
    data: dict[str, str] = {"m": multireddit}
    for stream, value in positions.items():
        data[_CURSOR_KEYS[stream]] = value
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


# -- the collector ------------------------------------------------------------------------------------


class _ConnectionTrouble(TransientSourceError):
    """The network, not Reddit, failed: the client session is replaced before the retry."""


class _RateLimited(TransientSourceError):
    pass


@dataclass
class _Job:
    """One thing the scheduler runs: a stream's poll or the engagement re-fetch."""

    name: str
    next_at: float = 0.0
    attempt: int = 0
    stats: dict[str, Any] = field(default_factory=dict)


class RedditSource(Source):
    config_class = RedditConfig

    def __init__(self, config: BaseModel) -> None:
        if not isinstance(config, RedditConfig):
            raise TypeError(f"RedditSource needs a RedditConfig, got {type(config).__name__}")
        super().__init__(config)
        self.settings = config
        self._reddit: asyncpraw.Reddit | None = None
        self._reddit_since = 0.0
        self.sessions_opened = 0

    async def run(self, ctx: SourceContext) -> None:
        cfg = self.settings
        multi = cfg.multireddit
        positions = decode_cursor(ctx.cursor, multi)
        budget = RequestBudget(
            clock=ctx.clock,
            sleep=ctx.sleep,
            max_per_minute=cfg.max_requests_per_minute,
            rate_limit_pause=cfg.rate_limit_pause,
        )
        eng = cfg.engagement
        matcher = RuleMatcher(ctx.rules) if eng.enabled and ctx.rules else None
        tracker = (
            EngagementTracker(interval=eng.interval, duration=eng.duration, capacity=eng.max_tracked)
            if matcher is not None
            else None
        )
        run = _Run(self, ctx=ctx, budget=budget, positions=positions, matcher=matcher, tracker=tracker)
        try:
            await run.loop()
        finally:
            await asyncio.shield(self._close())

    # -- the asyncpraw client, recycled -----------------------------------------------------------
    async def client(self, budget: RequestBudget, now: float) -> asyncpraw.Reddit:
        """The asyncpraw client, opened on first use and replaced once it is `session_max_age` old."""
        if self._reddit is not None and now - self._reddit_since < self.settings.session_max_age:
            return self._reddit
        await self._close()
        cfg = self.settings
        # No cookie jar: Reddit sets tracking cookies on responses, and a long run would keep them all.
        session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
        try:
            self._reddit = asyncpraw.Reddit(
                client_id=cfg.client_id.get_secret_value(),
                client_secret=cfg.client_secret.get_secret_value(),
                user_agent=cfg.user_agent,
                oauth_url=cfg.oauth_url,
                reddit_url=cfg.reddit_url,
                check_for_updates=False,
                requestor_class=BudgetedRequestor,
                requestor_kwargs={"session": session, "budget": budget, "timeout": cfg.request_timeout},
            )
        except BaseException:
            await session.close()
            raise
        self._reddit_since = now
        self.sessions_opened += 1
        return self._reddit

    async def _close(self) -> None:
        reddit, self._reddit = self._reddit, None
        if reddit is not None:
            try:
                await reddit.close()
            except Exception as exc:  # closing must never mask why the run ended
                log.debug("closing the reddit client failed", error=str(exc))


class _Run:
    """The state of one `run()`: jobs, positions and the scheduler loop."""

    def __init__(
        self,
        source: RedditSource,
        *,
        ctx: SourceContext,
        budget: RequestBudget,
        positions: dict[StreamName, str],
        matcher: RuleMatcher | None,
        tracker: EngagementTracker | None,
    ) -> None:
        self.source = source
        self.cfg = source.settings
        self.ctx = ctx
        self.budget = budget
        self.multi = self.cfg.multireddit
        self.positions = positions
        self.matcher = matcher
        self.tracker = tracker
        self.track_kinds = {_KINDS[s] for s in self.cfg.engagement.streams}
        self.jobs: list[_Job] = []
        for stream in self.cfg.streams:
            self.jobs.append(
                _Job(stream, stats={"newest": positions.get(stream), "polls": 0, "items": 0,
                                    "empty_polls": 0, "errors": 0, "anchor_resets": 0,
                                    "skipped_old": 0, "last_error": None})
            )
        self.engagement = _Job("engagement", stats={"tracked": 0, "refetches": 0, "reemitted": 0,
                                                     "errors": 0, "last_error": None})
        if tracker is not None:
            self.jobs.append(self.engagement)
        self.empty_run: dict[str, int] = {}
        ctx.health.extra.update(
            streams={job.name: job.stats for job in self.jobs},
            ratelimit=budget.snapshot(),
            multireddit=self.multi,
        )

    def now(self) -> float:
        return self.ctx.clock.now().timestamp()

    def _due(self, job: _Job) -> float | None:
        if job is self.engagement:
            assert self.tracker is not None
            due = self.tracker.next_due(self.now())
            return None if due is None else max(due, job.next_at)
        return job.next_at

    async def loop(self) -> None:
        ctx = self.ctx
        while True:
            best: _Job | None = None
            best_at = 0.0
            for job in self.jobs:
                at = self._due(job)
                if at is not None and (best is None or at < best_at):
                    best, best_at = job, at
            if best is None:  # pragma: no cover - a stream job always exists
                return
            wait = best_at - self.now()
            if wait > 0:
                await ctx.sleep(wait)
            await self._run_job(best)
            ctx.health.extra["ratelimit"] = self.budget.snapshot()
            if self.tracker is not None:
                self.engagement.stats["tracked"] = len(self.tracker)

    async def _run_job(self, job: _Job) -> None:
        ctx = self.ctx
        try:
            if job is self.engagement:
                await self._refetch()
                job.next_at = 0.0
            else:
                full = await self._poll(job)
                job.next_at = self.now() + (0.0 if full else self.cfg.poll_interval)
        except PermanentSourceError:
            raise
        except Exception as exc:
            error = _mapped(exc)
            if isinstance(error, PermanentSourceError):
                raise error from exc
            job.attempt += 1
            job.stats["errors"] += 1
            reason = f"{type(error).__name__}: {error}"
            job.stats["last_error"] = reason
            ceiling = min(self.cfg.backoff_cap, self.cfg.backoff_base * 2 ** (job.attempt - 1))
            delay = max(0.1, ctx.rng.uniform(0.0, ceiling))
            if isinstance(error, _RateLimited):
                delay = max(delay, self.budget.paused_until - self.now())
            job.next_at = self.now() + delay
            if isinstance(error, _ConnectionTrouble):
                await self.source._close()  # a fresh session (and token) for the retry
            if isinstance(error, MalformedPayload):
                ctx.malformed(f"{job.name}: {error}")
            ctx.health.reconnected(type(error).__name__.lstrip("_"))
            ctx.set_state(SourceState.BACKOFF, error=f"{job.name}: {reason}")
            log.warning(
                "reddit request failed; retrying", source=ctx.name, job=job.name, error=reason,
                attempt=job.attempt, retry_in_s=round(delay, 2),
            )
            return
        if job.attempt:
            log.info("reddit job recovered", source=ctx.name, job=job.name, after_attempts=job.attempt)
        job.attempt = 0
        if all(j.attempt == 0 for j in self.jobs):
            ctx.set_state(SourceState.CONNECTED)

    async def _get(self, path: str, params: dict[str, str | int]) -> ListingPage:
        reddit = await self.source.client(self.budget, self.now())
        payload = await reddit.request(method="GET", path=path, params=params)
        if not isinstance(payload, dict):
            raise MalformedPayload(f"expected a Listing object, got {type(payload).__name__}")
        return parse_listing(payload, source=self.source.name, received_at=self.ctx.clock.now())

    # -- a stream poll ----------------------------------------------------------------------------
    async def _poll(self, job: _Job) -> bool:
        """One poll of a stream; True when the page was full (more is waiting: poll again at once)."""
        stream: StreamName = "submissions" if job.name == "submissions" else "comments"
        path = _PATHS[stream].format(multi=self.multi)
        stats = job.stats
        stats["polls"] += 1
        anchor = self.positions.get(stream)
        if anchor is None:  # the very first start of this stream
            return await self._prime(stream, path, stats)
        verify = anchor != "" and self.empty_run.get(stream, 0) >= self.cfg.anchor_check_every
        params: dict[str, str | int] = {"limit": PAGE_LIMIT}
        if anchor and not verify:
            params["before"] = anchor
        page = await self._get(path, params)
        emitted = await self._take(stream, page, stats)
        if verify:
            self.empty_run[stream] = 0
            if emitted:
                stats["anchor_resets"] += 1
                log.warning("reddit anchor vanished; re-anchored", source=self.ctx.name, stream=stream,
                            old=anchor, new=self.positions.get(stream), recovered=emitted)
            return False
        if page.children:
            self.empty_run[stream] = 0
        else:
            stats["empty_polls"] += 1
            self.empty_run[stream] = self.empty_run.get(stream, 0) + 1
        return len(page.children) >= PAGE_LIMIT

    async def _prime(self, stream: StreamName, path: str, stats: dict[str, Any]) -> bool:
        backlog = self.cfg.backlog
        page = await self._get(path, {"limit": max(backlog, 1)})
        if backlog:
            self.positions[stream] = ""
            await self._take(stream, page, stats)
            if self.positions[stream] == "":
                await self.ctx.advance(encode_cursor(self.positions, self.multi))
        else:
            newest = next((child.fullname for child in page.children if child.fullname), None)
            self.positions[stream] = newest or ""
            stats["newest"] = newest
            await self.ctx.advance(encode_cursor(self.positions, self.multi))
        log.info("reddit stream started", source=self.ctx.name, stream=stream,
                 anchor=self.positions[stream] or None, backlog=backlog)
        return False

    async def _take(self, stream: StreamName, page: ListingPage, stats: dict[str, Any]) -> int:
        """Emit a page's items above the high-water mark, oldest first, each with its cursor."""
        ctx = self.ctx
        anchor = self.positions.get(stream) or ""
        high = fullname_number(anchor) if anchor else -1
        kind = _KINDS[stream]
        uncommitted = False
        emitted = 0
        ordered: list[tuple[int, ListingChild]] = []
        for child in page.children:
            name = child.fullname
            if name is None or not name.startswith(kind):
                ctx.malformed(f"{stream}: {child.error or 'item of another kind'}")
                continue
            ordered.append((fullname_number(name), child))
        # Oldest first by id rather than by trusting the page's order: an item listed out of id order
        # would otherwise fall below the high-water mark and be lost.
        ordered.sort(key=lambda pair: pair[0])
        for number, child in ordered:
            name = child.fullname
            assert name is not None
            if number <= high:
                stats["skipped_old"] += 1
                continue
            high = number
            self.positions[stream] = name
            stats["newest"] = name
            post = child.post
            if post is None:
                ctx.malformed(f"{stream} {name}: {child.error}")
                uncommitted = True
                continue
            await ctx.emit(post, encode_cursor(self.positions, self.multi))
            uncommitted = False
            emitted += 1
            stats["items"] += 1
            if self.tracker is not None and kind in self.track_kinds:
                assert self.matcher is not None
                if self.matcher.match(post):
                    self.tracker.track(name, self.now())
        if uncommitted:  # malformed items last on the page: move past them all the same
            await ctx.advance(encode_cursor(self.positions, self.multi))
        return emitted

    # -- engagement re-fetch ----------------------------------------------------------------------
    async def _refetch(self) -> None:
        assert self.tracker is not None
        stats = self.engagement.stats
        names = self.tracker.due(self.now(), MAX_PER_REQUEST)
        if not names:
            return
        try:
            page = await self._get("api/info/", {"id": ",".join(names)})
        except Exception:
            self.tracker.postpone(names, self.now())
            raise
        stats["refetches"] += 1
        returned = []
        for child in page.children:
            if child.post is None or child.fullname not in names:
                continue
            returned.append(child.fullname)
            await self.ctx.emit(child.post)  # no cursor: a re-observation moves no stream
            stats["reemitted"] += 1
        self.tracker.refreshed(names, returned, self.now())


def _mapped(exc: BaseException) -> Exception:
    """A library error as one of ours: transient (retry with backoff) or permanent (mark failed)."""
    if isinstance(exc, TransientSourceError | PermanentSourceError | MalformedPayload):
        return exc
    if isinstance(exc, prawcore_errors.TooManyRequests):
        return _RateLimited(f"rate limited (429){_retry_hint(exc)}")
    if isinstance(exc, prawcore_errors.RequestException):
        original = exc.original_exception
        if isinstance(original, aiohttp.ContentTypeError):
            return TransientSourceError(f"reddit sent a non-JSON answer: {original.message}")
        return _ConnectionTrouble(f"cannot reach reddit: {type(original).__name__}: {original}")
    if isinstance(exc, prawcore_errors.OAuthException):
        return PermanentSourceError(f"reddit refused the credentials: {exc}")
    if isinstance(exc, prawcore_errors.ResponseException):
        status = exc.response.status
        url = str(exc.response.url)
        if "access_token" in url and status in (400, 401, 403):
            return PermanentSourceError(f"reddit refused the client id/secret (HTTP {status})")
        if isinstance(exc, prawcore_errors.Forbidden):
            return PermanentSourceError("reddit forbids this listing (HTTP 403): private or banned subreddit")
        if isinstance(exc, prawcore_errors.NotFound | prawcore_errors.Redirect):
            return PermanentSourceError(f"a subreddit does not exist (HTTP {status})")
        if isinstance(exc, prawcore_errors.BadRequest):
            return PermanentSourceError(f"reddit rejected the request (HTTP {status})")
        return TransientSourceError(f"reddit answered HTTP {status}")
    if isinstance(exc, praw_errors.RedditAPIException):
        return PermanentSourceError(f"reddit API error: {exc}")
    if isinstance(exc, TimeoutError):
        return _ConnectionTrouble("reddit request timed out")
    # Anything else (a bug, an unexpected library error): retry with backoff rather than end the source.
    return TransientSourceError(f"{type(exc).__name__}: {exc}")


def _retry_hint(exc: prawcore_errors.TooManyRequests) -> str:
    return f", retry after {exc.retry_after}s" if exc.retry_after else ""


def _build(config: BaseModel) -> RedditSource:
    return RedditSource(config)


SOURCES.register("reddit", RedditConfig, _build)
